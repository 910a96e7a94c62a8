"""Segmentation losses: cross-entropy with an ignore index, soft Dice, and their mix.

The official TransUNet recipe (Chen et al. 2021) trains with ``0.5 * CE + 0.5 * Dice``.
Its Dice is *soft*: computed on the softmax probabilities ``p`` (no argmax, so it has a
gradient), summed over the whole batch and all pixels, for every class including the
background, then averaged over the classes::

    Dice_c = 1 - (2 * sum(p_c * t_c) + eps) / (sum(p_c ** 2) + sum(t_c ** 2) + eps),  eps = 1e-5

with ``t_c`` the one-hot target. Cross-entropy treats every pixel on its own and is ruled
by the frequent classes (road, sky, building cover most of a CamVid frame); Dice measures
each class by its overlap, so a thin pole counts as much as the road. The mix learns
quickly (CE) and does not give up on rare classes (Dice).

Void pixels (label ``IGNORE_INDEX``) take part in neither term: CE skips them through
``ignore_index`` and Dice multiplies both ``p`` and ``t`` by a validity mask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .constants import IGNORE_INDEX

DICE_EPS = 1e-5
OHEM_MIN_KEPT = 1 / 16  # share of the valid pixels OHEM keeps at least (BiSeNet's n_min = pixels // 16)


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.ndim < 2 or target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"expected logits (N, C, ...) and target (N, ...), got {tuple(logits.shape)} "
            f"and {tuple(target.shape)}"
        )


def dice_per_class_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    eps: float = DICE_EPS,
) -> torch.Tensor:
    """Soft Dice loss of every class, shape (C,): ``1 - (2 sum pt + eps) / (sum p^2 + sum t^2 + eps)``.

    logits (N, C, H, W) (softmax is applied here), target (N, H, W) of class indices with
    ``ignore_index`` for void. Sums run over the batch and all pixels; void pixels are
    excluded from every sum. Computed in float32 whatever the logits' dtype.
    """
    _check(logits, target)
    num_classes = logits.shape[1]
    valid = target != ignore_index
    probs = logits.float().softmax(dim=1) * valid.unsqueeze(1)
    # one-hot of the target; void pixels get an all-zero row
    onehot = F.one_hot(torch.where(valid, target, 0).long(), num_classes)
    onehot = onehot.movedim(-1, 1).to(probs.dtype) * valid.unsqueeze(1)
    dims = (0, *range(2, logits.ndim))  # everything but the class axis
    intersection = (probs * onehot).sum(dims)
    denominator = (probs * probs).sum(dims) + (onehot * onehot).sum(dims)
    return 1.0 - (2.0 * intersection + eps) / (denominator + eps)


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    weight: torch.Tensor | Sequence[float] | None = None,
    eps: float = DICE_EPS,
) -> torch.Tensor:
    """Soft Dice loss averaged over the classes (optionally weighted: ``sum(w_c * Dice_c) / C``,
    the official code's convention)."""
    per_class = dice_per_class_loss(logits, target, ignore_index, eps)
    if weight is not None:
        per_class = per_class * torch.as_tensor(weight, dtype=per_class.dtype, device=per_class.device)
    return per_class.mean()


class DiceLoss(nn.Module):
    """Module form of :func:`dice_loss`."""

    def __init__(self, ignore_index: int = IGNORE_INDEX, weight: Sequence[float] | None = None,
                 eps: float = DICE_EPS):
        super().__init__()
        self.ignore_index = ignore_index
        self.eps = eps
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return dice_loss(logits, target, self.ignore_index, self.weight, self.eps)


def ohem_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    threshold: float = 0.7,
    weight: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
    min_kept: float = OHEM_MIN_KEPT,
) -> torch.Tensor:
    """Cross-entropy over the hard pixels only: online hard example mining (Shrivastava et al.
    2016) in the per-pixel form of BiSeNet's and DDRNet's ``OhemCELoss``.

    logits (N, C, H, W), target (N, H, W) -> scalar. The valid pixels whose true-class
    probability is below ``threshold`` (loss above ``-log(threshold)``) count, or the
    ``min_kept`` share of valid pixels with the largest loss when fewer are that hard. With
    class ``weight`` the kept pixels' losses are weighted and divided by their weights' sum, as
    ``F.cross_entropy`` does; ``threshold=1`` keeps every pixel, i.e. plain cross-entropy.
    """
    _check(logits, target)
    valid = target != ignore_index
    per_pixel = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")[valid]
    if per_pixel.numel() == 0:
        return logits.sum() * 0.0
    at_least = max(1, int(min_kept * per_pixel.numel()))
    hard = per_pixel > -math.log(threshold) if threshold < 1 else torch.ones_like(per_pixel, dtype=torch.bool)
    kept = hard if int(hard.sum()) >= at_least else per_pixel.topk(at_least).indices  # a mask or indices
    w = torch.ones_like(per_pixel) if weight is None else weight.to(per_pixel)[target[valid]]
    return (per_pixel[kept] * w[kept]).sum() / w[kept].sum()


