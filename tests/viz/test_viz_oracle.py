"""The patch-size oracle over several frames (notebook 03), checked against torchmetrics and by hand."""

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from tutorial_lib.viz import patches as vp

IGNORE = 255


def _labels(n=3, h=36, w=50, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(n):  # blocky labels with some void, like a segmentation map
        lab = np.repeat(np.repeat(rng.integers(0, classes, (h // 4 + 1, w // 4 + 1)), 4, 0), 4, 1)[:h, :w]
        lab[rng.random((h, w)) < 0.05] = IGNORE
        maps.append(lab.astype(np.int64))
    return maps


def _majority_prediction(lab, p, classes):
    """Independent oracle: each P x P patch (void-padded) predicts its most frequent non-void label."""
    padded = vp.pad_to_multiple(lab, p, IGNORE)
    pred = np.zeros_like(padded)
    for y in range(0, padded.shape[0], p):
        for x in range(0, padded.shape[1], p):
            patch = padded[y:y + p, x:x + p]
            votes = np.bincount(patch[patch != IGNORE], minlength=classes)
            pred[y:y + p, x:x + p] = int(np.argmax(votes)) if votes.sum() else 0
    return padded, pred


def test_pad_to_multiple_pads_bottom_right_only():
    a = np.arange(6).reshape(2, 3)
    out = vp.pad_to_multiple(a, 4, -1)
    assert out.shape == (4, 4) and (out[:2, :3] == a).all() and (out[2:] == -1).all() and (out[:, 3] == -1).all()
    assert vp.pad_to_multiple(np.zeros((8, 8)), 4, 1).shape == (8, 8)
    with pytest.raises(ValueError):
        vp.pad_to_multiple(a, 0, 0)


@pytest.mark.parametrize("patch", [4, 8, 16])
def test_oracle_iou_matches_torchmetrics(patch):
    classes = 5
    labels = _labels(classes=classes)
    (row,) = vp.oracle_table(labels, [patch], num_classes=classes, ignore_index=IGNORE)
    preds, targets = [], []
    for lab in labels:
        padded, pred = _majority_prediction(lab, patch, classes)
        preds.append(torch.from_numpy(pred).flatten())
        targets.append(torch.from_numpy(padded).flatten())
    metric = MulticlassJaccardIndex(classes, average=None, ignore_index=IGNORE)
    expected = metric(torch.cat(preds), torch.cat(targets)).numpy()
    np.testing.assert_allclose(np.asarray(row["iou"], dtype=float), expected, atol=1e-6)
    assert row["miou"] == pytest.approx(float(np.mean(expected)), abs=1e-6)


def test_smaller_patches_never_lose_to_much_larger_ones():
    rows = vp.oracle_table(_labels(classes=5), [4, 32], num_classes=5, ignore_index=IGNORE)
    assert rows[0]["miou"] > rows[1]["miou"]


def test_row_column_similarity_of_a_separable_embedding():
    gh, gw = 3, 4
    sim = np.full((gh, gw, gh, gw), -0.5)
    for r in range(gh):
        for c in range(gw):
            sim[r, c, r, :] = 0.5
            sim[r, c, :, c] = 0.5
            sim[r, c, r, c] = 1.0
    line, other = vp.row_column_similarity(sim)
    assert line == pytest.approx(0.5) and other == pytest.approx(-0.5)
