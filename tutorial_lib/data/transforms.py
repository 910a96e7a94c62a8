"""Albumentations (2.x) pipelines for CamVid: uint8 (H, W, 3) image + (H, W) label in,
float tensor (3, H, W) normalised with ImageNet statistics + uint8 tensor (H, W) label out.

Geometric transforms move image and label together; the label is always resampled with
nearest-neighbour interpolation (a blend of class 3 and class 5 is not class 4) and
padded with ``IGNORE_INDEX``, so padding never counts in the loss or the metrics.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from .classes import IGNORE_INDEX

#: ImageNet channel statistics (RGB, for images scaled to [0, 1]); pretrained encoders expect them.
MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def train_transform(
    size: tuple[int, int] = (360, 480),
    scale: tuple[float, float] = (0.5, 2.0),
    color_jitter: float | None = 0.3,
    seed: int | None = None,
) -> A.Compose:
    """Training augmentation; output crops of ``size`` = (H, W).

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


def eval_transform(size: tuple[int, int] | None = None) -> A.Compose:
    """Deterministic evaluation pipeline: optional resize to ``size`` = (H, W) + normalisation."""
    steps: list[A.BasicTransform] = []
    if size is not None:
        steps.append(
            A.Resize(
                height=size[0],
                width=size[1],
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                area_for_downscale="image",
            )
        )
    steps += [A.Normalize(mean=MEAN, std=STD), ToTensorV2()]
    return A.Compose(steps)


def denormalize(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """Normalised image (3, H, W) -> float array (H, W, 3) in [0, 1], ready for ``plt.imshow``."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float().numpy()
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"denormalize expects a (3, H, W) image, got shape {image.shape}")
    image = image.transpose(1, 2, 0) * np.asarray(STD, np.float32) + np.asarray(MEAN, np.float32)
    return image.clip(0.0, 1.0)