class SegmentationLoss(nn.Module):
    """``(1 - dice_weight) * CE + dice_weight * Dice``; ``dice_weight=0.5`` is the official recipe.

    Args:
        dice_weight: share of the Dice term in [0, 1]; 0 gives plain cross-entropy.
        class_weights: optional per-class weights (C,) for the cross-entropy term (e.g.
            median-frequency balancing, ``tutorial_lib.data.median_frequency_weights``).
        ignore_index: target value of void pixels, skipped by both terms.
        ohem_threshold: 0 (off), or the CE term averages only the hard pixels, those whose
            true-class probability is below it (:func:`ohem_cross_entropy`; 0.7 is usual).

    ``forward(logits, target)`` returns the scalar loss; with ``return_parts=True`` it returns
    ``(loss, {"ce": ..., "dice": ...})`` (detached scalar tensors, for logging).
    The loss is computed in float32 even under autocast.
    """

    def __init__(self, dice_weight: float = 0.5, class_weights: Sequence[float] | torch.Tensor | None = None,
                 ignore_index: int = IGNORE_INDEX, ohem_threshold: float = 0.0):
        super().__init__()
        if not 0.0 <= dice_weight <= 1.0:
            raise ValueError(f"dice_weight must be in [0, 1], got {dice_weight}")
        if not 0.0 <= ohem_threshold <= 1.0:
            raise ValueError(f"ohem_threshold must be in [0, 1] (0: off), got {ohem_threshold}")
        self.ohem_threshold = float(ohem_threshold)
        self.dice_weight = float(dice_weight)
        self.ignore_index = ignore_index
        self.register_buffer(
            "class_weights",
            None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32),
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor, return_parts: bool = False):
        _check(logits, target)
        logits = logits.float()
        target = target.long()
        if self.ohem_threshold > 0:
            ce = ohem_cross_entropy(logits, target, self.ohem_threshold, self.class_weights, self.ignore_index)
        else:
            ce = F.cross_entropy(logits, target, weight=self.class_weights, ignore_index=self.ignore_index)
        if (target == self.ignore_index).all():
            ce = logits.sum() * 0.0  # cross_entropy gives nan (0/0) for an all-void batch
        if self.dice_weight > 0:
            dice = dice_loss(logits, target, self.ignore_index)
            loss = (1.0 - self.dice_weight) * ce + self.dice_weight * dice
        else:
            dice = torch.zeros((), device=logits.device)
            loss = ce
        if return_parts:
            return loss, {"ce": ce.detach(), "dice": dice.detach()}
        return loss

    def extra_repr(self) -> str:
        weighted = self.class_weights is not None
        return (f"dice_weight={self.dice_weight}, class_weighted_ce={weighted}, ignore_index={self.ignore_index}, "
                f"ohem_threshold={self.ohem_threshold}")
