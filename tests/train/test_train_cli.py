"""python -m tutorial_lib.train: flags, --resume, --export, errors as one line and exit status 2, torchrun."""

import json
import os
import subprocess
import sys

import pytest
import torch
from train_helpers import MODEL_HW, small_cli_args

from tutorial_lib.data import CAMVID_CLASSES
from tutorial_lib.train import load_checkpoint, main, read_checkpoint


def test_cli_trains_and_reports_errors(camvid, tmp_path, capsys):
    out = tmp_path / "cli"
    args = small_cli_args(camvid, out)
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
    # channels_last 1x1 convolution weights used to make DDP copy their gradients every step
    assert "Grad strides do not match" not in proc.stderr
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["epoch"] == 1 and record["val_miou"] is not None
    model, meta = load_checkpoint(out / "last.pt")
    assert meta["world_size"] == 2 and meta["global_step"] == 1  # 3 images per process, batch 2, drop_last
    assert model(torch.randn(1, 3, *MODEL_HW)).shape == (1, len(CAMVID_CLASSES), *MODEL_HW)


def files_under(root) -> list:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_out_under_a_regular_file_is_one_clear_error_and_writes_nothing(camvid, tmp_path, capsys):
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    before = files_under(tmp_path)
    assert main(small_cli_args(camvid, blocker / "run")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert str(blocker) in err and "is a file, not a folder" in err and "--out" in err
    assert files_under(tmp_path) == before and blocker.read_text() == "not a folder"


def test_nan_loss_from_the_command_line_is_one_clear_error(camvid, tmp_path, capsys, monkeypatch):
    import tutorial_lib.train as train_module

    original = train_module.SegmentationLoss.forward

    def poisoned(self, logits, target, return_parts=False):
        loss, parts = original(self, logits, target, True)
        return loss * float("nan"), parts

    monkeypatch.setattr(train_module.SegmentationLoss, "forward", poisoned)
    assert main(small_cli_args(camvid, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: The loss became non-finite") and "Traceback" not in err
    assert "no epoch finished" in err and "--lr" in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_help_runs_as_a_module():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    proc = subprocess.run([sys.executable, "-m", "tutorial_lib.train", "--help"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for flag in ("--config", "--img-size", "--data", "--no-augment", "--time-limit MINUTES", "--resume",
                 "--export SRC DST", "--no-channels-last"):
        assert flag in proc.stdout
