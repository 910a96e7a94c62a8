"""The training loop, as the recipe reads: set up; then for every epoch train its steps,
validate, record, checkpoint. (What a run holds and how it resumes: ``state.py``.)

What a run writes to ``cfg.out``: ``metrics.jsonl`` (one JSON object per epoch), ``last.pt``
(after every epoch) and ``best.pt`` (best validation mIoU), both written atomically
(``tutorial_lib.checkpoint``). Only rank 0 writes; every process trains its share.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..checkpoint import CheckpointSaveError, atomic_save
from ..constants import IGNORE_INDEX
from ..evaluate import evaluate_model, json_float, metrics_report
from ..losses import SegmentationLoss
from ..pretrained import load_official_npz
from ..runtime import autocast_context, grad_scaler, move_batch, prepare_model, resolve_precision
from ..transunet import TransUNet, TransUNetConfig
from . import loaders
from .config import TrainConfig
from .distributed import Dist, all_sum, barrier, init_distributed, shutdown, wrap_model
from .optim import RunClock, build_optimizer, build_scheduler
from .state import Run, checkpoint_state, check_output, resume


class TrainingDivergedError(RuntimeError):
    """The loss became nan or inf; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    """What ``train`` returns. ``model`` is the trained model (weights of the last epoch, eval
    mode, on the training device); ``history`` the per-epoch records also in metrics.jsonl."""

    model: nn.Module
    history: list[dict]
    out_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    best_miou: float | None
    best_epoch: int | None
    seconds: float


# --------------------------------------------------------------------------------------
# the recipe


def train(cfg: TrainConfig, callback: Callable[[dict], None] | None = None) -> TrainResult:
    """Train (or resume) a run described by ``cfg``; see ``tutorial_lib.train``.

    ``callback(event)`` is called (on rank 0 only) with a dict:

    * after every optimiser step: ``{"event": "step", "epoch", "step" (1-based, in the
      epoch), "steps_per_epoch", "global_step", "loss", "ce", "dice", "lr", "elapsed"
      (training-clock seconds: set-up, data caching and validation not counted), "model"
      (the model being trained, not a copy: clone its ``state_dict`` to keep one),
      "precision"}``;
    * after every epoch: ``{"event": "epoch", ...}`` with the record also appended to
      metrics.jsonl (``epoch``, ``train_loss``, ``train_ce``, ``train_dice``, ``val_miou``,
      ``val_per_class_iou`` (name -> IoU), ``val_pixel_accuracy``, ``val_mean_dice``, ``lr``,
      ``img_per_s``, ``seconds``, ...).

    Raises ``TrainingDivergedError`` when the loss becomes nan/inf (``OUT/last.pt`` keeps
    the last good epoch), ``CheckpointSaveError`` when a checkpoint cannot be written (the
    previous one is kept), ``NotADirectoryError`` when ``cfg.out`` lies under a regular file.
    """
    d, device = init_distributed(cfg.device)
    try:
        return _train(cfg, callback, d, device)
    finally:
        shutdown(d)


def _train(cfg: TrainConfig, callback, d: Dist, device: torch.device) -> TrainResult:
    start = time.perf_counter()
    run = _set_up(cfg, d, device)
    run.clock.start_session()
    for epoch in range(run.start_epoch, cfg.epochs + 1):
        stats = _train_epoch(run, epoch, callback)
        with run.clock.paused():  # the time budget is training time
            val_report, val_seconds = _validate(run, epoch)
            record = _record(run, epoch, stats, val_report, val_seconds)
            if d.main:
                _save(run, epoch, record, val_report)
                _announce(run, record, callback)
        if run.time_up:
            break
    barrier(d)
    run.model.eval()
    files = run.files
    return TrainResult(
        model=run.model, history=run.history, out_dir=files.out, last_checkpoint=files.last,
        best_checkpoint=files.best if files.best.is_file() else None, best_miou=run.best_miou,
        best_epoch=run.best_epoch, seconds=time.perf_counter() - start,
    )


