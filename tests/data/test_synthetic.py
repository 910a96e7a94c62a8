"""Drawn CamVid-format data (tutorial_lib.data.synthetic): the fallback when CamVid is absent."""

import hashlib

import numpy as np
import pytest

from tutorial_lib.data import IGNORE_INDEX, NUM_CLASSES, CamVid, make_synthetic_camvid, street_image, street_label


def test_fixed_scene_is_deterministic_and_has_every_class():
    a, b = street_label(360, 480), street_label(360, 480)
    assert a.dtype == np.uint8 and a.shape == (360, 480)
    assert np.array_equal(a, b)
    assert np.unique(a).tolist() == list(range(NUM_CLASSES))
    # the sky is on top and the road at the bottom centre
    assert a[2, 240] == 0 and a[-2, 240] == 3


def test_random_scenes_vary_with_the_generator_and_repeat_with_the_seed():
    draws = [street_label(120, 160, np.random.default_rng(s)) for s in (1, 2)]
    again = street_label(120, 160, np.random.default_rng(1))
    assert not np.array_equal(draws[0], draws[1])
    assert np.array_equal(draws[0], again)
    for lab in draws:
        assert lab.max() < NUM_CLASSES


def test_painted_image_follows_the_label():
    label = street_label(96, 128)
    image = street_image(label, np.random.default_rng(0))
    assert image.shape == (96, 128, 3) and image.dtype == np.uint8
    sky, road = image[label == 0].mean(0), image[label == 3].mean(0)
    assert sky[2] > road[2] + 60  # the sky is painted much bluer/brighter than the road


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.png")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_synthetic_dataset_loads_with_camvid(tmp_path):
    root = make_synthetic_camvid(tmp_path / "a", n_train=3, n_val=2, size=(48, 64), seed=5)
    train, val = CamVid(root, "train"), CamVid(root, "val")
    assert (len(train), len(val)) == (3, 2)
    image, label = train[0]
    assert image.shape == (3, 48, 64) and label.shape == (48, 64)
    assert (label[0] == IGNORE_INDEX).all() and (label[:, -1] == IGNORE_INDEX).all()  # void border
    inner = label[1:-1, 1:-1]
    assert inner.max() < NUM_CLASSES
    assert _digest(root) == _digest(make_synthetic_camvid(tmp_path / "b", 3, 2, (48, 64), seed=5))
    assert _digest(root) != _digest(make_synthetic_camvid(tmp_path / "c", 3, 2, (48, 64), seed=6))


@pytest.mark.parametrize("n_val", [0, 1])
def test_split_sizes(tmp_path, n_val):
    root = make_synthetic_camvid(tmp_path, n_train=1, n_val=n_val, size=(16, 16))
    assert len(list((root / "val").glob("*.png"))) == n_val
    assert len(list((root / "trainannot").glob("*.png"))) == 1
