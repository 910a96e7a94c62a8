"""tutorial_lib.checkpoint: atomic writes that survive a full disk, safe and versioned reads."""

import errno
import os
import random

import numpy as np
import pytest
import torch

import tutorial_lib.checkpoint as ck
from tutorial_lib.transunet import TransUNet, get_config

SMALL = dict(
    resnet_layers=(1, 1, 1), resnet_width=32, resnet_planes=(32, 32, 32), hidden_size=32, num_layers=1,
    num_heads=2, head_dim=16, mlp_dim=64, decoder_head_channels=16, decoder_channels=(16, 8, 8, 8),
)


def small_checkpoint(**extra) -> tuple[TransUNet, dict]:
    model = TransUNet(get_config("tiny", img_size=(32, 48), num_classes=11, **SMALL)).eval()
    state = {"format": ck.CHECKPOINT_FORMAT, "model": model.state_dict(),
             "model_config": ck.config_to_dict(model.config), "epoch": 1, **extra}
    return model, state


def fail_after_writing_some_bytes(monkeypatch):
    def full_disk(obj, f, *args, **kwargs):
        f.write(b"the first bytes of a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.torch, "save", full_disk)


def test_atomic_save_keeps_the_previous_file_when_the_disk_is_full(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ck.atomic_save({"epoch": 1, "w": torch.arange(5)}, path)
    before = path.read_bytes()
    fail_after_writing_some_bytes(monkeypatch)
    with pytest.raises(ck.CheckpointSaveError) as info:
        ck.atomic_save({"epoch": 2, "w": torch.arange(6)}, path)
    message = str(info.value)
    assert str(path) in message and "No space left on device" in message
    assert "previous last.pt is unchanged" in message and "Free some space" in message
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert path.read_bytes() == before
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]  # the temporary file is gone


def test_atomic_save_without_a_previous_file_leaves_nothing(tmp_path, monkeypatch):
    fail_after_writing_some_bytes(monkeypatch)
    with pytest.raises(ck.CheckpointSaveError, match="no new.pt was written"):
        ck.atomic_save({"epoch": 1}, tmp_path / "new.pt")
    assert os.listdir(tmp_path) == []


def test_atomic_save_writes_a_loadable_file_with_normal_permissions(tmp_path):
    path = ck.atomic_save({"x": torch.ones(3)}, tmp_path / "sub" / "a.pt")
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.ones(3))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(ck.CheckpointSaveError, match="is a folder you can write to"):
        ck.atomic_save({"x": 1}, path / "under_a_file.pt")  # a file where a folder should be


def test_load_checkpoint_rebuilds_the_model(tmp_path):
    model, state = small_checkpoint(class_names=["a"] * 11)
    path = ck.atomic_save(state, tmp_path / "m.pt")
    loaded, meta = ck.load_checkpoint(path)
    x = torch.randn(2, 3, 32, 48)
    torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    assert meta["epoch"] == 1 and "model" not in meta and meta["class_names"] == ["a"] * 11
    assert meta["mean"] == [0.485, 0.456, 0.406]  # defaults for files that lack them


def test_a_newer_or_foreign_format_is_refused_with_a_clear_message(tmp_path):
    _, state = small_checkpoint()
    ck.atomic_save({**state, "format": "tutorial_lib.train/2"}, tmp_path / "new.pt")
    with pytest.raises(ValueError, match=r"newer than this tutorial_lib reads.*Update tutorial_lib"):
        ck.read_checkpoint(tmp_path / "new.pt")
    ck.atomic_save({**state, "format": "other_lib/1"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt has checkpoint format 'other_lib/1'"):
        ck.read_checkpoint(tmp_path / "other.pt")
    del state["format"]
    ck.atomic_save(state, tmp_path / "none.pt")
    with pytest.raises(ValueError, match="format None"):
        ck.read_checkpoint(tmp_path / "none.pt")


class Payload:
    """A pickled object: what weights_only=True refuses to unpickle."""


def test_reading_is_weights_only(tmp_path):
    _, state = small_checkpoint()
    torch.save({**state, "payload": Payload()}, tmp_path / "code.pt")
    with pytest.raises(ValueError, match="Cannot read checkpoint"):
        ck.read_checkpoint(tmp_path / "code.pt")


def test_the_shipped_checkpoint_has_the_current_format():
    raw = torch.load(ck.SHIPPED_CHECKPOINT, weights_only=True)
    assert raw["format"] == ck.CHECKPOINT_FORMAT == "tutorial_lib.train/1"
    ck.check_format(raw, ck.SHIPPED_CHECKPOINT)


def test_rng_state_round_trip():
    state = ck.rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    ck.set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]
