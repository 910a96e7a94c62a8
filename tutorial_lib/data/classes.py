"""CamVid class names, colours and label conversions.

Two labelings of CamVid exist:

* the **SegNet 11-class** version (what we train on): single-channel label PNGs whose
  pixel value is the class index 0..10, with 11 = void;
* the **original 32-class release** (Brostow et al. 2009): RGB label images, one colour
  per class (`label_colors.txt`). SegNet grouped those 32 classes into its 11.

Everything this package returns uses ``IGNORE_INDEX`` (255) for void, so losses can use
``ignore_index=255`` and metrics skip those pixels.

Class tables for any data set (and CamVid's as tables): ``class_table.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..constants import IGNORE_INDEX  # 255: what void becomes in every label we return

Color = tuple[int, int, int]

# --- the SegNet 11-class labeling -------------------------------------------------------

CAMVID_CLASSES: tuple[str, ...] = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)
NUM_CLASSES = len(CAMVID_CLASSES)  # 11

#: RGB colour of each class, in the order of CAMVID_CLASSES (SegNet's palette).
CAMVID_COLORS: tuple[Color, ...] = (
    (128, 128, 128),  # Sky
    (128, 0, 0),      # Building
    (192, 192, 128),  # Pole
    (128, 64, 128),   # Road
    (60, 40, 222),    # Pavement
    (128, 128, 0),    # Tree
    (192, 128, 128),  # SignSymbol
    (64, 64, 128),    # Fence
    (64, 0, 128),     # Car
    (64, 64, 0),      # Pedestrian
    (0, 128, 192),    # Bicyclist
)
VOID_COLOR: Color = (0, 0, 0)

VOID_LABEL = 11       # value of "Unlabelled" in the SegNet label PNGs

#: Median-frequency-balancing weights published with SegNet (class order as above).
SEGNET_CLASS_WEIGHTS: tuple[float, ...] = (
    0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826,
    9.6446, 1.8418, 0.6823, 6.2478, 7.3614,
)

# --- the original 32-class release ------------------------------------------------------

#: The 32 classes of the CamVid release with their label colours (`label_colors.txt`).
CAMVID32_LABEL_COLORS: tuple[tuple[str, Color], ...] = (
    ("Animal", (64, 128, 64)),
    ("Archway", (192, 0, 128)),
    ("Bicyclist", (0, 128, 192)),
    ("Bridge", (0, 128, 64)),
    ("Building", (128, 0, 0)),
    ("Car", (64, 0, 128)),
    ("CartLuggagePram", (64, 0, 192)),
    ("Child", (192, 128, 64)),
    ("Column_Pole", (192, 192, 128)),
    ("Fence", (64, 64, 128)),
    ("LaneMkgsDriv", (128, 0, 192)),
    ("LaneMkgsNonDriv", (192, 0, 64)),
    ("Misc_Text", (128, 128, 64)),
    ("MotorcycleScooter", (192, 0, 192)),
    ("OtherMoving", (128, 64, 64)),
    ("ParkingBlock", (64, 192, 128)),
    ("Pedestrian", (64, 64, 0)),
    ("Road", (128, 64, 128)),
    ("RoadShoulder", (128, 128, 192)),
    ("Sidewalk", (0, 0, 192)),
    ("SignSymbol", (192, 128, 128)),
    ("Sky", (128, 128, 128)),
    ("SUVPickupTruck", (64, 128, 192)),
    ("TrafficCone", (0, 0, 64)),
    ("TrafficLight", (0, 64, 64)),
    ("Train", (192, 64, 128)),
    ("Tree", (128, 128, 0)),
    ("Truck_Bus", (192, 128, 192)),
    ("Tunnel", (64, 0, 64)),
    ("VegetationMisc", (192, 192, 0)),
    ("Void", (0, 0, 0)),
    ("Wall", (64, 192, 0)),
)

# The usual grouping of the 32 classes into SegNet's 11 (as in MATLAB's CamVid example).
_GROUPS_32_TO_11: dict[str, tuple[str, ...]] = {
    "Sky": ("Sky",),
    "Building": ("Building", "Archway", "Bridge", "Tunnel", "Wall"),
    "Pole": ("Column_Pole", "TrafficCone"),
    "Road": ("Road", "LaneMkgsDriv", "LaneMkgsNonDriv"),
    "Pavement": ("Sidewalk", "ParkingBlock", "RoadShoulder"),
    "Tree": ("Tree", "VegetationMisc"),
    "SignSymbol": ("SignSymbol", "Misc_Text", "TrafficLight"),
    "Fence": ("Fence",),
    "Car": ("Car", "SUVPickupTruck", "Truck_Bus", "Train", "OtherMoving"),
    "Pedestrian": ("Pedestrian", "Child", "CartLuggagePram", "Animal"),
    "Bicyclist": ("Bicyclist", "MotorcycleScooter"),
}

#: 32-class name -> SegNet class index; classes in no group (only "Void") -> IGNORE_INDEX.
CAMVID32_TO_CAMVID11: dict[str, int] = {
    name: next(
        (CAMVID_CLASSES.index(group) for group, members in _GROUPS_32_TO_11.items() if name in members),
        IGNORE_INDEX,
    )
    for name, _ in CAMVID32_LABEL_COLORS
}

#: Colour table for ``rgb_to_index``: 32-class label colour -> SegNet class index.
CAMVID32_COLOR_TO_INDEX: dict[Color, int] = {
    color: CAMVID32_TO_CAMVID11[name] for name, color in CAMVID32_LABEL_COLORS
}

#: Colour table for ``rgb_to_index``: SegNet palette colour -> class index (void -> ignore).
CAMVID_COLOR_TO_INDEX: dict[Color, int] = {
    **{color: i for i, color in enumerate(CAMVID_COLORS)},
    VOID_COLOR: IGNORE_INDEX,
}


# --- conversions ------------------------------------------------------------------------

def colorize(label: np.ndarray, colors: Sequence[Color] = CAMVID_COLORS) -> np.ndarray:
    """Class-index image (H, W) -> RGB image (H, W, 3) uint8.

    Any value that is not a class index (void 11, ignore 255) is drawn black.
    Accepts numpy arrays and CPU torch tensors.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"colorize expects a (H, W) label image, got shape {label.shape}")
    palette = np.zeros((256, 3), dtype=np.uint8)  # index 0..255 -> colour, black by default
    palette[: len(colors)] = np.asarray(colors, dtype=np.uint8)
    valid = (label >= 0) & (label < len(colors))
    return palette[np.where(valid, label, 255).astype(np.intp)]


