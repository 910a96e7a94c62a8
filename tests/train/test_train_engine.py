"""The training engine (tutorial_lib.train) on a tiny synthetic CamVid folder and a tiny model."""

import errno
import json

import numpy as np
import pytest
import torch
from train_helpers import MODEL_HW, small_config, state_dicts_close

import tutorial_lib.checkpoint as checkpoint_module
import tutorial_lib.train as train_module
from tutorial_lib.data import CAMVID_CLASSES, MEAN, STD
from tutorial_lib.evaluate import evaluate_checkpoint
from tutorial_lib.train import (
    CheckpointSaveError,
    TrainingDivergedError,
    export_checkpoint,
    load_checkpoint,
    read_checkpoint,
    train,
)


# --- a whole run --------------------------------------------------------------------------

def test_train_writes_metrics_and_loadable_checkpoints(camvid, tmp_path):
    events = []
    result = train(small_config(camvid, tmp_path / "run", class_weights="median"), callback=events.append)

    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for r in lines:
        assert set(r["val_per_class_iou"]) == set(CAMVID_CLASSES)
        assert 0.0 <= r["val_miou"] <= 1.0 and r["train_loss"] > 0 and r["img_per_s"] > 0
        assert {"lr", "seconds", "val_pixel_accuracy", "val_mean_dice"} <= r.keys()
    assert result.history == lines

    steps = [e for e in events if e["event"] == "step"]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert len(steps) == 2 * 3 and [e["epoch"] for e in epochs] == [1, 2]
    assert steps[0]["lr"] == pytest.approx(1e-3 / 2)  # first of 2 warmup steps (0.5 epoch of 3 steps)
    assert all(np.isfinite(e["loss"]) for e in steps)
    # the step event hands over the model being trained and the training clock (benchmarks.time_to_miou uses them)
    assert all(e["model"] is result.model for e in steps) and all(e["precision"] == "fp32" for e in steps)
    elapsed = [e["elapsed"] for e in steps]
    assert all(0.0 < a < b for a, b in zip(elapsed, elapsed[1:]))

    for name in ("last.pt", "best.pt"):
        ckpt = torch.load(tmp_path / "run" / name, weights_only=True)
        assert {"model", "model_config", "class_names", "mean", "std", "epoch", "optimizer", "scheduler",
                "scaler", "rng", "history", "train_config"} <= ckpt.keys()
        assert ckpt["class_names"] == list(CAMVID_CLASSES)
        assert ckpt["mean"] == list(MEAN) and ckpt["std"] == list(STD)
        assert ckpt["model_config"]["img_size"] == MODEL_HW
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] == 2
    assert read_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == result.best_epoch
    assert not list((tmp_path / "run").glob("*.tmp"))  # atomic writes leave no temporary files

    # the evaluation command agrees with the validation done during training
    report = evaluate_checkpoint(result.last_checkpoint, camvid, "val", progress=False, precision="fp32")
    assert report["miou"] == pytest.approx(lines[-1]["val_miou"], abs=1e-12)
    assert report["per_class_iou"] == lines[-1]["val_per_class_iou"]

    model, meta = load_checkpoint(result.last_checkpoint)
    x = torch.randn(1, 3, *MODEL_HW)
    torch.testing.assert_close(model(x), result.model.eval()(x))
    assert meta["epoch"] == 2 and "model" not in meta


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(camvid, tmp_path):
    straight = train(small_config(camvid, tmp_path / "a", epochs=4))

    class Stop(Exception):
        pass

    def stop_after_epoch_2(event):
        if event["event"] == "epoch" and event["epoch"] == 2:
            raise Stop  # an interruption right after the epoch-2 checkpoint

    with pytest.raises(Stop):
        train(small_config(camvid, tmp_path / "b", epochs=4), callback=stop_after_epoch_2)
    assert read_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 2
    resumed = train(small_config(camvid, tmp_path / "b", epochs=4, resume=True))

    a = read_checkpoint(tmp_path / "a" / "last.pt")
    b = read_checkpoint(tmp_path / "b" / "last.pt")
    assert state_dicts_close(a["model"], b["model"], 1e-6) <= 1e-6
    assert a["global_step"] == b["global_step"] == 4 * 3
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 4
    for ra, rb in zip(straight.history, resumed.history):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], abs=1e-6)
        assert ra["val_miou"] == pytest.approx(rb["val_miou"], abs=1e-9)


