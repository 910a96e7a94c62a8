"""A segmentation data set over folders of images and masks: ``SegmentationFolder``.

Layouts (``find_splits`` detects them)::

    DIR/train/images/  DIR/train/masks/     one folder per split (train, val, test, any name)
    DIR/val/images/    DIR/val/masks/
    DIR/images/        DIR/masks/           flat: a single split, ``split=None``
    DIR/train/         DIR/trainannot/      the SegNet CamVid layout (CamVid's class table by default)
    DIR/classes.json   (or classes.csv)     the class table (format: ``tutorial_lib.data.classes``)

Class table (full format in ``tutorial_lib.data.class_table`` and ``data/README.md``): class ``i``
is entry ``i``; ``void`` gives the mask value and/or colour that means "ignore"::

    {"classes": [{"name": "background", "color": [0, 0, 0]},
                 {"name": "cat", "color": "#FF0000", "weight": 2.0}],
     "void": {"value": 255, "color": [255, 255, 255]}}

    name,r,g,b,weight,value        (classes.csv: the row named "void" is the void entry)
    background,0,0,0,1.0,
    cat,255,0,0,2.0,
    void,255,255,255,,255

Pairing: an image and a mask belong together when their file stems are equal
(``images/0001.jpg`` + ``masks/0001.png``); with ``mask_suffix="_L"`` the mask is
``0001_L.png``. Letter case of the extension does not matter; hidden files are skipped.

Images: ``.png .jpg .jpeg .tif .tiff .bmp``, converted to 8-bit RGB by ``image_to_rgb``:

- RGB: as stored; grayscale (L, 1-bit): the gray value copied into R, G and B;
- RGBA / LA / RGBX: the alpha (4th) channel is dropped, the stored colour kept (not composited);
- palette (P): the palette colours;
- 16-bit grayscale (I;16, or I as Pillow opens some 16-bit files): ``round(v * 255 / 65535)``,
  the full 0..65535 range onto 0..255 (no per-image contrast stretch; values of an I image
  are clipped to 0..65535 first), then copied into R, G and B. (Pillow already reduces
  16-bit *colour* PNGs to 8 bits when it opens them.);
- CMYK: ``R = round((255 - C) * (255 - K) / 255)``, same for G (M) and B (Y);
- YCbCr, LAB, HSV: Pillow's conversion. Floating-point (F) images are refused.
  EXIF orientation is not applied: pixels are used as stored, like the masks.

Masks: ``.png .bmp .tif .tiff`` (JPEG masks are refused: lossy compression invents new
values at class edges), one of

- index masks: single-channel 8- or 16-bit (L, I;16, I, 1-bit), pixel value = class index;
- palette masks (P): the palette *indices* are the classes; the palette colours are ignored;
- colour masks (RGB, RGBA with alpha ignored): each colour is looked up in the class table.

Every label returned has classes ``0..num_classes-1`` and ``IGNORE_INDEX`` (255) for the
table's void value/colours. A value that is neither a class nor void, or a colour not in
the table, raises ``DatasetError`` naming the file (``python -m tutorial_lib.data.check DIR``
lists all of them at once).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .class_table import CAMVID_TABLE, ClassTable, ClassTableError, load_class_table
from .classes import IGNORE_INDEX, lookup_colors
from .transforms import resize_label, resize_pair

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
LOSSY_SUFFIXES = (".jpg", ".jpeg")  # accepted as mask files only to refuse them with a reason
SPLIT_ORDER = ("train", "val", "test")
CLASS_TABLE_NAMES = ("classes.json", "classes.csv")
CHECK_HINT = "python -m tutorial_lib.data.check DIR"

_INDEX_MODES = ("L", "P", "1", "I", "I;16", "I;16L", "I;16B", "I;16N", "LA", "PA")
_COLOR_MODES = ("RGB", "RGBA", "RGBX")


class DatasetNotFoundError(FileNotFoundError):
    """The data folder, a split or a file of a pair is missing."""


class DatasetError(ValueError):
    """A file exists but its content is unusable (corrupt, bad mask values, size mismatch...).

    ``kind`` names the fault for reports ("unreadable", "image-mode", "mask-mode", "lossy-mask",
    "values", "binary-255", "no-colors", "unknown-colors", "size", "pairing");
    ``path`` is the file at fault.
    """

    def __init__(self, message: str, kind: str = "invalid", path: Path | None = None):
        super().__init__(message)
        self.kind = kind
        self.path = path


# --- reading one file -------------------------------------------------------------------

def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image file; DatasetError (kind "unreadable") if it cannot be decoded."""
    path = Path(path)
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"Missing file {path}.") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:  # how PIL reports broken files
        raise DatasetError(
            f"Cannot decode image file {path} ({err}). The file is corrupt or truncated, or not an "
            "image: replace it (re-export or re-download it) or delete the pair.",
            kind="unreadable", path=path,
        ) from err
    return image


