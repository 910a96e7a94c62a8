"""The state of a training run: its files, what it holds in memory, what a checkpoint stores
of it, and how ``--resume`` puts it back (model, optimiser, scheduler, scaler, every RNG,
history and clock), so that an interrupted single-process run ends with the same weights as
an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..checkpoint import (
    CHECKPOINT_FORMAT,
    config_from_dict,
    config_to_dict,
    read_checkpoint,
    rng_state,
    set_rng_state,
)
from ..constants import IGNORE_INDEX
from ..data import CAMVID_CLASSES, MEAN, STD
from ..losses import SegmentationLoss
from ..transunet import TransUNetConfig
from .config import TrainConfig
from .distributed import Dist
from .loaders import TrainData
from .optim import RunClock


@dataclass
class RunFiles:
    """The files of a run in its output folder."""

    out: Path

    @property
    def last(self) -> Path:
        return self.out / "last.pt"

    @property
    def best(self) -> Path:
        return self.out / "best.pt"

    @property
    def metrics(self) -> Path:
        return self.out / "metrics.jsonl"


@dataclass
class Run:
    cfg: TrainConfig
    d: Dist
    device: torch.device
    files: RunFiles
    precision: str
    model: nn.Module
    model_cfg: TransUNetConfig
    data: TrainData
    val_loader: DataLoader | None
    criterion: SegmentationLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    clock: RunClock
    class_names: list[str] = field(default_factory=lambda: list(CAMVID_CLASSES))  # from the class table
    net: nn.Module | None = None  # the model, in DistributedDataParallel under torchrun
    history: list[dict] = field(default_factory=list)
    start_epoch: int = 1
    global_step: int = 0
    best_miou: float | None = None
    best_epoch: int | None = None
    time_up: bool = False

    @property
    def show(self) -> bool:
        return self.cfg.progress and self.d.main


def check_output(cfg: TrainConfig) -> RunFiles:
    """The run's files, after checking that ``cfg.out`` can hold them and that resuming or
    starting there is what ``cfg`` asks for (nothing is written here)."""
    files = RunFiles(Path(cfg.out))
    for folder in (files.out, *files.out.parents):
        if folder.exists():  # the nearest part of the path that exists must be a writable folder
            if not folder.is_dir():
                raise NotADirectoryError(
                    f"--out {files.out}: {folder} is a file, not a folder, so nothing can be written under it. "
                    "Choose another --out (a folder, or a path where none exists yet)."
                )
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(f"--out {files.out}: cannot write in {folder}. Choose another --out.")
            break
    if cfg.resume and not files.last.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint {files.last} to resume from (start without --resume).")
    if not cfg.resume and files.last.is_file() and not cfg.overwrite:
        raise FileExistsError(
            f"{files.out} already holds a run ({files.last}). Pass --resume to continue it, --overwrite to "
            "start over (its checkpoints will be replaced), or choose another --out."
        )
    return files


# settings that may differ between a run and its resumption without a note
_VOLATILE = {"resume", "overwrite", "progress", "check", "epochs", "workers", "threads", "device", "time_limit"}


def resume(run: Run) -> None:
    """Restore model, optimiser, scheduler, scaler, RNGs, history and clock from ``last.pt``."""
    files = run.files
    ckpt = read_checkpoint(files.last)
    stored = config_from_dict(ckpt["model_config"])
    if stored != run.model_cfg:
        raise ValueError(
            f"--resume: {files.last} was trained with a different model config:\n  stored {stored}\n"
            f"  now    {run.model_cfg}\nUse the same --config/--img-size, or another --out."
        )
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    run.scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    run.history = list(ckpt.get("history", []))
    run.start_epoch, run.global_step = ckpt["epoch"] + 1, ckpt["global_step"]
    run.best_miou, run.best_epoch = ckpt.get("best_miou"), ckpt.get("best_epoch")
    run.clock.now = run.clock.base = float(ckpt.get("elapsed", 0.0))
    run.clock.warmup_end = ckpt.get("warmup_end_elapsed")
    if ckpt.get("time_limit_reached"):
        run.start_epoch = run.cfg.epochs + 1  # that run is complete
    if run.d.main:
        now = dataclasses.asdict(run.cfg)
        changed = sorted(k for k, v in ckpt.get("train_config", {}).items()
                         if k not in _VOLATILE and now.get(k, v) != v)
        if changed:
            tqdm.write(f"note: resuming with settings that differ from the stored run: {', '.join(changed)}")
        # the file may hold an epoch whose checkpoint was never written: rewrite from the checkpoint
        files.metrics.write_text("".join(json.dumps(r) + "\n" for r in run.history))
        tqdm.write(f"resuming {files.out} after epoch {ckpt['epoch']} (global step {run.global_step})")



def checkpoint_state(run: Run, epoch: int, record: dict, val: dict | None) -> dict:
    """Everything ``--resume`` and ``load_checkpoint`` need (see ``tutorial_lib.checkpoint``)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model": run.model.state_dict(),
        "model_config": config_to_dict(run.model_cfg),
        "train_config": dataclasses.asdict(run.cfg),
        "class_names": list(run.class_names),
        "mean": list(MEAN),
        "std": list(STD),
        "ignore_index": IGNORE_INDEX,
        "epoch": epoch,
        "global_step": run.global_step,
        "best_miou": run.best_miou,
        "best_epoch": run.best_epoch,
        "metrics": val,
        "record": record,
        "history": run.history,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "rng": rng_state(),
        "elapsed": run.clock.now,
        "warmup_end_elapsed": run.clock.warmup_end,
        "time_limit_reached": run.time_up,
        "precision": run.precision,
        "world_size": run.d.world,
        "torch_version": str(torch.__version__),
    }