def test_refuses_to_clobber_a_run_and_to_resume_nothing(camvid, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(small_config(camvid, tmp_path / "new", resume=True))
    train(small_config(camvid, tmp_path / "run", epochs=1, max_val_images=0))
    assert not (tmp_path / "run" / "best.pt").exists()  # no validation, no "best"
    with pytest.raises(FileExistsError, match="--resume"):
        train(small_config(camvid, tmp_path / "run", epochs=1))
    train(small_config(camvid, tmp_path / "run", epochs=1, overwrite=True, max_val_images=1))
    with pytest.raises(ValueError, match="different model config"):
        train(small_config(camvid, tmp_path / "run", epochs=2, resume=True, img_size=(48, 64)))


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(camvid, tmp_path, monkeypatch):
    original = train_module.SegmentationLoss.forward
    calls = {"n": 0}

    def poisoned(self, logits, target, return_parts=False):
        calls["n"] += 1
        out = original(self, logits, target, return_parts)
        if calls["n"] == 5:  # epoch 2, step 2 (3 steps per epoch)
            loss, parts = out if return_parts else (out, None)
            loss = loss * float("nan")
            return (loss, parts) if return_parts else loss
        return out

    monkeypatch.setattr(train_module.SegmentationLoss, "forward", poisoned)
    with pytest.raises(TrainingDivergedError) as info:
        train(small_config(camvid, tmp_path / "run", epochs=3))
    message = str(info.value)
    assert "nan" in message and "epoch 2, step 2/3" in message
    assert "--lr" in message and "fp32" in message and "last.pt" in message
    ckpt = read_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1


def test_time_limit_stops_the_run_and_anneals_the_lr(camvid, tmp_path):
    events = []
    result = train(small_config(camvid, tmp_path / "run", epochs=1000, time_limit=2.0, warmup_epochs=0),
                   callback=events.append)
    last = result.history[-1]
    assert last["time_limit_reached"] and last["epoch"] < 1000
    assert 2.0 <= last["elapsed"] < 30
    assert last["val_miou"] is not None and result.best_checkpoint is not None
    lrs = [e["lr"] for e in events if e["event"] == "step"]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.5e-3  # decayed with the time used
    again = train(small_config(camvid, tmp_path / "run", epochs=1000, time_limit=2.0, warmup_epochs=0,
                               resume=True))
    assert len(again.history) == len(result.history)  # a finished run stays finished


@pytest.mark.filterwarnings("ignore:bf16 on a CPU:UserWarning")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_runs_on_cpu(camvid, tmp_path, precision):
    result = train(small_config(camvid, tmp_path / "run", epochs=1, precision=precision, max_val_images=1))
    assert np.isfinite(result.history[0]["train_loss"]) and result.history[0]["val_miou"] is not None
    ckpt = read_checkpoint(result.last_checkpoint)
    assert ckpt["precision"] == precision
    assert all(v.dtype != torch.bfloat16 and v.dtype != torch.float16 for v in ckpt["model"].values())
    if precision == "fp16":
        assert ckpt["scaler"]["scale"] > 0  # GradScaler state is saved


def test_seeded_augmentation_depends_only_on_seed_epoch_and_index(camvid):
    from tutorial_lib.data import CamVid, train_transform
    from tutorial_lib.train import _SeededAugmentation

    def sample(epoch, index, order=()):
        data = _SeededAugmentation(CamVid(camvid, "train"), train_transform(MODEL_HW), seed=3)
        data.epoch = epoch
        for i in order:  # other items drawn first must not matter
            data[i]
        return data[index]

    a, b = sample(1, 2), sample(1, 2, order=(0, 5, 1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], sample(2, 2)[0])


def test_export_is_small_and_loads_as_float32(camvid, tmp_path):
    result = train(small_config(camvid, tmp_path / "run", epochs=1))
    dst = export_checkpoint(result.last_checkpoint, tmp_path / "small.pt", "fp16")
    exported = torch.load(dst, weights_only=True)
    assert "optimizer" not in exported and "rng" not in exported
    floats = [v for v in exported["model"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert dst.stat().st_size < result.last_checkpoint.stat().st_size / 4
    model, meta = load_checkpoint(dst)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert meta["class_names"] == list(CAMVID_CLASSES) and meta["weights_dtype"] == "fp16"
    x = torch.randn(2, 3, *MODEL_HW)
    torch.testing.assert_close(model(x), result.model(x), atol=2e-2, rtol=2e-2)




def test_out_under_a_regular_file_is_refused_before_anything_is_done(camvid, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder") as info:
        train(small_config(camvid, blocker / "deeper" / "run"))
    assert str(blocker) in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_disk_full_while_saving_keeps_the_previous_checkpoint(camvid, tmp_path, monkeypatch):
    """A full disk while writing epoch 2's last.pt: a clear error, epoch 1's checkpoint intact."""
    out = tmp_path / "run"
    saved = {}
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if obj["epoch"] == 2:  # last.pt is written first
            f.write(b"half a checkpoint")  # some bytes reach the disk, then it is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    def remember_epoch_1(event):
        if event["event"] == "epoch" and event["epoch"] == 1:
            saved["last"] = (out / "last.pt").read_bytes()

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    with pytest.raises(CheckpointSaveError) as info:
        train(small_config(camvid, out, epochs=3), callback=remember_epoch_1)
    message = str(info.value)
    assert str(out / "last.pt") in message and "No space left on device" in message
    assert "previous last.pt is unchanged" in message and "--resume" in message
    assert info.value.errno == errno.ENOSPC
    assert (out / "last.pt").read_bytes() == saved["last"]  # byte for byte
    assert read_checkpoint(out / "last.pt")["epoch"] == 1
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))  # nothing half-written left
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1

    monkeypatch.setattr(checkpoint_module.torch, "save", real_save)  # space again: resume finishes the run
    resumed = train(small_config(camvid, out, epochs=3, resume=True))
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]


# --- sliding-window validation ---------------------------------------------------------------

def test_sliding_validation_is_what_evaluate_reproduces_by_default(camvid, tmp_path):
    """A run with eval_mode="sliding" + flip validates on full-resolution frames; the checkpoint
    remembers it, so evaluate (and predict) use the same protocol without being told."""
    result = train(small_config(camvid, tmp_path / "run", epochs=1, eval_mode="sliding", eval_flip=True))
    last = result.history[-1]
    report = evaluate_checkpoint(result.last_checkpoint, camvid, "val", progress=False, precision="fp32")
    assert (report["mode"], report["flip"]) == ("sliding", True)
    assert report["miou"] == pytest.approx(last["val_miou"], abs=1e-12)
    resized = evaluate_checkpoint(result.last_checkpoint, camvid, "val", progress=False, precision="fp32",
                                  mode="resize", flip=False)
    assert (resized["mode"], resized["flip"]) == ("resize", False)


def test_sliding_scales_training_crops_relative_to_full_resolution(camvid):
    from tutorial_lib.train.distributed import Dist
    from tutorial_lib.train.loaders import train_data

    def scale_limit(**kw):
        cfg = small_config(camvid, "unused", scale=(0.5, 1.0), **kw)
        data = train_data(cfg, MODEL_HW, Dist(), progress=False)
        return data.augmented.transform.transforms[0].scale_limit

    assert scale_limit(eval_mode="sliding") == pytest.approx((-0.5, 0.0))  # frames at 0.5-1.0x their size
    base = 0.5 * (32 / 40 + 48 / 60)  # resize: relative to the frame shrunk to the model's input
    assert scale_limit() == pytest.approx((0.5 * base - 1.0, base - 1.0))


def test_validation_time_does_not_count_as_training_time(camvid, tmp_path, monkeypatch):
    import tutorial_lib.train.engine as engine_module

    real = engine_module.evaluate_model

    def slow_validation(*args, **kwargs):
        import time

        time.sleep(3.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_module, "evaluate_model", slow_validation)
    events = []
    train(small_config(camvid, tmp_path / "run"), callback=events.append)
    steps = [e for e in events if e["event"] == "step"]
    first_of_epoch_2 = next(i for i, e in enumerate(steps) if e["epoch"] == 2)
    gap = steps[first_of_epoch_2]["elapsed"] - steps[first_of_epoch_2 - 1]["elapsed"]
    # one step's time (milliseconds), not the 3 s validation in between; the margin absorbs a loaded CI machine
    assert gap < 1.5, gap


def test_the_ohem_option_reaches_the_loss(camvid, tmp_path):
    from tutorial_lib.train.distributed import Dist
    from tutorial_lib.train.engine import _set_up

    for ohem in (0.0, 0.7):
        run = _set_up(small_config(camvid, tmp_path / f"run{ohem}", ohem=ohem), Dist(), torch.device("cpu"))
        assert run.criterion.ohem_threshold == ohem
