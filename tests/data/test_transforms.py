"""Augmentation pipelines: types, label alignment, nearest labels, ignore padding, no vertical flip."""

import albumentations as A
import numpy as np
import pytest
import torch

from tutorial_lib.data import CAMVID_COLORS, IGNORE_INDEX, MEAN, STD, denormalize, eval_transform, train_transform

PALETTE = np.array(CAMVID_COLORS, dtype=np.float32) / 255  # (11, 3), colours >= 64/255 apart


def block_scene(h=96, w=128, block=16, seed=0):
    """Label of random 16x16 blocks (some void) and an image whose colour encodes the label."""
    rng = np.random.default_rng(seed)
    label = np.kron(rng.integers(0, 11, size=(h // block, w // block)), np.ones((block, block), int))
    label[:block, :block] = IGNORE_INDEX
    image = np.zeros((h, w, 3), np.uint8)
    known = label != IGNORE_INDEX
    image[known] = np.array(CAMVID_COLORS, np.uint8)[label[known]]
    return image, label.astype(np.uint8)


def near_boundary(label: np.ndarray, radius: int) -> np.ndarray:
    """True where a different label value, or the border, is within ``radius`` pixels (Chebyshev).

    The border counts because a block edge just outside a crop still blends into its pixels.
    """
    padded = np.pad(label.astype(int), radius, constant_values=-1)
    h, w = label.shape
    out = np.zeros(label.shape, bool)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy : dy + h, dx : dx + w] != label
    return out


def test_train_transform_output_types():
    image, label = block_scene()
    out = train_transform(size=(64, 96), seed=0)(image=image, mask=label)
    assert isinstance(out["image"], torch.Tensor) and out["image"].dtype == torch.float32
    assert out["image"].shape == (3, 64, 96)
    assert isinstance(out["mask"], torch.Tensor) and out["mask"].shape == (64, 96)


def misaligned(image: torch.Tensor, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pixels whose colour decodes to another class than the label, pixels judged)."""
    rgb = denormalize(image)                                                  # (H, W, 3) in [0, 1]
    decoded = np.linalg.norm(rgb[:, :, None] - PALETTE, axis=-1).argmin(-1)  # nearest class colour
    # interpolation blends colours across block edges: judge pixels at least 2 px from an edge
    judge = (mask != IGNORE_INDEX) & ~near_boundary(mask, radius=1)
    return (decoded != mask) & judge, judge


def test_image_and_label_stay_aligned():
    """Decode every pixel's colour back to a class: it must equal the transformed label."""
    image, label = block_scene()
    checked = total = 0
    variants = set()
    for seed in range(60):
        out = train_transform(size=(64, 96), scale=(0.5, 2.0), color_jitter=None, seed=seed)(image=image, mask=label)
        mask = out["mask"].numpy()
        bad, judged = misaligned(out["image"], mask)
        assert not bad.any(), f"seed {seed}: {bad.sum()} pixels whose colour disagrees with the label"
        checked += judged.sum()
        total += (mask != IGNORE_INDEX).sum()
        variants.add(mask.tobytes())
    assert checked > 0.6 * total  # the check covered most labelled pixels
    assert len(variants) > 50  # and the augmentation really varied


def test_alignment_check_catches_a_two_pixel_shift():
    image, label = block_scene()
    out = eval_transform()(image=image, mask=label)
    assert not misaligned(out["image"], out["mask"].numpy())[0].any()
    assert misaligned(out["image"], np.roll(out["mask"].numpy(), 2, axis=1))[0].any()


def test_labels_stay_class_indices_and_padding_is_ignored():
    image, label = block_scene()
    # scale 0.5 makes the image 48x64, smaller than the 64x96 crop: it must be padded
    out = train_transform(size=(64, 96), scale=(0.5, 0.5), color_jitter=None, seed=1)(image=image, mask=label)
    mask = out["mask"].numpy()
    assert set(np.unique(mask)) <= set(np.unique(label))  # nearest: no blended label values
    padded = mask == IGNORE_INDEX
    assert padded.sum() >= 64 * 96 - 48 * 64  # every padded pixel is ignored
    rgb = denormalize(out["image"])
    assert np.allclose(rgb[padded], 0.0, atol=1e-6)  # image padded with black
    for seed in range(10):
        mask = train_transform(size=(40, 40), seed=seed)(image=image, mask=label)["mask"]
        assert set(mask.unique().tolist()) <= set(np.unique(label).tolist())


def test_no_vertical_flip():
    # top half sky (0), bottom half road (3); no rescale, full-size crop: only flips could move them
    image = np.zeros((32, 32, 3), np.uint8)
    label = np.zeros((32, 32), np.uint8)
    label[16:] = 3
    for seed in range(20):
        mask = train_transform(size=(32, 32), scale=(1.0, 1.0), seed=seed)(image=image, mask=label)["mask"]
        assert (mask[:16] == 0).all() and (mask[16:] == 3).all()
    assert not any(isinstance(t, A.VerticalFlip) for t in train_transform().transforms)
    assert "vertical" in train_transform.__doc__.lower()


def test_horizontal_flip_happens():
    image = np.zeros((8, 8, 3), np.uint8)
    label = np.zeros((8, 8), np.uint8)
    label[:, 4:] = 1
    firsts = {
        int(train_transform(size=(8, 8), scale=(1.0, 1.0), seed=s)(image=image, mask=label)["mask"][0, 0])
        for s in range(20)
    }
    assert firsts == {0, 1}


def test_color_jitter_switch():
    assert any(isinstance(t, A.ColorJitter) for t in train_transform().transforms)
    assert not any(isinstance(t, A.ColorJitter) for t in train_transform(color_jitter=None).transforms)


def test_eval_transform_resizes_and_normalises():
    image, label = block_scene()
    out = eval_transform()(image=image, mask=label)
    assert out["image"].shape == (3, 96, 128)
    np.testing.assert_allclose(denormalize(out["image"]), image / 255, atol=1e-5)
    np.testing.assert_array_equal(out["mask"].numpy(), label)
    small = eval_transform(size=(48, 64))(image=image, mask=label)
    assert small["image"].shape == (3, 48, 64) and small["mask"].shape == (48, 64)
    np.testing.assert_array_equal(small["mask"].numpy(), label[::2, ::2])  # nearest on 16px blocks


def test_denormalize():
    x = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    normalised = (x - np.array(MEAN, np.float32)[:, None, None]) / np.array(STD, np.float32)[:, None, None]
    back = denormalize(torch.from_numpy(normalised))
    assert back.shape == (4, 5, 3)
    np.testing.assert_allclose(back, x.transpose(1, 2, 0), atol=1e-6)
    assert denormalize(np.full((3, 2, 2), 100.0)).max() == 1.0  # clipped for imshow
    with pytest.raises(ValueError, match="3, H, W"):
        denormalize(np.zeros((4, 4, 3)))
