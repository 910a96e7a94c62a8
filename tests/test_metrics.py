"""Metrics against confusion matrices worked out by hand, and against torchmetrics on random data."""

import math

import pytest
import torch

from tutorial_lib.metrics import (
    IGNORE_INDEX,
    SegmentationMetrics,
    confusion_matrix,
    dice_per_class,
    iou_per_class,
    mean_dice,
    mean_iou,
    pixel_accuracy,
)

# target / pred of one 2x3 image, 3 classes, one ignored pixel (255)
TARGET = torch.tensor([[0, 0, 1], [1, 2, 255]])
PRED = torch.tensor([[0, 1, 1], [1, 0, 2]])
# (target, pred) pairs, the ignored pixel dropped: (0,0) (0,1) (1,1) (1,1) (2,0)
# rows = target, columns = prediction:
CM = torch.tensor([
    [1, 1, 0],   # class 0: one right, one predicted as 1
    [0, 2, 0],   # class 1: both right
    [1, 0, 0],   # class 2: predicted as 0
])


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(PRED, TARGET, num_classes=3)
    assert cm.dtype == torch.int64
    assert torch.equal(cm, CM)
    assert cm.sum() == 5  # 6 pixels, 1 ignored


def test_ignore_index_is_the_data_packages():
    from tutorial_lib.data import IGNORE_INDEX as DATA_IGNORE

    assert IGNORE_INDEX == DATA_IGNORE == 255


def test_confusion_matrix_accumulates_into_out():
    cm = torch.zeros(3, 3, dtype=torch.int64)
    confusion_matrix(PRED, TARGET, 3, out=cm)
    result = confusion_matrix(PRED, TARGET, 3, out=cm)
    assert result is cm
    assert torch.equal(cm, 2 * CM)


def test_iou_dice_accuracy_by_hand():
    # class 0: TP=1, FP=col sum-TP=2-1=1, FN=row sum-TP=2-1=1 -> IoU 1/3, Dice 2/(2+1+1)=1/2
    # class 1: TP=2, FP=3-2=1,           FN=2-2=0           -> IoU 2/3, Dice 4/(4+1+0)=4/5
    # class 2: TP=0, FP=0,               FN=1               -> IoU 0,   Dice 0
    iou = iou_per_class(CM)
    assert iou.tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert mean_iou(CM) == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    dice = dice_per_class(CM)
    assert dice.tolist() == pytest.approx([0.5, 0.8, 0.0])
    assert mean_dice(CM) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    # correct pixels = trace = 1 + 2 + 0 = 3 of 5
    assert pixel_accuracy(CM) == pytest.approx(3 / 5)


def test_absent_class_is_nan_and_left_out_of_the_means():
    # same pixels with 4 classes: class 3 is in neither pred nor target -> 0/0
    cm = confusion_matrix(PRED, TARGET, num_classes=4)
    assert torch.equal(cm[:3, :3], CM) and cm[3].sum() == 0 and cm[:, 3].sum() == 0
    iou, dice = iou_per_class(cm), dice_per_class(cm)
    assert math.isnan(iou[3]) and math.isnan(dice[3])
    assert mean_iou(cm) == pytest.approx(1 / 3)  # still the mean over classes 0..2
    assert mean_dice(cm) == pytest.approx(1.3 / 3)


def test_class_only_predicted_counts_as_zero_not_nan():
    # target all 0; pred says 1 on two pixels -> cm = [[2, 2], [0, 0]]
    cm = confusion_matrix(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 0, 0]), 2)
    assert cm.tolist() == [[2, 2], [0, 0]]
    # class 0: TP=2, FP=0, FN=2 -> 2/4; class 1: TP=0, FP=2, FN=0 -> 0 (a false alarm, not absent)
    assert iou_per_class(cm).tolist() == pytest.approx([0.5, 0.0])
    assert mean_iou(cm) == pytest.approx(0.25)


def test_all_ignored_gives_nan():
    cm = confusion_matrix(torch.tensor([1, 2]), torch.tensor([255, 255]), 3)
    assert cm.sum() == 0
    assert math.isnan(pixel_accuracy(cm)) and math.isnan(mean_iou(cm))


@pytest.mark.parametrize(
    "pred, target, match",
    [
        (torch.tensor([0, 3]), torch.tensor([0, 1]), "pred has values \\[3\\]"),
        (torch.tensor([0, 1]), torch.tensor([0, 7]), "target has values \\[7\\]"),
        (torch.tensor([0, 1, 2]), torch.tensor([0, 1]), "shapes differ"),
    ],
)
def test_bad_inputs_raise(pred, target, match):
    with pytest.raises(ValueError, match=match):
        confusion_matrix(pred, target, 3)


