"""Optimiser and learning-rate schedule (and the time budget the schedule can follow).

AdamW (lr 1e-3, betas 0.9/0.999, weight decay 0.01, none on biases, norm weights and
position embeddings) or the official recipe's SGD (lr 0.01, momentum 0.9, weight decay 1e-4
on every parameter); linear warmup, then poly(0.9), cosine or constant. With a time budget
the decay follows the fraction of the budget used, or of the steps, whichever is further, so
a run that the clock stops still ends with an annealed learning rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from .config import TrainConfig


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str, power: float = 0.9,
              progress: float | None = None) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based).

    Linear warmup from 1/warmup_steps to 1, then "poly" ``(1 - t)^power``, "cosine"
    ``(1 + cos(pi t)) / 2`` or "constant", with t the fraction of post-warmup steps done,
    or ``progress`` (e.g. the fraction of a time budget used) when that is larger.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    t = min(1.0, max(t, progress or 0.0))
    if schedule == "poly":
        return (1.0 - t) ** power
    return 0.5 * (1.0 + math.cos(math.pi * t))


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW without decay on 1-d parameters and position embeddings, or plain SGD."""
    lr, wd = cfg.base_lr, cfg.base_weight_decay
    if cfg.optimizer == "sgd":  # official recipe: decay on every parameter
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=wd)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or "pos_embed" in name or "cls_token" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))


@dataclass
class RunClock:
    """Seconds of training so far, across resumes (rank 0's value on every rank).

    ``base``: the elapsed time stored in the checkpoint this session resumed from;
    ``now``: the latest reading (set by the engine each step); ``warmup_end``: ``now`` when
    the warmup ended (the time budget's schedule starts there).
    """

    limit: float | None = None
    now: float = 0.0
    base: float = 0.0
    warmup_end: float | None = None
    started: float = field(default_factory=time.perf_counter)

    def start_session(self) -> None:
        """Start this session's stopwatch (just before the first epoch)."""
        self.started = time.perf_counter()

    def read(self) -> float:
        """This process's reading: ``base`` + seconds since this session started (pauses excluded)."""
        return self.base + time.perf_counter() - self.started

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The time spent inside does not count as training (validation, checkpoint writing)."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.started += time.perf_counter() - began

    @property
    def up(self) -> bool:
        return self.limit is not None and self.now >= self.limit

    def progress(self, step: int, warmup_steps: int) -> float | None:
        """Post-warmup fraction of the time budget used (None without a budget)."""
        if self.limit is None or step < warmup_steps:
            return None
        if self.warmup_end is None:
            self.warmup_end = self.now
        return (self.now - self.warmup_end) / max(self.limit - self.warmup_end, 1e-9)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int,
                    clock: RunClock) -> torch.optim.lr_scheduler.LambdaLR:
    """Warmup + decay over ``cfg.epochs * steps_per_epoch`` steps (or ``clock``'s budget)."""
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, total_steps, warmup_steps, cfg.schedule, cfg.poly_power,
                               clock.progress(step, warmup_steps)),
    )
