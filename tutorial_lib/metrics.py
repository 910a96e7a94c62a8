"""Segmentation metrics from a confusion matrix.

``cm[t, p]`` counts pixels of true class ``t`` predicted as class ``p`` (rows = truth,
columns = prediction). For class c::

    TP = cm[c, c]    FN = row sum - TP    FP = column sum - TP
    IoU(c)  = TP / (TP + FP + FN)
    Dice(c) = 2 TP / (2 TP + FP + FN)

A class absent from both prediction and target has 0 / 0: its IoU and Dice are nan and
it is left out of the means (it was neither found nor missed).

This is the one place where the library computes IoU, Dice and accuracy: evaluation,
training's validation and the plots all count through ``confusion_matrix``.
"""

from __future__ import annotations

import torch

from .constants import IGNORE_INDEX


def confusion_matrix(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Confusion matrix (num_classes, num_classes) int64 of class predictions vs targets.

    pred, target: integer tensors of the same shape, e.g. (N, H, W). Pixels whose target
    is ``ignore_index`` are skipped. With ``out`` the counts are added to it (in place)
    and it is returned, so a matrix can be accumulated over batches.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    for name, values in (("target", target), ("pred", pred)):
        if values.numel() and (values.min() < 0 or values.max() >= num_classes):
            bad = torch.unique(values[(values < 0) | (values >= num_classes)]).tolist()
            raise ValueError(f"{name} has values {bad} outside 0..{num_classes - 1} (ignore_index={ignore_index})")
    # each (t, p) pair becomes one bin t * C + p
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes**2)
    cm = counts.reshape(num_classes, num_classes).cpu()
    if out is None:
        return cm
    out += cm
    return out


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den as float64, nan where den == 0."""
    num, den = num.double(), den.double()
    return torch.where(den > 0, num / den.clamp(min=1), torch.full_like(num, float("nan")))


def iou_per_class(cm: torch.Tensor) -> torch.Tensor:
    """IoU of each class, shape (C,), float64; nan for classes absent from pred and target."""
    tp = cm.diag()
    return _ratio(tp, cm.sum(0) + cm.sum(1) - tp)


def mean_iou(cm: torch.Tensor) -> float:
    """Mean IoU over the classes present in prediction or target (nan classes excluded)."""
    return torch.nanmean(iou_per_class(cm)).item()


def pixel_accuracy(cm: torch.Tensor) -> float:
    """Fraction of (non-ignored) pixels predicted correctly; nan for an empty matrix."""
    return _ratio(cm.diag().sum(), cm.sum()).item()


def dice_per_class(cm: torch.Tensor) -> torch.Tensor:
    """Dice (F1) of each class, shape (C,), float64; nan for classes absent from pred and target."""
    tp = cm.diag()
    return _ratio(2 * tp, cm.sum(0) + cm.sum(1))


def mean_dice(cm: torch.Tensor) -> float:
    """Mean Dice over the classes present in prediction or target."""
    return torch.nanmean(dice_per_class(cm)).item()


class SegmentationMetrics:
    """Accumulates a confusion matrix over batches.

    >>> metrics = SegmentationMetrics(num_classes=11)
    >>> for images, labels in loader:                # doctest: +SKIP
    ...     metrics.update(model(images), labels)    # logits (N, C, H, W) or labels (N, H, W)
    >>> metrics.compute()["miou"]                    # doctest: +SKIP
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.cm = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    @torch.no_grad()
    def update(self, logits_or_pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: logits (N, C, H, W) (argmax over C) or predicted labels (N, H, W); target (N, H, W)."""
        pred = logits_or_pred
        if pred.dim() == target.dim() + 1:
            pred = pred.argmax(dim=1)
        confusion_matrix(pred, target, self.num_classes, self.ignore_index, out=self.cm)

    def compute(self) -> dict:
        """dict(miou, per_class_iou, pixel_accuracy, mean_dice, per_class_dice); lists of floats, nan = absent."""
        return {
            "miou": mean_iou(self.cm),
            "per_class_iou": iou_per_class(self.cm).tolist(),
            "pixel_accuracy": pixel_accuracy(self.cm),
            "mean_dice": mean_dice(self.cm),
            "per_class_dice": dice_per_class(self.cm).tolist(),
        }