def test_segmentation_metrics_accepts_logits_and_labels():
    # logits (N=1, C=3, H=2, W=3) whose argmax is PRED
    logits = torch.nn.functional.one_hot(PRED, 3).permute(2, 0, 1).float()[None] * 5.0
    metrics = SegmentationMetrics(num_classes=3)
    metrics.update(logits, TARGET[None])
    assert torch.equal(metrics.cm, CM)
    metrics.update(PRED[None], TARGET[None])  # already labels
    assert torch.equal(metrics.cm, 2 * CM)

    result = metrics.compute()
    assert set(result) == {"miou", "per_class_iou", "pixel_accuracy", "mean_dice", "per_class_dice"}
    assert result["miou"] == pytest.approx(1 / 3)  # doubling every count changes no ratio
    assert result["per_class_iou"] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert result["pixel_accuracy"] == pytest.approx(3 / 5)
    assert result["per_class_dice"] == pytest.approx([0.5, 0.8, 0.0])
    assert isinstance(result["per_class_iou"], list)

    metrics.reset()
    assert metrics.cm.sum() == 0


# --- against torchmetrics (an independent implementation) --------------------------------

def random_segmentation(seed: int, num_classes: int, absent: tuple[int, ...] = (), shape=(4, 23, 31)):
    """Random (pred, target) label maps with ~15% ignored pixels; classes in ``absent`` occur in neither."""
    g = torch.Generator().manual_seed(seed)
    present = torch.tensor([c for c in range(num_classes) if c not in absent])
    target = present[torch.randint(len(present), shape, generator=g)]
    # a prediction that is right about half the time, so the IoUs spread over (0, 1)
    noise = present[torch.randint(len(present), shape, generator=g)]
    pred = torch.where(torch.rand(shape, generator=g) < 0.5, target, noise)
    target[torch.rand(shape, generator=g) < 0.15] = IGNORE_INDEX
    return pred, target


@pytest.mark.parametrize("seed, num_classes, absent", [(0, 11, ()), (1, 5, ()), (2, 11, (3, 7)), (3, 2, ())])
def test_metrics_match_torchmetrics(seed, num_classes, absent):
    from torchmetrics.classification import (
        MulticlassAccuracy,
        MulticlassConfusionMatrix,
        MulticlassF1Score,
        MulticlassJaccardIndex,
    )

    pred, target = random_segmentation(seed, num_classes, absent)
    kw = dict(num_classes=num_classes, ignore_index=IGNORE_INDEX)
    cm = confusion_matrix(pred, target, num_classes)
    assert torch.equal(cm, MulticlassConfusionMatrix(**kw)(pred, target))

    iou, dice = iou_per_class(cm), dice_per_class(cm)
    absent_mask = torch.zeros(num_classes, dtype=torch.bool)
    absent_mask[list(absent)] = True
    assert torch.equal(torch.isnan(iou), absent_mask) and torch.equal(torch.isnan(dice), absent_mask)
    # torchmetrics gives an absent class 0 (its zero_division), we give nan: compare the others
    ref_iou = MulticlassJaccardIndex(average=None, **kw)(pred, target).double()
    ref_dice = MulticlassF1Score(average=None, **kw)(pred, target).double()
    torch.testing.assert_close(iou[~absent_mask], ref_iou[~absent_mask], atol=1e-6, rtol=0)
    torch.testing.assert_close(dice[~absent_mask], ref_dice[~absent_mask], atol=1e-6, rtol=0)
    # torchmetrics' macro average also leaves out classes absent from both prediction and target
    assert mean_iou(cm) == pytest.approx(MulticlassJaccardIndex(average="macro", **kw)(pred, target).item(), abs=1e-6)
    assert mean_dice(cm) == pytest.approx(MulticlassF1Score(average="macro", **kw)(pred, target).item(), abs=1e-6)
    assert pixel_accuracy(cm) == pytest.approx(MulticlassAccuracy(average="micro", **kw)(pred, target).item(),
                                               abs=1e-6)
    assert 0.2 < mean_iou(cm) < 0.9  # not a degenerate case


def test_accumulated_metrics_match_torchmetrics_over_batches():
    from torchmetrics.classification import MulticlassJaccardIndex

    metrics = SegmentationMetrics(num_classes=6)
    reference = MulticlassJaccardIndex(num_classes=6, average=None, ignore_index=IGNORE_INDEX)
    for seed in range(4):
        pred, target = random_segmentation(10 + seed, 6)
        metrics.update(pred, target)
        reference.update(pred, target)
    torch.testing.assert_close(torch.tensor(metrics.compute()["per_class_iou"], dtype=torch.float64),
                               reference.compute().double(),
                               atol=1e-6, rtol=0)