def _set_up(cfg: TrainConfig, d: Dist, device: torch.device) -> Run:
    """Model, data, loss, optimiser and schedule of ``cfg``; resumed from ``last.pt`` with ``cfg.resume``.

    Nothing is written before the output folder, the model (and ``--pretrained``) and the data
    check have passed."""
    files = check_output(cfg)
    precision = resolve_precision(cfg.precision, device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    show = cfg.progress and d.main
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    table = cfg.class_table()
    model_cfg = cfg.model_config()
    model = _build_model(cfg, model_cfg, device, show)
    loaders.check_data(cfg, d, device, show)
    size = model_cfg.img_size
    data = loaders.train_data(cfg, size, d, show)
    val_loader = loaders.val_loader(cfg, size, d, device, show)
    weights = loaders.class_weights(cfg, data.dataset, table)
    criterion = SegmentationLoss(cfg.dice_weight, weights, IGNORE_INDEX, ohem_threshold=cfg.ohem).to(device)
    optimizer = build_optimizer(model, cfg)
    clock = RunClock(limit=cfg.time_limit)
    scheduler = build_scheduler(optimizer, cfg, data.steps_per_epoch, clock)
    run = Run(cfg, d, device, files, precision, model, model_cfg, data, val_loader, criterion, optimizer,
              scheduler, grad_scaler(device, precision), clock, class_names=list(table.names))
    if cfg.resume:
        resume(run)
    elif d.main:
        files.out.mkdir(parents=True, exist_ok=True)
        files.metrics.write_text("")
        for stale in (files.best, files.last):
            stale.unlink(missing_ok=True)
    run.net = wrap_model(model, d, device)
    if show:
        tqdm.write(
            f"training {model_cfg.name} at {size[0]}x{size[1]} on {device} ({precision}), {d.world} process(es), "
            f"{len(data.dataset)} train images, {table.num_classes} classes, {data.steps_per_epoch} steps/epoch, "
            f"epochs {run.start_epoch}..{cfg.epochs}"
        )
    return run


def _build_model(cfg: TrainConfig, model_cfg: TransUNetConfig, device: torch.device, show: bool) -> nn.Module:
    """The model of ``model_cfg`` (seeded init), its CNN and transformer loaded from
    ``cfg.pretrained`` (Google's ImageNet-21k npz) when given and not resuming, on ``device``."""
    model = TransUNet(model_cfg)
    if cfg.pretrained is not None and not cfg.resume:
        load_official_npz(model, Path(cfg.pretrained).expanduser())
        if show:
            tqdm.write(f"fine-tuning from {cfg.pretrained} (CNN and transformer; decoder and head from scratch)")
    return prepare_model(model, device, cfg.channels_last)


# --------------------------------------------------------------------------------------
# an epoch: steps, validation, record, checkpoint


@dataclass
class _EpochStats:
    started: float            # time.perf_counter() at the start of the epoch
    seconds: float            # training time (without validation)
    sums: torch.Tensor        # loss, ce, dice (each x images), images; summed over processes
    steps: int                # steps done (fewer than steps_per_epoch when the time ran out)


def _train_epoch(run: Run, epoch: int, callback) -> _EpochStats:
    """One pass over this process's share of the training data (or until the time is up)."""
    started = time.perf_counter()
    run.net.train()
    sums = torch.zeros(4, dtype=torch.float64)
    steps_per_epoch = run.data.steps_per_epoch
    bar = tqdm(run.data.loader(epoch, run.cfg, run.device), desc=f"epoch {epoch}/{run.cfg.epochs}",
               disable=not run.show, leave=False, dynamic_ncols=True, mininterval=1.0)
    step = 0
    for step, (images, labels) in enumerate(bar, start=1):
        values = _step(run, images, labels, epoch, step)
        n = images.shape[0]
        sums += torch.tensor([values["loss"] * n, values["ce"] * n, values["dice"] * n, n], dtype=torch.float64)
        if run.show:
            bar.set_postfix(loss=f"{values['loss']:.3f}", lr=f"{values['lr']:.2e}", refresh=False)
        if callback is not None and run.d.main:
            callback({"event": "step", "epoch": epoch, "step": step, "steps_per_epoch": steps_per_epoch,
                      "global_step": run.global_step, **values, "elapsed": run.clock.read(), "model": run.model,
                      "precision": run.precision})
        if run.clock.up:
            run.time_up = True
            break
    bar.close()
    seconds = time.perf_counter() - started
    return _EpochStats(started, seconds, all_sum(sums, run.d, run.device), step)


def _step(run: Run, images: torch.Tensor, labels: torch.Tensor, epoch: int, step: int) -> dict:
    """Forward, loss, (finite?) backward, clip, optimiser and schedule step -> logged values."""
    images, labels = move_batch(images, labels, run.device, run.cfg.channels_last)
    with autocast_context(run.device, run.precision):
        logits = run.net(images)
    loss, parts = run.criterion(logits, labels, return_parts=True)
    _sync_and_check_finite(run, loss, epoch, step)

    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if run.cfg.grad_clip:
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    lr = run.scheduler.get_last_lr()[0]
    run.scheduler.step()
    run.global_step += 1
    return {"loss": loss.item(), "ce": parts["ce"].item(), "dice": parts["dice"].item(), "lr": lr}


def _sync_and_check_finite(run: Run, loss: torch.Tensor, epoch: int, step: int) -> None:
    """One all-reduce per step: "is every process's loss finite?" and rank 0's clock."""
    finite = float(torch.isfinite(loss.detach()).item())
    sync = all_sum(torch.tensor([finite, run.clock.read() if run.d.main else 0.0], dtype=torch.float64),
                   run.d, run.device)
    run.clock.now = sync[1].item()
    if sync[0].item() < run.d.world:
        last = run.files.last
        raise TrainingDivergedError(
            f"The loss became non-finite ({loss.item()} on this process) at epoch {epoch}, "
            f"step {step}/{run.data.steps_per_epoch} "
            f"(global step {run.global_step + 1}, lr {run.scheduler.get_last_lr()[0]:.3g}, precision "
            f"{run.precision}). Training stopped; the last good checkpoint is "
            f"{last if last.is_file() else '(none: no epoch finished)'}. Try a lower "
            "--lr (e.g. half), --precision fp32, or a smaller --grad-clip; then --resume or start over."
        )


def _validate(run: Run, epoch: int) -> tuple[dict | None, float]:
    """Validation metrics (summed over processes) when this epoch validates -> (report or None, seconds)."""
    cfg = run.cfg
    if run.val_loader is None or not (epoch % cfg.val_every == 0 or epoch == cfg.epochs or run.time_up):
        return None, 0.0
    started = time.perf_counter()
    metrics = evaluate_model(run.model, run.val_loader, run.model_cfg.num_classes, run.device, run.precision,
                             progress=run.show, desc=f"val {epoch}", channels_last=cfg.channels_last,
                             mode=cfg.eval_mode, flip=cfg.eval_flip)
    metrics.cm = all_sum(metrics.cm, run.d, run.device)
    report = metrics_report(metrics, run.class_names)
    if report["miou"] is not None and (run.best_miou is None or report["miou"] > run.best_miou):
        run.best_miou, run.best_epoch = report["miou"], epoch
    return report, time.perf_counter() - started


def _record(run: Run, epoch: int, stats: _EpochStats, val: dict | None, val_seconds: float) -> dict:
    """The epoch's line of metrics.jsonl (also appended to ``run.history``)."""
    sums = stats.sums
    images = max(sums[3].item(), 1.0)
    record = {
        "epoch": epoch,
        "global_step": run.global_step,
        "train_loss": json_float(sums[0].item() / images),
        "train_ce": json_float(sums[1].item() / images),
        "train_dice": json_float(sums[2].item() / images),
        "val_miou": val["miou"] if val else None,
        "val_per_class_iou": val["per_class_iou"] if val else None,
        "val_pixel_accuracy": val["pixel_accuracy"] if val else None,
        "val_mean_dice": val["mean_dice"] if val else None,
        "lr": json_float(run.scheduler.get_last_lr()[0]),
        "img_per_s": round(sums[3].item() / stats.seconds, 3),
        "train_seconds": round(stats.seconds, 2),
        "val_seconds": round(val_seconds, 2),
        "seconds": round(time.perf_counter() - stats.started, 2),
        "best_miou": run.best_miou,
        "best_epoch": run.best_epoch,
        "elapsed": round(run.clock.now, 2),
    }
    if run.time_up:
        record["time_limit_reached"] = True
        record["steps_in_epoch"] = stats.steps
    run.history.append(record)
    return record


def _save(run: Run, epoch: int, record: dict, val: dict | None) -> None:
    """``last.pt`` (and ``best.pt`` when this epoch is the best), then the metrics.jsonl line."""
    state = checkpoint_state(run, epoch, record, val)
    try:
        atomic_save(state, run.files.last)
        if val is not None and run.best_epoch == epoch:
            atomic_save(state, run.files.best)
    except CheckpointSaveError as err:
        error = CheckpointSaveError(f"{err} Training stopped at epoch {epoch}; once the checkpoint can be "
                                    f"written, continue with --resume --out {run.files.out}.")
        error.errno = err.errno
        raise error from err
    with open(run.files.metrics, "a") as f:
        f.write(json.dumps(record) + "\n")


def _announce(run: Run, record: dict, callback) -> None:
    """The epoch's summary line (with progress on) and the ``"epoch"`` event."""
    cfg = run.cfg
    if cfg.progress:
        miou = "" if record["val_miou"] is None else f"  val mIoU {100 * record['val_miou']:.2f}%"
        tqdm.write(f"epoch {record['epoch']}/{cfg.epochs}  loss {record['train_loss']:.4f}{miou}  "
                   f"lr {record['lr']:.2e}  {record['img_per_s']:.2f} img/s  {record['seconds']:.0f} s")
        if run.time_up:
            tqdm.write(f"time limit of {cfg.time_limit:.0f} s reached after {run.global_step} steps (epoch "
                       f"{record['epoch']}, step {record['steps_in_epoch']}/{run.data.steps_per_epoch})")
    if callback is not None:
        callback({"event": "epoch", **record})
