"""tutorial_lib.train.optim: the learning-rate schedule, the optimiser's parameter groups, the time budget."""

import pytest
import torch
from torch import nn

from tutorial_lib.train import TrainConfig, lr_factor
from tutorial_lib.train.optim import RunClock, build_optimizer, build_scheduler


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


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.LayerNorm(4)
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, 4))


def test_adamw_leaves_biases_norms_and_position_embeddings_undecayed():
    model = Tiny()
    opt = build_optimizer(model, TrainConfig())
    assert isinstance(opt, torch.optim.AdamW)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert [p is model.conv.weight for p in decay["params"]] == [True]
    assert {id(p) for p in no_decay["params"]} == {id(model.conv.bias), id(model.norm.weight), id(model.norm.bias),
                                                   id(model.pos_embed)}
    sgd = build_optimizer(model, TrainConfig(optimizer="sgd"))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["weight_decay"] == 1e-4
    assert sgd.param_groups[0]["lr"] == 0.01 and sgd.param_groups[0]["momentum"] == 0.9


def test_scheduler_warms_up_then_decays_to_zero():
    model = Tiny()
    cfg = TrainConfig(epochs=2, warmup_epochs=0.5)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch=4, clock=RunClock())
    lrs = []
    for _ in range(8):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[:2] == pytest.approx([0.5e-3, 1e-3])  # 2 warmup steps
    assert lrs[2:] == pytest.approx([1e-3 * (1 - t / 6) ** 0.9 for t in range(6)])
    assert sched.get_last_lr()[0] == pytest.approx(0.0)


def test_run_clock_progress_starts_after_the_warmup():
    clock = RunClock(limit=100.0)
    assert clock.progress(0, warmup_steps=2) is None and not clock.up
    clock.now = 20.0
    assert clock.progress(2, warmup_steps=2) == 0.0  # the budget's schedule starts here
    clock.now = 60.0
    assert clock.progress(3, warmup_steps=2) == pytest.approx(0.5)
    clock.now = 100.0
    assert clock.up
    assert RunClock().progress(5, 0) is None  # no budget
