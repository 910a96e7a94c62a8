"""Cross-entropy + soft Dice (tutorial_lib.losses) against hand-worked values and the official formula."""

import math

import pytest
import torch
import torch.nn.functional as F

from tutorial_lib.data import IGNORE_INDEX
from tutorial_lib.losses import DiceLoss, SegmentationLoss, dice_loss, dice_per_class_loss, ohem_cross_entropy


def official_dice(logits, target, num_classes):
    """The official TransUNet DiceLoss (utils.py), restated: softmax, one-hot, per class
    1 - (2 sum(p t) + 1e-5) / (sum p^2 + sum t^2 + 1e-5), averaged over classes (no ignore)."""
    probs = torch.softmax(logits, dim=1)
    total = 0.0
    for c in range(num_classes):
        p, t = probs[:, c], (target == c).float()
        total = total + 1 - (2 * (p * t).sum() + 1e-5) / ((p * p).sum() + (t * t).sum() + 1e-5)
    return total / num_classes


def test_dice_matches_the_official_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, 9, generator=g)
    target = torch.randint(0, 5, (2, 7, 9), generator=g)
    torch.testing.assert_close(dice_loss(logits, target), official_dice(logits, target, 5), atol=1e-6, rtol=1e-6)


def test_dice_by_hand_one_pixel_pair():
    # 2 pixels, 2 classes. logits chosen so that softmax = (0.75, 0.25) and (0.5, 0.5).
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]]).T.reshape(1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    # class 0: p = (0.75, 0.5), t = (1, 0): 2*0.75 / (0.5625 + 0.25 + 1)
    # class 1: p = (0.25, 0.5), t = (0, 1): 2*0.5  / (0.0625 + 0.25 + 1)
    eps = 1e-5
    d0 = 1 - (1.5 + eps) / (1.8125 + eps)
    d1 = 1 - (1.0 + eps) / (1.3125 + eps)
    torch.testing.assert_close(dice_per_class_loss(logits, target), torch.tensor([d0, d1]), atol=1e-6, rtol=0)
    torch.testing.assert_close(dice_loss(logits, target), torch.tensor((d0 + d1) / 2), atol=1e-6, rtol=0)
    weighted = dice_loss(logits, target, weight=[2.0, 0.0])
    torch.testing.assert_close(weighted, torch.tensor(2 * d0 / 2), atol=1e-6, rtol=0)


def test_dice_of_a_perfect_prediction_is_zero_and_of_absent_classes_too():
    target = torch.tensor([[[0, 0, 1], [1, 2, 2]]])
    logits = 50.0 * F.one_hot(target, 4).movedim(-1, 1).float()  # class 3 absent and never predicted
    assert dice_per_class_loss(logits, target).abs().max() < 1e-6


def test_ignored_pixels_take_no_part():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 3, 4, 5, generator=g)
    target = torch.randint(0, 3, (1, 4, 5), generator=g)
    target[0, 0] = IGNORE_INDEX  # first row is void
    other = logits.clone()
    other[0, :, 0] = torch.randn(3, 5, generator=g) * 10  # anything at void pixels
    for fn in (dice_loss, SegmentationLoss(0.5)):
        torch.testing.assert_close(fn(logits, target), fn(other, target))
    # and equal to the loss of the image without that row
    torch.testing.assert_close(dice_loss(logits, target), official_dice(logits[..., 1:, :], target[..., 1:, :], 3))


def test_mixed_loss_is_the_weighted_sum_and_ce_honours_weights():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 4, 6, 6, generator=g)
    target = torch.randint(0, 4, (2, 6, 6), generator=g)
    target[:, 0, :3] = IGNORE_INDEX
    weights = [0.5, 1.0, 2.0, 4.0]
    ce = F.cross_entropy(logits, target, weight=torch.tensor(weights), ignore_index=IGNORE_INDEX)
    dice = dice_loss(logits, target)
    loss, parts = SegmentationLoss(0.3, weights)(logits, target, return_parts=True)
    torch.testing.assert_close(loss, 0.7 * ce + 0.3 * dice)
    torch.testing.assert_close(parts["ce"], ce)
    torch.testing.assert_close(parts["dice"], dice)
    torch.testing.assert_close(SegmentationLoss(0.0)(logits, target),
                               F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX))
    torch.testing.assert_close(SegmentationLoss(1.0)(logits, target), dice)
    torch.testing.assert_close(DiceLoss()(logits, target), dice)


