"""Pre-processing: the albumentations (2.x) training augmentation and the one evaluation
pre-processing, both in the ``transform(image=, mask=) -> dict`` protocol of the data sets:
uint8 (H, W, 3) image + (H, W) label in, float tensor (3, H, W) normalised with ImageNet
statistics + uint8 tensor label out.

Geometric transforms move image and label together; the label is always resampled with
nearest-neighbour interpolation (a blend of class 3 and class 5 is not class 4) and
padded with ``IGNORE_INDEX``, so padding never counts in the loss or the metrics.

``resize_image`` / ``resize_label`` / ``resize_pair`` are the one resizing rule of the
package (image: area averaging when shrinking, bilinear when enlarging; label: nearest),
used by ``EvalTransform`` and by the data sets' ``resize=`` option.

albumentations and OpenCV are imported only when first needed, so ``import tutorial_lib.data``
(and ``IGNORE_INDEX``) stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from .classes import IGNORE_INDEX

if TYPE_CHECKING:
    import albumentations as A

#: ImageNet channel statistics (RGB, for images scaled to [0, 1]); pretrained encoders expect them.
MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def train_transform(
    size: tuple[int, int] = (360, 480),
    scale: tuple[float, float] = (0.5, 2.0),
    color_jitter: float | None = 0.3,
    seed: int | None = None,
) -> A.Compose:
    """Training augmentation (an albumentations ``Compose``); output crops of ``size`` = (H, W).

    1. random rescale by a factor in ``scale`` (image area/bilinear, label nearest);
    2. pad to at least ``size`` (image 0, label IGNORE_INDEX) and take a random crop;
    3. horizontal flip with p = 0.5;
    4. colour jitter of strength ``color_jitter`` (None or 0 disables it);
    5. ImageNet normalisation and conversion to tensors.

    There is deliberately no vertical flip: road scenes have a canonical "up" (sky on top,
    road at the bottom). An upside-down street never occurs at test time, so flipping
    vertically would only spend model capacity on learning a useless invariance and
    destroy a strong, true cue (vertical position tells sky from road).

    ``seed`` makes the random sequence reproducible (``Compose(seed=...)``).
    """
    import albumentations as A
    import cv2
    from albumentations.pytorch import ToTensorV2

    height, width = size
    steps: list[A.BasicTransform] = [
        A.RandomScale(
            scale_limit=(scale[0] - 1.0, scale[1] - 1.0),  # albumentations samples 1 + limit
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
            area_for_downscale="image",
            p=1.0,
        ),
        A.PadIfNeeded(
            min_height=height,
            min_width=width,
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=IGNORE_INDEX,
        ),
        A.RandomCrop(height=height, width=width),
        A.HorizontalFlip(p=0.5),
    ]
    if color_jitter:
        steps.append(
            A.ColorJitter(
                brightness=color_jitter,
                contrast=color_jitter,
                saturation=color_jitter,
                hue=color_jitter / 6,
                p=0.8,
            )
        )
    steps += [A.Normalize(mean=MEAN, std=STD), ToTensorV2()]
    return A.Compose(steps, seed=seed)


def resize_image(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(H, W, C) uint8 image -> (h, w, C) for ``size`` = (h, w): area averaging when the
    area shrinks, bilinear when it grows (OpenCV ``INTER_AREA`` / ``INTER_LINEAR``)."""
    h, w = int(size[0]), int(size[1])
    if image.shape[:2] == (h, w):
        return image
    import cv2

    shrinking = h * w < image.shape[0] * image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def resize_label(label: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(H, W) label -> (h, w) with nearest-neighbour sampling at pixel centres
    (``INTER_NEAREST_EXACT``): class indices are never mixed."""
    h, w = int(size[0]), int(size[1])
    if label.shape[:2] == (h, w):
        return label
    import cv2

    return cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)


def resize_pair(image: np.ndarray, label: np.ndarray, size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Image (H, W, 3) and label (H, W) -> both at ``size`` = (h, w) (``resize_image``, ``resize_label``)."""
    return resize_image(image, size), resize_label(label, size)


class EvalTransform:
    """The evaluation pre-processing, in the ``transform(image=, mask=) -> dict`` protocol.

    uint8 image (H, W, 3) -> resized to ``size`` = (h, w) with ``resize_image`` (``None``:
    kept) and normalised with ``mean``/``std`` (of images scaled to [0, 1]) -> float32
    tensor (3, h, w). The label (H, W) comes back as a uint8 tensor: at full resolution
    (``resize_mask=False``, the evaluation protocol: metrics on the original labels), or
    resized with ``resize_label`` to (h, w) (``resize_mask=True``, for training at the
    model's size). Deterministic: no randomness.
    """

    def __init__(self, size: Sequence[int] | None = None, mean: Sequence[float] = MEAN,
                 std: Sequence[float] = STD, resize_mask: bool = False):
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.mean = np.asarray(mean, dtype=np.float32) * 255.0
        self.std = np.asarray(std, dtype=np.float32) * 255.0
        self.resize_mask = resize_mask

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> dict:
        if self.size is not None:
            image = resize_image(image, self.size)
            if self.resize_mask:
                mask = resize_label(mask, self.size)
        image = (image.astype(np.float32) - self.mean) / self.std
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "mask": torch.from_numpy(np.ascontiguousarray(mask)),
        }

    def __repr__(self) -> str:
        return f"EvalTransform(size={self.size}, resize_mask={self.resize_mask})"


def eval_transform(size: tuple[int, int] | None = None, mean: Sequence[float] = MEAN,
                   std: Sequence[float] = STD) -> EvalTransform:
    """Deterministic pipeline for image *and* label at ``size`` = (H, W) (None: kept) + normalisation.

    The same pre-processing as evaluation (``EvalTransform``), with the label resized too
    (nearest), e.g. to train without augmentation. Evaluation itself keeps the labels at
    full resolution: ``EvalTransform(size, mean, std)``.
    """
    return EvalTransform(size, mean, std, resize_mask=True)


def denormalize(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """Normalised image (3, H, W) -> float array (H, W, 3) in [0, 1], ready for ``plt.imshow``."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float().numpy()
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"denormalize expects a (3, H, W) image, got shape {image.shape}")
    image = image.transpose(1, 2, 0) * np.asarray(STD, np.float32) + np.asarray(MEAN, np.float32)
    return image.clip(0.0, 1.0)
