"""Class frequencies and median-frequency weights on hand-made labels (and on the real train split)."""

import numpy as np
import pytest
import torch
from PIL import Image

from tutorial_lib.data import (
    CAMVID_CLASSES,
    IGNORE_INDEX,
    SEGNET_CLASS_WEIGHTS,
    CamVid,
    ClassFrequencies,
    camvid_dir,
    class_frequencies,
    median_frequency_weights,
)

# two tiny label images, 4 classes (class 3 never occurs), one ignored pixel
L1 = np.array([[0, 0, 1], [1, 1, IGNORE_INDEX]])  # 5 labelled pixels: class 0 x2, class 1 x3
L2 = np.array([[0, 2], [2, 2]])                   # 4 labelled pixels: class 0 x1, class 2 x3
# pixel counts:    c0 = 2 + 1 = 3,  c1 = 3,  c2 = 3,  c3 = 0
# present pixels:  c0 in both images: 5 + 4 = 9;  c1 only in L1: 5;  c2 only in L2: 4;  c3: 0
# freq:            c0 = 3/9 = 1/3,  c1 = 3/5 = 0.6,  c2 = 3/4 = 0.75,  c3 = nan
# median of (1/3, 0.6, 0.75) = 0.6
# weights:         c0 = 0.6 / (1/3) = 1.8,  c1 = 0.6 / 0.6 = 1,  c2 = 0.6 / 0.75 = 0.8,  c3 = 0 (absent)
EXPECTED_WEIGHTS = [1.8, 1.0, 0.8, 0.0]


def test_class_frequencies_by_hand():
    stats = class_frequencies([L1, L2], num_classes=4)
    assert stats.pixel_counts.tolist() == [3, 3, 3, 0]
    assert stats.present_pixels.tolist() == [9, 5, 4, 0]
    assert stats.frequencies[:3] == pytest.approx([1 / 3, 0.6, 0.75])
    assert np.isnan(stats.frequencies[3])
    assert stats.num_images == 2


def test_median_frequency_weights_by_hand():
    assert median_frequency_weights([L1, L2], num_classes=4) == pytest.approx(EXPECTED_WEIGHTS)
    stats = class_frequencies([L1, L2], num_classes=4)
    assert isinstance(stats, ClassFrequencies)
    assert median_frequency_weights(stats) == pytest.approx(EXPECTED_WEIGHTS)


def test_accepts_tensors_and_dataset_items():
    items = [(torch.zeros(3, 2, 3), torch.from_numpy(L1)), (torch.zeros(3, 2, 2), torch.from_numpy(L2))]
    assert median_frequency_weights(items, num_classes=4) == pytest.approx(EXPECTED_WEIGHTS)


def test_reads_labels_of_a_camvid_dataset_without_transforms(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "trainannot").mkdir()
    for name, label in (("a.png", L1), ("b.png", L2)):
        void_as_11 = np.where(label == IGNORE_INDEX, 11, label).astype(np.uint8)  # on-disk format
        Image.fromarray(void_as_11).save(tmp_path / "trainannot" / name)
        Image.fromarray(np.zeros(label.shape + (3,), np.uint8)).save(tmp_path / "train" / name)

    def transform_that_must_not_run(image, mask):
        raise AssertionError("statistics must not go through the augmentation")

    ds = CamVid(tmp_path, transform=transform_that_must_not_run)
    assert median_frequency_weights(ds, num_classes=4) == pytest.approx(EXPECTED_WEIGHTS)


def test_bad_values_and_empty_input():
    with pytest.raises(ValueError, match=r"\[7\]"):
        class_frequencies([np.array([[0, 7]])], num_classes=4)
    with pytest.raises(ValueError, match="no labelled pixels"):
        median_frequency_weights([np.full((2, 2), IGNORE_INDEX)], num_classes=4)


# --- real data: compare with the weights published with SegNet --------------------------

REAL = camvid_dir()


@pytest.mark.skipif(REAL is None or not (REAL / "trainannot").is_dir(), reason="CamVid data not available")
def test_real_train_weights_are_close_to_segnets():
    ours = median_frequency_weights(CamVid(REAL, "train"))
    segnet = np.array(SEGNET_CLASS_WEIGHTS)
    ratio = ours / segnet
    sign = CAMVID_CLASSES.index("SignSymbol")
    others = np.arange(11) != sign
    # ten classes agree within 25% (see data/README.md for the table) ...
    assert np.all(np.abs(ratio[others] - 1) < 0.25), dict(zip(CAMVID_CLASSES, ratio.round(3)))
    # ... and rank the classes in the same order
    assert np.array_equal(np.argsort(ours[others]), np.argsort(segnet[others]))
    # SegNet's SignSymbol weight (9.64) is ~2.5x what the train labels give; it is still a rare class
    assert 0.3 < ratio[sign] < 0.5 and ours[sign] > 1