def _pack(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 colours -> (...) int64 codes 0xRRGGBB."""
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def lookup_colors(rgb: np.ndarray, table: Mapping[Color, int] | Sequence[Color]) -> tuple[np.ndarray, np.ndarray]:
    """Colour image (H, W, 3) -> (indices (H, W) uint8, found (H, W) bool).

    ``table`` maps colour -> index, or is a sequence of colours whose position is the index.
    Pixels whose colour is not in the table get ``IGNORE_INDEX`` and ``found`` False.
    Vectorised: one ``searchsorted`` over packed 24-bit colours.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected a (H, W, 3) colour image, got shape {rgb.shape}")
    if not isinstance(table, Mapping):
        table = {tuple(color): i for i, color in enumerate(table)}
    keys = _pack(np.asarray(list(table.keys()), dtype=np.uint8).reshape(-1, 3))
    values = np.asarray(list(table.values()), dtype=np.uint8)
    order = np.argsort(keys)
    keys, values = keys[order], values[order]

    codes = _pack(rgb)
    pos = np.searchsorted(keys, codes).clip(max=max(len(keys) - 1, 0))
    found = keys[pos] == codes if len(keys) else np.zeros(codes.shape, bool)
    indices = np.where(found, values[pos] if len(keys) else IGNORE_INDEX, IGNORE_INDEX).astype(np.uint8)
    return indices, found


def rgb_to_index(rgb: np.ndarray, table: Mapping[Color, int] | Sequence[Color]) -> np.ndarray:
    """Colour label image (H, W, 3) -> class indices (H, W) uint8.

    ``table`` maps colour -> index (e.g. ``CAMVID32_COLOR_TO_INDEX``), or is a sequence of
    colours whose position is the index (e.g. ``CAMVID_COLORS``). Colours not in the table
    become ``IGNORE_INDEX`` (``lookup_colors`` also says which pixels those are).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb_to_index expects a (H, W, 3) colour image, got shape {rgb.shape}")
    return lookup_colors(rgb, table)[0]


def red_channel_label(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) label read as RGB -> (H, W) red channel, the blog article's way of reading masks.

    Harmless for a single-channel index PNG (converted to RGB, all three channels hold the index), wrong
    for colour labels: the "classes" become red values (0, 60, 64, 128, 192), not 0..10, and classes that
    share a red value merge (Sky (128,128,128), Building (128,0,0), Road (128,64,128) and Tree (128,128,0)
    all become 128). A palette PNG converted to RGB gives palette colours, so the same happens there.
    Notebook 07 shows the three cases; read masks through a declared class table instead (data.folder).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"red_channel_label expects a (H, W, 3) colour image, got shape {rgb.shape}")
    return rgb[..., 0].copy()