def test_all_void_batch_gives_a_finite_zero_gradient_loss():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    target = torch.full((1, 2, 2), IGNORE_INDEX)
    loss = SegmentationLoss(0.5)(logits, target)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_low_precision_logits_are_computed_in_float32_and_bad_arguments_rejected():
    logits = torch.randn(1, 3, 4, 4)
    target = torch.randint(0, 3, (1, 4, 4))
    low = SegmentationLoss(0.5)(logits.bfloat16(), target)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, SegmentationLoss(0.5)(logits.bfloat16().float(), target))
    with pytest.raises(ValueError, match="dice_weight"):
        SegmentationLoss(1.5)
    with pytest.raises(ValueError, match="expected logits"):
        dice_loss(logits, target[0])


def _pixels_with_true_class_probability(probs):
    """(1, 2, 1, len(probs)) logits whose pixel i gives class 0 probability probs[i]; target all class 0."""
    p = torch.tensor(probs, dtype=torch.float64)
    logits = torch.stack([p.log(), (1 - p).log()]).reshape(1, 2, 1, -1)
    return logits, torch.zeros(1, 1, len(probs), dtype=torch.long)


def test_ohem_keeps_the_pixels_below_the_threshold_or_else_the_hardest_share():
    probs = [0.9, 0.8, 0.6, 0.5, 0.95, 0.3] + [0.99] * 10  # 16 pixels: 3 below 0.7
    logits, target = _pixels_with_true_class_probability(probs)
    target[0, 0, 1] = IGNORE_INDEX  # a void pixel (p = 0.8) takes no part
    hard = -torch.log(torch.tensor([0.6, 0.5, 0.3], dtype=torch.float64))
    torch.testing.assert_close(ohem_cross_entropy(logits, target, 0.7), hard.mean())
    # fewer hard pixels than the share kept at least: the hardest share of the 15 valid pixels, by loss
    hardest_five = -torch.log(torch.tensor([0.3, 0.5, 0.6, 0.9, 0.95], dtype=torch.float64))
    torch.testing.assert_close(ohem_cross_entropy(logits, target, 0.7, min_kept=1 / 3), hardest_five.mean())
    torch.testing.assert_close(ohem_cross_entropy(logits, target, 0.1), -math.log(0.3) * torch.ones((), dtype=torch.float64))


def test_ohem_at_threshold_one_is_pytorchs_cross_entropy_with_weights_and_void():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 6, 6, generator=g)
    target = torch.randint(0, 4, (2, 6, 6), generator=g)
    target[:, 0, :3] = IGNORE_INDEX
    weights = torch.tensor([0.5, 1.0, 2.0, 4.0])
    for w in (None, weights):
        torch.testing.assert_close(ohem_cross_entropy(logits, target, 1.0, weight=w),
                                   F.cross_entropy(logits, target, weight=w, ignore_index=IGNORE_INDEX))
    # in the mixed loss, and its gradient flows only through the kept pixels
    logits.requires_grad_(True)
    loss, parts = SegmentationLoss(0.0, ohem_threshold=0.7)(logits, target, return_parts=True)
    torch.testing.assert_close(parts["ce"], ohem_cross_entropy(logits, target, 0.7).detach())
    loss.backward()
    p_true = logits.softmax(1).gather(1, torch.where(target == IGNORE_INDEX, 0, target).unsqueeze(1)).squeeze(1)
    easy = (p_true >= 0.7) | (target == IGNORE_INDEX)
    assert (logits.grad.abs().sum(1)[easy] == 0).all() and (logits.grad.abs().sum(1)[~easy] > 0).all()
    with pytest.raises(ValueError, match="ohem_threshold"):
        SegmentationLoss(0.5, ohem_threshold=1.5)
    all_void = torch.full((1, 2, 2), IGNORE_INDEX)
    assert SegmentationLoss(0.5, ohem_threshold=0.7)(torch.randn(1, 3, 2, 2), all_void) == 0
