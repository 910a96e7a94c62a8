"""Class statistics of a segmentation dataset and SegNet's median-frequency balancing.

Median frequency balancing (Eigen & Fergus 2015, used by SegNet)::

    freq(c)   = pixels of class c / total pixels of the images in which c is present
    weight(c) = median over classes of freq / freq(c)

Rare classes (poles, signs) get weights > 1, frequent ones (road, sky) < 1. Counting only
images where c is present stops small classes from looking even rarer just because they
are missing from many images.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from .classes import IGNORE_INDEX, NUM_CLASSES


@dataclass
class ClassFrequencies:
    """Per-class statistics, all arrays of shape (num_classes,).

    pixel_counts: pixels of each class over the whole dataset.
    present_pixels: total (labelled) pixels of the images in which the class occurs.
    frequencies: pixel_counts / present_pixels (nan for a class that never occurs).
    num_images: number of label images counted.
    """

    pixel_counts: np.ndarray
    present_pixels: np.ndarray
    frequencies: np.ndarray
    num_images: int


def _labels(source: Iterable) -> Iterable[np.ndarray]:
    """Label arrays (H, W) from a dataset of (image, label) items or an iterable of labels.

    A dataset with ``load_label`` (our ``CamVid``) is read without images or transforms:
    faster, and random augmentation cannot change the statistics.
    """
    if hasattr(source, "load_label") and hasattr(source, "__len__"):
        for i in range(len(source)):
            yield source.load_label(i)
        return
    for item in source:
        label = item[1] if isinstance(item, (tuple, list)) else item
        if isinstance(label, torch.Tensor):
            label = label.cpu().numpy()
        yield np.asarray(label)


def class_frequencies(
    dataset_or_labels: Iterable,
    num_classes: int | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> ClassFrequencies:
    """Count class pixels over label images (H, W) and compute SegNet's freq(c).

    ``num_classes`` None: the data set's ``num_classes`` (e.g. from its class table), else
    CamVid's 11. Pixels equal to ``ignore_index`` (void) are left out of every count,
    including the per-image totals. Any other value outside 0..num_classes-1 raises ValueError.
    """
    if num_classes is None:
        num_classes = getattr(dataset_or_labels, "num_classes", NUM_CLASSES)
    pixel_counts = np.zeros(num_classes, dtype=np.int64)
    present_pixels = np.zeros(num_classes, dtype=np.int64)
    num_images = 0
    for label in _labels(dataset_or_labels):
        values = label[label != ignore_index].astype(np.int64).ravel()
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            bad = np.unique(values[(values < 0) | (values >= num_classes)])
            raise ValueError(f"label values {bad.tolist()} are outside 0..{num_classes - 1}")
        counts = np.bincount(values, minlength=num_classes)
        pixel_counts += counts
        present_pixels[counts > 0] += values.size
        num_images += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        frequencies = np.where(present_pixels > 0, pixel_counts / present_pixels, np.nan)
    return ClassFrequencies(pixel_counts, present_pixels, frequencies, num_images)


def median_frequency_weights(
    dataset_or_labels: Iterable | ClassFrequencies,
    num_classes: int | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """SegNet class weights, shape (num_classes,): median(freq) / freq(c).

    Accepts what ``class_frequencies`` accepts (``num_classes`` None: the data set's, else
    11), or its result. A class that never occurs gets weight 0 (and is left out of the median).
    """
    stats = (
        dataset_or_labels
        if isinstance(dataset_or_labels, ClassFrequencies)
        else class_frequencies(dataset_or_labels, num_classes, ignore_index)
    )
    freq = stats.frequencies
    present = ~np.isnan(freq)
    if not present.any():
        raise ValueError("no labelled pixels: cannot compute class weights")
    weights = np.zeros_like(freq)
    weights[present] = np.median(freq[present]) / freq[present]
    return weights
