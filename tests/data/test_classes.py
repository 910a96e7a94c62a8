"""Class tables and label conversions."""

import sys

import numpy as np
import pytest

from tutorial_lib.data import (
    CAMVID32_COLOR_TO_INDEX,
    CAMVID32_LABEL_COLORS,
    CAMVID32_TO_CAMVID11,
    CAMVID_CLASSES,
    CAMVID_COLOR_TO_INDEX,
    CAMVID_COLORS,
    IGNORE_INDEX,
    SEGNET_CLASS_WEIGHTS,
    VOID_LABEL,
    colorize,
    red_channel_label,
    rgb_to_index,
)

# the table of ../shared/camvid/README.md
README_TABLE = [
    ("Sky", (128, 128, 128), 0.2595),
    ("Building", (128, 0, 0), 0.1826),
    ("Pole", (192, 192, 128), 4.5640),
    ("Road", (128, 64, 128), 0.1417),
    ("Pavement", (60, 40, 222), 0.9051),
    ("Tree", (128, 128, 0), 0.3826),
    ("SignSymbol", (192, 128, 128), 9.6446),
    ("Fence", (64, 64, 128), 1.8418),
    ("Car", (64, 0, 128), 0.6823),
    ("Pedestrian", (64, 64, 0), 6.2478),
    ("Bicyclist", (0, 128, 192), 7.3614),
]


def test_segnet_classes_match_the_readme():
    assert list(CAMVID_CLASSES) == [name for name, _, _ in README_TABLE]
    assert list(CAMVID_COLORS) == [color for _, color, _ in README_TABLE]
    assert list(SEGNET_CLASS_WEIGHTS) == [weight for _, _, weight in README_TABLE]
    assert VOID_LABEL == 11 and IGNORE_INDEX == 255


def test_32_class_table():
    names = [name for name, _ in CAMVID32_LABEL_COLORS]
    colors = [color for _, color in CAMVID32_LABEL_COLORS]
    assert len(names) == 32 and len(set(names)) == 32 and len(set(colors)) == 32
    table = dict(CAMVID32_LABEL_COLORS)
    assert table["Animal"] == (64, 128, 64)
    assert table["Archway"] == (192, 0, 128)
    assert table["Void"] == (0, 0, 0)
    assert table["Wall"] == (64, 192, 0)
    assert all(0 <= v <= 255 for color in colors for v in color)


def test_32_to_11_mapping():
    assert set(CAMVID32_TO_CAMVID11) == {name for name, _ in CAMVID32_LABEL_COLORS}
    # only Void is unmapped
    assert [n for n, i in CAMVID32_TO_CAMVID11.items() if i == IGNORE_INDEX] == ["Void"]
    # every SegNet class receives at least one release class
    assert set(CAMVID32_TO_CAMVID11.values()) == set(range(11)) | {IGNORE_INDEX}
    expected = {
        "Sky": "Sky", "Building": "Building", "Wall": "Building", "Bridge": "Building",
        "Column_Pole": "Pole", "TrafficCone": "Pole", "Road": "Road", "LaneMkgsDriv": "Road",
        "Sidewalk": "Pavement", "ParkingBlock": "Pavement", "Tree": "Tree",
        "VegetationMisc": "Tree", "SignSymbol": "SignSymbol", "TrafficLight": "SignSymbol",
        "Fence": "Fence", "Car": "Car", "SUVPickupTruck": "Car", "Truck_Bus": "Car",
        "Pedestrian": "Pedestrian", "Child": "Pedestrian", "Bicyclist": "Bicyclist",
        "MotorcycleScooter": "Bicyclist",
    }
    for name, segnet in expected.items():
        assert CAMVID32_TO_CAMVID11[name] == CAMVID_CLASSES.index(segnet), name


def test_segnet_palette_reuses_release_colours_except_pavement():
    release = dict(CAMVID32_LABEL_COLORS)
    same_name = {"Sky", "Building", "Road", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist"}
    for name in same_name:
        assert CAMVID_COLORS[CAMVID_CLASSES.index(name)] == release[name]
    assert CAMVID_COLORS[CAMVID_CLASSES.index("Pole")] == release["Column_Pole"]
    assert CAMVID_COLORS[CAMVID_CLASSES.index("Pavement")] != release["Sidewalk"]  # SegNet recoloured it


def test_colorize():
    label = np.array([[0, 1], [VOID_LABEL, IGNORE_INDEX]])
    rgb = colorize(label)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [128, 128, 128]  # Sky
    assert rgb[0, 1].tolist() == [128, 0, 0]      # Building
    assert rgb[1].tolist() == [[0, 0, 0], [0, 0, 0]]  # void and ignore: black
    with pytest.raises(ValueError, match="H, W"):
        colorize(np.zeros((2, 2, 3)))


def test_colorize_accepts_tensors():
    torch = pytest.importorskip("torch")
    assert colorize(torch.tensor([[3]]))[0, 0].tolist() == [128, 64, 128]


def test_colorize_and_rgb_to_index_round_trip():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 11, size=(20, 30)).astype(np.uint8)
    label[rng.random((20, 30)) < 0.2] = IGNORE_INDEX
    back = rgb_to_index(colorize(label), CAMVID_COLOR_TO_INDEX)
    assert back.dtype == np.uint8 and back.shape == label.shape
    np.testing.assert_array_equal(back, label)
    # a sequence table: position = index; black is not in it -> ignore as well
    np.testing.assert_array_equal(rgb_to_index(colorize(label), CAMVID_COLORS), label)


def test_rgb_to_index_32_class_colours_and_unknown_colours():
    release = dict(CAMVID32_LABEL_COLORS)
    rgb = np.array([[release["Bridge"], release["MotorcycleScooter"], release["Void"], (1, 2, 3)]], dtype=np.uint8)
    index = rgb_to_index(rgb, CAMVID32_COLOR_TO_INDEX)
    assert index.tolist() == [[1, 10, IGNORE_INDEX, IGNORE_INDEX]]  # Building, Bicyclist, void, unknown


def test_red_channel_label_is_wrong():
    label = np.array([[0, 1, 3, 5]])  # Sky, Building, Road, Tree
    red = red_channel_label(colorize(label))
    # four different classes collapse into one "class 128" -- the bug notebook 07 shows
    assert red.tolist() == [[128, 128, 128, 128]]
    # and the values are not class indices at all
    all_classes = colorize(np.arange(11)[None])
    assert red_channel_label(all_classes).max() > 10
    assert len(np.unique(red_channel_label(all_classes))) < 11


def test_data_package_imports_no_model_training_or_plotting_code():
    """Layering: tutorial_lib.data may only depend on the standard library and data libraries."""
    import ast
    from pathlib import Path

    import tutorial_lib.data

    allowed = {"albumentations", "cv2", "numpy", "PIL", "torch", "tqdm"}
    for path in Path(tutorial_lib.data.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = [node.module.split(".")[0]]
            else:
                continue  # relative imports stay inside tutorial_lib.data
            for root in roots:
                assert root in allowed or root in sys.stdlib_module_names, f"{path.name} imports {root}"