def _scale_16_to_8(values: np.ndarray) -> np.ndarray:
    """Integer values 0..65535 -> round(v * 255 / 65535) as uint8 (values outside are clipped)."""
    v = np.clip(values.astype(np.int64), 0, 65535)
    return ((v * 255 + 32767) // 65535).astype(np.uint8)


def image_to_rgb(image: Image.Image, path: str | os.PathLike | None = None) -> np.ndarray:
    """A decoded PIL image of any supported mode -> (H, W, 3) uint8 RGB (rule: module docstring)."""
    mode = image.mode
    if mode == "RGB":
        return np.array(image)
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        gray = _scale_16_to_8(np.asarray(image))
    elif mode in ("L", "1", "LA", "La"):
        gray = np.asarray(image.convert("L") if mode == "1" else image.getchannel(0)).astype(np.uint8)
    elif mode in ("RGBA", "RGBX", "RGBa"):
        return np.array(image.convert("RGB") if mode == "RGBa" else image)[..., :3].copy()
    elif mode == "CMYK":
        cmyk = np.asarray(image).astype(np.int32)
        rgb = (255 - cmyk[..., :3]) * (255 - cmyk[..., 3:]) + 127  # +127: round half up on /255
        return (rgb // 255).astype(np.uint8)
    elif mode in ("P", "PA", "YCbCr", "LAB", "HSV"):
        return np.array(image.convert("RGB"))
    else:
        raise DatasetError(
            f"Image {path} has mode {mode}, which is not converted to RGB here (supported: RGB, RGBA, "
            "L, LA, 1, P, I;16, I, CMYK, YCbCr, LAB, HSV). Save it as an 8-bit RGB or grayscale PNG.",
            kind="image-mode", path=Path(path) if path is not None else None,
        )
    return np.repeat(gray[..., None], 3, axis=2)


def mask_kind(mode: str) -> str | None:
    """PIL mode of a mask -> "index" (single channel or palette), "color" (RGB/RGBA) or None (unsupported)."""
    return "index" if mode in _INDEX_MODES else "color" if mode in _COLOR_MODES else None


def _index_values(mask: Image.Image) -> np.ndarray:
    """The raw class values of an index/palette mask: (H, W) integers (palette indices for P)."""
    values = np.asarray(mask)
    if values.ndim == 3:  # LA, PA: the value channel
        values = values[..., 0]
    return values.astype(np.uint8) if values.dtype == bool else values


_DEFAULT_HINTS = {
    "index": "Pass mask_format='color' with a class table that gives colours, or save the masks as "
             "single-channel PNGs of class indices.",
    "color": "Pass mask_format='index' (or 'auto'), or save the masks as RGB colour PNGs.",
}


def decode_mask(
    mask: Image.Image,
    table: ClassTable,
    path: str | os.PathLike | None = None,
    mask_format: str = "auto",
    unknown_colors: str = "error",
    hints: dict[str, str] | None = None,
) -> np.ndarray:
    """A decoded mask image -> (H, W) uint8 labels: classes 0..N-1, void = ``IGNORE_INDEX``.

    ``mask_format``: "auto" (by the image mode), "index" or "color" (the other kind is refused).
    ``unknown_colors``: "error" (DatasetError naming the colours) or "ignore" (they become void).
    Raises DatasetError with ``kind`` set (see ``DatasetError``).
    """
    path = Path(path) if path is not None else None
    hints = {**_DEFAULT_HINTS, **(hints or {})}
    if mask.format == "JPEG" or (path is not None and path.suffix.lower() in LOSSY_SUFFIXES):
        raise DatasetError(
            f"Mask {path} is a JPEG: lossy compression changes label values at every class edge. "
            "Export the masks as PNG.", kind="lossy-mask", path=path,
        )
    kind = mask_kind(mask.mode)
    if kind is None:
        raise DatasetError(
            f"Mask {path} has mode {mask.mode}; expected a single-channel index or palette PNG (mode L, "
            "P, I;16) or an RGB colour PNG.", kind="mask-mode", path=path,
        )
    if mask_format != "auto" and kind != mask_format:
        what = ("a single-channel image of class indices" if mask_format == "index"
                else "an RGB colour image")
        raise DatasetError(
            f"Mask {path} has mode {mask.mode} ({len(mask.getbands())} channel(s)); expected {what}. "
            f"{hints[mask_format]}", kind="mask-mode", path=path,
        )
    if kind == "index":
        return _check_index_values(_index_values(mask), table, path)
    return _colors_to_index(np.asarray(mask.convert("RGB")), table, path, unknown_colors)


def _check_index_values(values: np.ndarray, table: ClassTable, path: Path | None) -> np.ndarray:
    n, void = table.num_classes, table.void_value
    if values.dtype.kind == "i" and values.size and values.min() < 0:
        raise DatasetError(f"Mask {path} has negative values; class indices start at 0.", kind="values", path=path)
    if values.size and values.max() > 65535:  # 32-bit masks: no 4-billion-entry bincount
        present = np.unique(values)
    else:
        present = np.flatnonzero(np.bincount(values.ravel(), minlength=n))
    bad = present[(present >= n) & (present != (void if void is not None else -1))]
    if bad.size:
        void_text = f" (plus {void} = void)" if void is not None else ""
        if n >= 2 and bad.tolist() == [255] and set(present.tolist()) <= {0, 255}:
            raise DatasetError(
                f"Mask {path} is a binary mask stored as 0/255: 255 is not a class of the {n}-class table"
                f"{void_text}. Save it with values 0/1 (mask // 255), or, if 255 means 'ignore', "
                "declare it as the void value in the class table.", kind="binary-255", path=path,
            )
        shown = bad[:20].tolist()
        raise DatasetError(
            f"Mask {path} has values {shown}{' ...' if bad.size > 20 else ''} outside the class range "
            f"0..{n - 1}{void_text}. Fix the mask, add the classes to the class table, or declare the "
            "value that means 'ignore' as void.", kind="values", path=path,
        )
    if void is not None and void != IGNORE_INDEX:
        values = np.where(values == void, IGNORE_INDEX, values)
    return values.astype(np.uint8)


def _colors_to_index(rgb: np.ndarray, table: ClassTable, path: Path | None, unknown_colors: str) -> np.ndarray:
    if not table.has_colors and not table.void_colors:
        grey = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
        raise DatasetError(
            f"Mask {path} is a colour (RGB) mask but the class table ({table.source}) gives no colours. "
            + ("All its pixels are grey (R = G = B): it looks like an index mask saved as RGB; save it as "
               "a single-channel PNG." if grey else "Add a \"color\" to every class of classes.json."),
            kind="no-colors", path=path,
        )
    labels, found = lookup_colors(rgb, table.color_to_index)
    if unknown_colors == "error" and not found.all():
        codes, counts = np.unique(rgb[~found].reshape(-1, 3), axis=0, return_counts=True)
        order = np.argsort(-counts)[:5]
        shown = ", ".join(f"{tuple(int(v) for v in codes[i])} x{counts[i]}" for i in order)
        raise DatasetError(
            f"Mask {path} has {len(codes)} colour(s) that are not in the class table ({table.source}): "
            f"{shown}{' ...' if len(codes) > 5 else ''} (colour x pixels). Add them to the table (as a class "
            "or as void), or repaint them. Anti-aliased or resized colour masks have blended edge colours: "
            "export them without smoothing.", kind="unknown-colors", path=path,
        )
    return labels


# --- finding the pairs ------------------------------------------------------------------

@dataclass(frozen=True)
class SplitDirs:
    """Where one split's files are. ``name`` None is the flat layout; ``segnet`` the CamVid one."""

    name: str | None
    images: Path
    masks: Path
    segnet: bool = False

    @property
    def label(self) -> str:
        return self.name if self.name is not None else "(flat)"


def find_splits(root: str | os.PathLike) -> list[SplitDirs]:
    """The splits under ``root`` (train, val, test first, then others by name); [] if none."""
    root = Path(root)
    if not root.is_dir():
        return []
    found: list[SplitDirs] = []
    subdirs = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: (SPLIT_ORDER.index(p.name) if p.name in SPLIT_ORDER else len(SPLIT_ORDER), p.name))
    for sub in subdirs:
        if (sub / "images").is_dir() and (sub / "masks").is_dir():
            found.append(SplitDirs(sub.name, sub / "images", sub / "masks"))
        elif (root / f"{sub.name}annot").is_dir():
            found.append(SplitDirs(sub.name, sub, root / f"{sub.name}annot", segnet=True))
    if (root / "images").is_dir() and (root / "masks").is_dir():
        found.append(SplitDirs(None, root / "images", root / "masks"))
    return found


@dataclass
class Pairing:
    """What ``pair_files`` found in an image folder and a mask folder."""

    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    images_without_mask: list[Path] = field(default_factory=list)
    masks_without_image: list[Path] = field(default_factory=list)
    duplicates: list[list[Path]] = field(default_factory=list)  # files of one folder sharing a stem
    other_files: list[Path] = field(default_factory=list)       # not images / masks by their extension


def pair_files(images: Path, masks: Path, mask_suffix: str = "") -> Pairing:
    """Pair ``images/STEM.ext`` with ``masks/STEM<mask_suffix>.ext`` by stem; pairs sorted by image name."""
    result = Pairing()

    def collect(folder: Path, suffixes: tuple[str, ...], strip: str) -> dict[str, Path]:
        by_stem: dict[str, list[Path]] = {}
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            if path.suffix.lower() not in suffixes:
                result.other_files.append(path)
                continue
            stem = path.stem
            if strip:
                if not stem.endswith(strip):
                    result.masks_without_image.append(path)
                    continue
                stem = stem[: -len(strip)]
            by_stem.setdefault(stem, []).append(path)
        result.duplicates += [paths for paths in by_stem.values() if len(paths) > 1]
        return {stem: paths[0] for stem, paths in by_stem.items()}

    image_files = collect(images, IMAGE_SUFFIXES, "")
    mask_files = collect(masks, MASK_SUFFIXES + LOSSY_SUFFIXES, mask_suffix)
    for stem, image in image_files.items():
        if stem in mask_files:
            result.pairs.append((image, mask_files[stem]))
        else:
            result.images_without_mask.append(image)
    result.masks_without_image += [m for stem, m in mask_files.items() if stem not in image_files]
    result.pairs.sort()
    return result


def find_class_table(root: str | os.PathLike) -> Path | None:
    """``root/classes.json`` or ``root/classes.csv`` (ClassTableError if both exist), else None."""
    present = [Path(root) / name for name in CLASS_TABLE_NAMES if (Path(root) / name).is_file()]
    if len(present) > 1:
        raise ClassTableError(f"{root} has both classes.json and classes.csv; keep one of them")
    return present[0] if present else None


def resolve_class_table(
    root: str | os.PathLike, classes: ClassTable | str | os.PathLike | None = None
) -> ClassTable | None:
    """The class table of a data folder: ``classes`` (a table or a file), else ``root/classes.json``
    or ``.csv``, else CamVid's for the SegNet layout, else None."""
    if isinstance(classes, ClassTable):
        return classes
    if classes is not None:
        return load_class_table(classes)
    path = find_class_table(root)
    if path is not None:
        return load_class_table(path)
    if any(s.segnet for s in find_splits(root)):
        return CAMVID_TABLE
    return None


def _names(paths: Sequence[Path], limit: int = 10) -> str:
    shown = ", ".join(p.name for p in paths[:limit])
    return shown + (f" ... ({len(paths)} in all)" if len(paths) > limit else "")


# --- the data set -----------------------------------------------------------------------

class SegmentationFolder(Dataset):
    """Image/mask pairs from folders (layouts, pairing and decoding rules: module docstring).

    ``dataset[i]`` -> ``(image, label)``: image float32 tensor (3, H, W), label int64 tensor
    (H, W) with classes 0..num_classes-1 and void = ``IGNORE_INDEX`` (255). Without a
    transform the image is scaled to [0, 1]; with one (``transform(image=, mask=) -> dict``
    on uint8 arrays, e.g. ``train_transform()`` or ``EvalTransform``) the transform decides.

    Args:
        root: the data folder.
        split: "train", "val", ... (``DIR/<split>/images`` + ``masks``), or None for the flat
            ``DIR/images`` + ``DIR/masks``.
        classes: a ``ClassTable`` or a classes.json/.csv path; None: ``root/classes.json``
            or ``root/classes.csv`` (CamVid's table for the SegNet layout).
        transform: applied on every ``__getitem__`` (after the cache, so random augmentation
            differs each time).
        cache: decode (and resize) every pair once, in ``__init__``, and keep the uint8 arrays.
        max_images: use only the first N pairs (sorted by file name).
        resize: (H, W) to resize every pair to when loading (``transforms.resize_pair``).
        progress: progress bar while ``cache`` decodes the files.
        mask_format: "auto", "index" or "color" (``decode_mask``).
        mask_suffix: masks are named ``STEM + mask_suffix`` (e.g. "_L", "_mask").
        unknown_colors: "error" or "ignore" for mask colours the table does not list.

    Attributes: ``table`` (the ClassTable), ``classes`` (names), ``num_classes``, ``pairs``.
    """

    #: the progress bar's name for the data (None: the folder's name); hints appended to a
    #: wrong-mask-kind error (subclasses set both)
    name: str | None = None
    mask_hints: dict[str, str] = {}

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = "train",
        classes: ClassTable | str | os.PathLike | None = None,
        transform: Callable | None = None,
        cache: bool = False,
        max_images: int | None = None,
        resize: tuple[int, int] | None = None,
        progress: bool = True,
        mask_format: str = "auto",
        mask_suffix: str = "",
        unknown_colors: str = "error",
    ):
        if mask_format not in ("auto", "index", "color"):
            raise ValueError(f"mask_format must be 'auto', 'index' or 'color', got {mask_format!r}")
        if unknown_colors not in ("error", "ignore"):
            raise ValueError(f"unknown_colors must be 'error' or 'ignore', got {unknown_colors!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"Data folder {self.root} not found.")
        self.split = split
        self.transform = transform
        self.resize = tuple(resize) if resize is not None else None
        self.mask_format, self.mask_suffix, self.unknown_colors = mask_format, mask_suffix, unknown_colors
        self.table = self._class_table(classes)
        self.classes = self.table.names
        self.num_classes = self.table.num_classes

        pairs = self._find_pairs()
        if max_images is not None:
            pairs = pairs[:max_images]
        self.pairs: list[tuple[Path, Path]] = pairs

        self._cache: list[tuple[np.ndarray, np.ndarray]] | None = None
        if cache:
            desc = f"caching {self.name or self.root.name} {split or ''}".rstrip()
            self._cache = [self.load_pair(i) for i in tqdm(range(len(self)), desc=desc, disable=not progress)]

    def _class_table(self, classes) -> ClassTable:
        table = resolve_class_table(self.root, classes)
        if table is None:
            raise DatasetNotFoundError(
                f"No class table for {self.root}: write {self.root / 'classes.json'} (one entry per class: "
                "name, colour, optional weight; see data/README.md) or pass classes=FILE. "
                f"`{CHECK_HINT}` shows the mask values found."
            )
        return table

    def _find_pairs(self) -> list[tuple[Path, Path]]:
        splits = {s.name: s for s in find_splits(self.root)}
        if self.split not in splits:
            where = (f"{self.root}/{self.split}/images + {self.root}/{self.split}/masks"
                     if self.split is not None else f"{self.root}/images + {self.root}/masks")
            found = ", ".join(s.label for s in splits.values()) or "none"
            flat = " It has the flat layout images/ + masks/: pass split=None." if None in splits else ""
            raise DatasetNotFoundError(
                f"Split {self.split!r} not found: expected {where} (splits found: {found}).{flat}"
            )
        dirs = splits[self.split]
        return self._pairs_from(dirs.images, dirs.masks, self.mask_suffix)

    def _pairs_from(self, images: Path, masks: Path, mask_suffix: str) -> list[tuple[Path, Path]]:
        """Pairs of two folders; a clear error for images without a mask, duplicates, or no images."""
        pairing = pair_files(images, masks, mask_suffix)
        if pairing.duplicates:
            groups = "; ".join(" and ".join(p.name for p in group) for group in pairing.duplicates[:5])
            raise DatasetError(
                f"Several files share a stem in {self.root}: {groups}. Pairs are matched by stem: "
                "rename or remove one of each.", kind="pairing",
            )
        if pairing.images_without_mask:
            raise DatasetNotFoundError(
                f"{len(pairing.images_without_mask)} image(s) in {images} have no mask in {masks}: "
                f"{_names(pairing.images_without_mask)}. Add the masks (named like the image"
                f"{f', plus {mask_suffix!r}' if mask_suffix else ''}) or remove those images."
            )
        if not pairing.pairs:
            raise DatasetNotFoundError(f"No images in {images} (extensions: {', '.join(IMAGE_SUFFIXES)}).")
        return pairing.pairs

    # --- loading ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.pairs)

    def load_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decoded, checked (and resized) pair: image (H, W, 3) uint8, label (H, W) uint8, void = 255."""
        image_path, mask_path = self.pairs[index]
        image = image_to_rgb(open_image(image_path), image_path)
        label = self._decode_mask(mask_path)
        if image.shape[:2] != label.shape:
            raise DatasetError(
                f"Image and mask sizes differ for {image_path.name}: image {image_path} is "
                f"{image.shape[1]}x{image.shape[0]} (WxH), mask {mask_path} is "
                f"{label.shape[1]}x{label.shape[0]}. Each mask must match its image pixel for pixel.",
                kind="size", path=mask_path,
            )
        if self.resize is not None:
            image, label = resize_pair(image, label, self.resize)
        return image, label

    def load_label(self, index: int) -> np.ndarray:
        """Decoded, checked (and resized) label only: (H, W) uint8, void = 255. Cheap: no image decode."""
        if self._cache is not None:
            return self._cache[index][1]
        label = self._decode_mask(self.pairs[index][1])
        return resize_label(label, self.resize) if self.resize is not None else label

    def _decode_mask(self, path: Path) -> np.ndarray:
        return decode_mask(open_image(path), self.table, path, self.mask_format, self.unknown_colors, self.mask_hints)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self._cache[index] if self._cache is not None else self.load_pair(index)
        if self.transform is None:
            image_t = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
            return image_t, torch.from_numpy(label).long()
        out = self.transform(image=image, mask=label)
        image_t, label_t = out["image"], out["mask"]
        if isinstance(image_t, np.ndarray):  # a transform without ToTensorV2
            image_t = torch.from_numpy(np.ascontiguousarray(image_t.transpose(2, 0, 1)))
        if isinstance(label_t, np.ndarray):
            label_t = torch.from_numpy(np.ascontiguousarray(label_t))
        return image_t.float(), label_t.long()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
            f"classes={self.num_classes}, resize={self.resize}, cached={self._cache is not None})"
        )
