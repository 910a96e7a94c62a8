"""The training engine (tutorial_lib.train) on a tiny synthetic CamVid folder and a tiny model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tutorial_lib.train as train_module
from tutorial_lib.evaluate import evaluate_checkpoint
from tutorial_lib.data import CAMVID_CLASSES, MEAN, STD, VOID_LABEL
from tutorial_lib.train import (
    TrainConfig,
    TrainingDivergedError,
    cpu_supports_bf16,
    export_checkpoint,
    load_checkpoint,
    lr_factor,
    main,
    read_checkpoint,
    resolve_precision,
    train,
)

IMAGE_HW = (40, 60)  # not the model size: evaluation has to resize
MODEL_HW = (32, 48)
SMALL = dict(  # a small TransUNet (GroupNorm needs multiples of 32): seconds per test
    resnet_layers=(1, 1, 1), resnet_width=32, resnet_planes=(32, 32, 32), hidden_size=32, num_layers=1,
    num_heads=2, head_dim=16, mlp_dim=64, decoder_head_channels=16, decoder_channels=(16, 8, 8, 8),
)


def make_camvid(root: Path, splits=(("train", 6), ("val", 3)), seed: int = 0) -> Path:
    """SegNet layout: split/ + splitannot/ PNG pairs; labels 0..10 and 11 = void, colours follow labels."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (12, 3), dtype=np.uint8)
    for split, n in splits:
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            label = np.zeros(IMAGE_HW, np.uint8)
            for c in range(0, 11):  # vertical stripes of random widths, shifted per image
                label[:, (c * 6 + i) % IMAGE_HW[1]:] = c
            label[: rng.integers(1, 5)] = VOID_LABEL
            image = palette[label] // 2 + rng.integers(0, 128, (*IMAGE_HW, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / split / f"f{i:03d}.png")
            Image.fromarray(label).save(root / f"{split}annot" / f"f{i:03d}.png")
    return root


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from 2 threads, and on a shared, busy CPU they lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    return make_camvid(tmp_path_factory.mktemp("camvid"))


def small_config(data, out, **kw) -> TrainConfig:
    base = dict(config="tiny", img_size=MODEL_HW, model_overrides=SMALL, data=str(data), out=str(out),
                epochs=2, batch_size=2, progress=False, precision="fp32", warmup_epochs=0.5)
    return TrainConfig(**{**base, **kw})


def state_dicts_close(a: dict, b: dict, atol: float) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].numel())


# --- precision and schedule ------------------------------------------------------------

ZEN4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
SAPPHIRE = "processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile amx_int8\n"
NO_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\nbugs\t\t: spectre_v1\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 bf16\n"


@pytest.mark.parametrize(
    "text, expected", [(ZEN4, True), (SAPPHIRE, True), (NO_BF16, False), (ARM, False), ("", False)]
)
def test_cpu_bf16_detection_from_cpuinfo(text, expected):
    assert cpu_supports_bf16(text) is expected


def test_precision_auto_follows_the_hardware():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, ZEN4) == "bf16"
    assert resolve_precision("auto", cpu, NO_BF16) == "fp32"
    assert resolve_precision("fp32", cpu, ZEN4) == "fp32"
    with pytest.warns(UserWarning, match="emulated"):
        assert resolve_precision("bf16", cpu, NO_BF16) == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp8", cpu)


def test_lr_factor_warmup_then_poly_or_cosine():
    assert lr_factor(0, 100, 10, "poly") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "poly") == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, "poly") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "poly") == pytest.approx(0.5**0.9)
    assert lr_factor(100, 100, 10, "poly") == pytest.approx(0.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(99, 100, 10, "constant") == 1.0
    assert lr_factor(0, 10, 0, "poly") == 1.0


def test_lr_factor_follows_a_time_budget_when_it_runs_out_first():
    assert lr_factor(20, 100, 10, "poly", progress=0.5) == pytest.approx(0.5**0.9)
    assert lr_factor(20, 100, 10, "poly", progress=0.0) == pytest.approx((1 - 10 / 90) ** 0.9)
    assert lr_factor(20, 100, 10, "cosine", progress=2.0) == pytest.approx(0.0)
    assert lr_factor(5, 100, 10, "poly", progress=0.9) == pytest.approx(0.6)  # warmup is by steps


def test_config_validation():
    with pytest.raises(ValueError, match="unknown config"):
        TrainConfig(config="huge")
    with pytest.raises(ValueError, match="class_weights"):
        TrainConfig(class_weights="inverse")
    assert TrainConfig(optimizer="sgd").base_lr == 0.01
    assert TrainConfig().model_config().num_classes == len(CAMVID_CLASSES)
    assert TrainConfig(img_size=[64, 96]).model_config().img_size == (64, 96)


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


def test_cli_trains_and_reports_errors(camvid, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["--config", "tiny", "--img-size", "32", "48", "--data", str(camvid), "--epochs", "1",
            "--batch-size", "3", "--max-images", "3", "--max-val-images", "2", "--out", str(out),
            "--no-progress", "--precision", "fp32", "--seed", "1", "--cache"]
    assert main(args) == 0
    assert "best val mIoU" in capsys.readouterr().out
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["train_config"]["max_images"] == 3 and ckpt["train_config"]["seed"] == 1

    # --resume takes the stored settings; options given now (--epochs) override them
    assert main(["--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 0
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["model_config"]["img_size"] == MODEL_HW
    assert ckpt["train_config"]["max_images"] == 3 and ckpt["train_config"]["epochs"] == 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    capsys.readouterr()

    assert main(args) == 2  # already holds a run
    assert "--resume" in capsys.readouterr().err
    assert main(args[:5] + ["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--export", str(out / "last.pt"), str(tmp_path / "e.pt")]) == 0
    assert load_checkpoint(tmp_path / "e.pt")[1]["epoch"] == 2


@pytest.mark.slow
def test_torchrun_two_cpu_processes(camvid, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "tutorial_lib.train", "--config", "tiny", "--img-size", "32", "48", "--data", str(camvid),
           "--epochs", "1", "--batch-size", "2", "--out", str(out), "--precision", "fp32"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 process(es)" in proc.stderr + proc.stdout
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["epoch"] == 1 and record["val_miou"] is not None
    model, meta = load_checkpoint(out / "last.pt")
    assert meta["world_size"] == 2 and meta["global_step"] == 1  # 3 images per process, batch 2, drop_last
    assert model(torch.randn(1, 3, *MODEL_HW)).shape == (1, len(CAMVID_CLASSES), *MODEL_HW)
