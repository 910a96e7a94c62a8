"""CamVid Dataset on small synthetic PNG folders (plus a few extra checks on the real data)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tutorial_lib
from tutorial_lib.data import (
    CAMVID32_LABEL_COLORS,
    IGNORE_INDEX,
    CamVid,
    CamVidDataError,
    CamVidNotFoundError,
    camvid_dir,
    train_transform,
)

H, W = 12, 16


def make_camvid(root: Path, split: str = "train", n: int = 3, seed: int = 0):
    """Write ``split/`` + ``splitannot/`` with n random pairs; returns {name: (image, label)}."""
    rng = np.random.default_rng(seed)
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
    pairs = {}
    for i in range(n):
        name = f"seq_{i:03d}.png"
        image = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
        label = rng.integers(0, 12, size=(H, W), dtype=np.uint8)  # 0..10 classes + 11 void
        Image.fromarray(image).save(root / split / name)
        Image.fromarray(label).save(root / f"{split}annot" / name)
        pairs[name] = (image, label)
    return pairs


def expected_label(label: np.ndarray) -> np.ndarray:
    return np.where(label == 11, IGNORE_INDEX, label)


def test_folder_pairs_and_item_format(tmp_path):
    pairs = make_camvid(tmp_path)
    ds = CamVid(tmp_path, "train")
    assert len(ds) == 3
    assert [p.name for p, _ in ds.pairs] == sorted(pairs)
    image, label = ds[1]
    assert image.dtype == torch.float32 and image.shape == (3, H, W)
    assert label.dtype == torch.int64 and label.shape == (H, W)
    src_image, src_label = pairs["seq_001.png"]
    torch.testing.assert_close(image, torch.from_numpy(src_image).permute(2, 0, 1).float() / 255)
    np.testing.assert_array_equal(label.numpy(), expected_label(src_label))
    assert (label == 11).sum() == 0 and (label == IGNORE_INDEX).sum() == (src_label == 11).sum() > 0


def test_list_file_with_upstream_paths_is_used(tmp_path):
    make_camvid(tmp_path, n=3)
    (tmp_path / "train.txt").write_text(
        "/SegNet/CamVid/train/seq_002.png /SegNet/CamVid/trainannot/seq_002.png\n"
        "/SegNet/CamVid/train/seq_000.png /SegNet/CamVid/trainannot/seq_000.png\n"
    )
    ds = CamVid(tmp_path, "train")
    assert [(img.relative_to(tmp_path).as_posix(), lbl.relative_to(tmp_path).as_posix()) for img, lbl in ds.pairs] == [
        ("train/seq_000.png", "trainannot/seq_000.png"),
        ("train/seq_002.png", "trainannot/seq_002.png"),
    ]


def test_list_file_naming_missing_files(tmp_path):
    make_camvid(tmp_path, n=1)
    (tmp_path / "train.txt").write_text("/SegNet/CamVid/train/nope.png /SegNet/CamVid/trainannot/nope.png\n")
    with pytest.raises(CamVidNotFoundError, match="nope.png"):
        CamVid(tmp_path, "train")


def test_missing_data_folder_says_how_to_download(tmp_path):
    with pytest.raises(CamVidNotFoundError, match="python -m tutorial_lib.data.download camvid DEST"):
        CamVid(tmp_path / "does-not-exist")
    make_camvid(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="val/ \\+ valannot/"):  # root exists, split does not
        CamVid(tmp_path, "val")


def test_root_none_uses_camvid_dir_env(tmp_path, monkeypatch):
    make_camvid(tmp_path, n=2)
    monkeypatch.setenv("CAMVID_DIR", str(tmp_path))
    assert camvid_dir() == tmp_path
    assert len(CamVid(None)) == 2


def test_camvid_dir_default_is_shared_folder_beside_repo(monkeypatch):
    monkeypatch.delenv("CAMVID_DIR", raising=False)
    shared = Path(tutorial_lib.__file__).resolve().parents[1].parent / "shared" / "camvid"
    assert camvid_dir() == (shared if shared.is_dir() else None)


def test_images_without_labels_are_named(tmp_path):
    make_camvid(tmp_path, n=3)
    (tmp_path / "trainannot" / "seq_001.png").unlink()
    with pytest.raises(CamVidNotFoundError, match="seq_001.png") as info:
        CamVid(tmp_path)
    assert "seq_000" not in str(info.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_is_named(tmp_path, damage):
    make_camvid(tmp_path, n=2)
    path = tmp_path / "train" / "seq_001.png"
    data = path.read_bytes()
    path.write_bytes(b"not a png at all" if damage == "garbage" else data[: len(data) // 2])
    ds = CamVid(tmp_path)
    ds[0]  # the good one still loads
    with pytest.raises(CamVidDataError, match="seq_001.png"):
        ds[1]


def test_label_values_out_of_range_are_named(tmp_path):
    make_camvid(tmp_path, n=1)
    label = np.zeros((H, W), np.uint8)
    label[0, 0], label[0, 1] = 12, 200
    Image.fromarray(label).save(tmp_path / "trainannot" / "seq_000.png")
    with pytest.raises(CamVidDataError, match=r"seq_000.png.*\[12, 200\]"):
        CamVid(tmp_path)[0]


def test_size_mismatch_names_file_and_sizes(tmp_path):
    make_camvid(tmp_path, n=1)
    Image.fromarray(np.zeros((H + 2, W, 1), np.uint8)[..., 0]).save(tmp_path / "trainannot" / "seq_000.png")
    with pytest.raises(CamVidDataError, match=rf"seq_000.png.*{W}x{H} .*{W}x{H + 2}"):
        CamVid(tmp_path)[0]


def test_colour_label_in_index_mode_points_to_rgb32(tmp_path):
    make_camvid(tmp_path, n=1)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "trainannot" / "seq_000.png")
    with pytest.raises(CamVidDataError, match="rgb32"):
        CamVid(tmp_path)[0]


def test_max_images(tmp_path):
    make_camvid(tmp_path, n=3)
    ds = CamVid(tmp_path, max_images=2)
    assert len(ds) == 2 and [p.name for p, _ in ds.pairs] == ["seq_000.png", "seq_001.png"]


def test_cache_keeps_decoded_arrays(tmp_path):
    make_camvid(tmp_path, n=2)
    plain = CamVid(tmp_path)
    cached = CamVid(tmp_path, cache=True)
    for folder in ("train", "trainannot"):  # files gone: only the cache can answer now
        for path in (tmp_path / folder).iterdir():
            path.unlink()
    for i in range(2):
        with pytest.raises(FileNotFoundError):
            plain[i]
        image, label = cached[i]
        assert image.shape == (3, H, W) and label.shape == (H, W)


def test_cache_progress_bar_can_be_switched_off(tmp_path, capsys):
    make_camvid(tmp_path, n=2)
    CamVid(tmp_path, cache=True, progress=False)
    assert "caching" not in capsys.readouterr().err
    CamVid(tmp_path, cache=True)
    assert "caching CamVid train" in capsys.readouterr().err


def test_resize_uses_nearest_for_labels(tmp_path):
    make_camvid(tmp_path, n=1)
    # a label made of 2x2 blocks: halving it with nearest must give the block values back
    blocks = np.random.default_rng(1).integers(0, 12, size=(H // 2, W // 2)).astype(np.uint8)
    Image.fromarray(np.kron(blocks, np.ones((2, 2), np.uint8))).save(tmp_path / "trainannot" / "seq_000.png")
    for cache in (False, True):
        image, label = CamVid(tmp_path, resize=(H // 2, W // 2), cache=cache)[0]
        assert image.shape == (3, H // 2, W // 2)
        np.testing.assert_array_equal(label.numpy(), expected_label(blocks))


def test_transform_runs_on_every_getitem_after_the_cache(tmp_path):
    make_camvid(tmp_path, n=1)
    calls = []

    def transform(image, mask):
        calls.append((image.dtype, image.shape, mask.dtype, mask.shape))
        return {"image": np.zeros((4, 5, 3), np.float32) + len(calls), "mask": mask[:4, :5]}

    ds = CamVid(tmp_path, transform=transform, cache=True)
    first, second = ds[0], ds[0]
    assert calls == [(np.uint8, (H, W, 3), np.uint8, (H, W))] * 2
    assert first[0].shape == (3, 4, 5) and first[0][0, 0, 0] == 1 and second[0][0, 0, 0] == 2
    assert first[1].dtype == torch.int64


def test_with_train_transform_and_dataloader(tmp_path):
    make_camvid(tmp_path, n=4)
    ds = CamVid(tmp_path, transform=train_transform(size=(8, 8), seed=0), cache=True)
    images, labels = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert images.shape == (4, 3, 8, 8) and images.dtype == torch.float32
    assert labels.shape == (4, 8, 8) and labels.dtype == torch.int64
    assert set(labels.unique().tolist()) <= set(range(11)) | {IGNORE_INDEX}


def test_rgb32_layout(tmp_path):
    release = dict(CAMVID32_LABEL_COLORS)
    (tmp_path / "train").mkdir()
    (tmp_path / "train_labels").mkdir()
    colours = np.array(
        [[release["Sky"], release["Wall"], release["Child"], release["Void"]]] * 2, dtype=np.uint8
    )  # (2, 4, 3)
    Image.fromarray(np.zeros((2, 4, 3), np.uint8)).save(tmp_path / "train" / "f001.png")
    Image.fromarray(colours).save(tmp_path / "train_labels" / "f001_L.png")
    ds = CamVid(tmp_path, label_format="rgb32")
    _, label = ds[0]
    assert label.tolist() == [[0, 1, 9, IGNORE_INDEX]] * 2  # Sky, Building, Pedestrian, void

    Image.fromarray(np.zeros((2, 4), np.uint8)).save(tmp_path / "train_labels" / "f001_L.png")
    with pytest.raises(CamVidDataError, match="label_format='index'"):
        ds[0]

    (tmp_path / "train_labels" / "f001_L.png").unlink()
    with pytest.raises(CamVidNotFoundError, match="f001.png"):
        CamVid(tmp_path, label_format="rgb32")
    with pytest.raises(ValueError, match="label_format"):
        CamVid(tmp_path, label_format="colour")


# --- extra checks on the real data (skipped where ../shared/camvid is absent) -----------

REAL = camvid_dir()
real_data = pytest.mark.skipif(REAL is None or not (REAL / "train").is_dir(), reason="CamVid data not available")


@real_data
def test_real_splits():
    train, val = CamVid(REAL, "train"), CamVid(REAL, "val")
    assert (len(train), len(val)) == (367, 101)
    image, label = val[0]
    assert image.shape == (3, 360, 480) and label.shape == (360, 480)
    assert set(label.unique().tolist()) <= set(range(11)) | {IGNORE_INDEX}


@real_data
def test_real_cached_resized_subset():
    ds = CamVid(REAL, "val", cache=True, resize=(90, 120), max_images=3)
    image, label = ds[2]
    assert image.shape == (3, 90, 120) and label.shape == (90, 120)


def test_camvid_dir_is_none_when_env_points_nowhere(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("CAMVID_DIR", str(missing))
    assert camvid_dir() is None
    with pytest.raises(CamVidNotFoundError, match="CAMVID_DIR=.*nowhere"):
        CamVid(None)
