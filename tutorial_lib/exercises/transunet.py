"""Checkers for notebook 06: a whole TransUNet assembled by the learner."""

from __future__ import annotations

import copy
import inspect

import torch
from torch import nn

from ..transunet import TransUNet, TransUNetConfig
from ._core import (TOL_TEXT, Wrong, call, checker, close, copy_assignments, expect_shape,
                    expect_tensor, max_diff, perturb_defaults_, train_mode_without_dropout_, shape,
                    structure_problem)


def _config_of(model: nn.Module, config: TransUNetConfig | None) -> TransUNetConfig:
    config = config or getattr(model, "config", None)
    if not isinstance(config, TransUNetConfig):
        raise Wrong("pass the TransUNetConfig your model was built with, e.g. "
                    "check_transunet(model, cfg)")
    return config


def _takes_return_attention(model: nn.Module) -> bool:
    try:
        return "return_attention" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _forward(model: nn.Module, x: torch.Tensor, attention: bool, what: str):
    """(logits, attention list or None) from the learner's model."""
    out = call(lambda: model(x, return_attention=True) if attention else model(x), what=what)
    if attention:
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise Wrong("model(x, return_attention=True) should return (logits, attention)")
        return expect_tensor(out[0], "the logits"), list(out[1])
    return expect_tensor(out, "model(x)"), None


def _check_structure(model: nn.Module, config: TransUNetConfig) -> TransUNet:
    with torch.device("meta"):
        ref = TransUNet(config)
    problem = structure_problem(model, ref, "your model")
    if problem:
        raise Wrong(f"{problem} (compared with tutorial_lib.transunet.TransUNet for "
                    f"{config.name!r}; names may differ, shapes may not)")
    return ref


@checker
def check_transunet_shapes(model: nn.Module, config: TransUNetConfig | None = None) -> str:
    """Check that ``model`` (any device, ``meta`` included) has tensors of exactly the shapes
    of ``tutorial_lib.transunet.TransUNet(config)`` and maps (1, C, H, W) at
    ``config.img_size`` to logits (1, num_classes, H, W); when its forward takes
    ``return_attention``, also one (1, heads, N, N) map per layer. ``config`` defaults to
    ``model.config``. Detects missing or extra layers (named after the reference's tensors)
    and wrong output or attention shapes.
    """
    config = _config_of(model, config)
    ref = _check_structure(model, config)
    n_params = sum(p.numel() for p in ref.parameters())
    device = next(model.parameters()).device
    x = torch.randn(1, config.in_channels, *config.img_size, device=device)
    attention = _takes_return_attention(model)
    was_training = model.training
    try:
        with torch.no_grad():
            logits, maps = _forward(model.eval(), x, attention, f"your model on x {shape(x)}")
    finally:
        model.train(was_training)
    expect_shape(logits, (1, config.num_classes, *config.img_size), "the logits")
    verdict = (f"{n_params:,} parameters in tensors of the shapes of TransUNet "
               f"({config.name!r}); logits {shape(logits)}")
    if attention and config.use_transformer:
        n = config.grid[0] * config.grid[1] + int(config.class_token)
        if len(maps) != config.num_layers:
            raise Wrong(f"return_attention gave {len(maps)} maps, expected one per layer "
                        f"({config.num_layers})")
        for i, a in enumerate(maps):
            expect_shape(a, (1, config.num_heads, n, n), f"attention map {i}",
                         " = (B, heads, N, N)")
        verdict += f"; {len(maps)} attention maps of shape {shape(maps[0])}"
    return verdict


def _flat(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return []


def _locate(mine: nn.Module, ref: TransUNet, x, attention: bool) -> str:
    """Where the learner's model first departs from the reference."""
    saved = ref.pos_embed.detach().clone() if ref.pos_embed is not None else None
    if saved is not None:
        with torch.no_grad():
            ref.pos_embed.zero_()
            no_pos = ref(x)
            ref.pos_embed.copy_(saved)
        if close(mine(x), no_pos):
            return "your model does not add the position embeddings to the patch tokens"
    if isinstance(getattr(mine, "cnn", None), nn.Module):
        ours, theirs = _flat(call(mine.cnn, x, what="model.cnn(x)")), _flat(ref.cnn(x))
        if len(ours) != len(theirs) or not all(map(close, ours, theirs)):
            return "the CNN part (model.cnn) gives different outputs or skips"
    if attention:
        _, maps = mine(x, return_attention=True)
        _, ref_maps = ref(x, return_attention=True)
        for i, (a, b) in enumerate(zip(maps, ref_maps)):
            if not close(a, b):
                return (f"the attention weights of transformer layer {i} differ: check the patch "
                        "embedding, the position embeddings and the layers up to that one")
        return ("every attention map agrees, so the encoder matches up to the last layer: check "
                "the final LayerNorm, the reshape to (B, D, h, w) ('b (h w) d -> b d h w'), the "
                "decoder's skips (deepest first, n_skip of them) and the head")
    return "the logits differ"


@checker
def check_transunet(model: nn.Module, config: TransUNetConfig | None = None) -> str:
    """Check a learner's TransUNet against ``tutorial_lib.transunet.TransUNet(config)`` with
    the same weights (copied by shape and order into the reference; the learner's model is
    left untouched: a copy with random biases, norm scales and position embeddings is
    compared), with dropout off and BatchNorm on the batch's statistics (as in training, so
    the signal does not fade through random weights), on 2 random images of
    ``config.img_size``.

    Use a small config (e.g. ``get_config("tiny")``): two forward passes run on the CPU.
    Detects: structure (as :func:`check_transunet_shapes`), position embeddings not added, a
    CNN that differs, the first transformer layer whose attention differs (when forward takes
    ``return_attention``), and otherwise points at the reshape, decoder and head.
    """
    config = _config_of(model, config)
    _check_structure(model, config)
    mine = train_mode_without_dropout_(perturb_defaults_(copy.deepcopy(model).float().cpu()))
    ref = train_mode_without_dropout_(TransUNet(config))
    next(copy_assignments(mine, ref, limit=1))
    x = torch.randn(2, config.in_channels, *config.img_size)
    attention = _takes_return_attention(mine) and config.use_transformer
    with torch.no_grad():
        y, _ = _forward(mine, x, False, f"your model on x {shape(x)}")
        expect_shape(y, (2, config.num_classes, *config.img_size), "the logits")
        ref_y = ref(x)
        if not close(y, ref_y):
            raise Wrong(f"{_locate(mine, ref, x, attention)} ({max_diff(y, ref_y)} in the "
                        "logits)")
    return (f"logits match tutorial_lib.transunet.TransUNet ({config.name!r}) with the same "
            f"weights on 2 random images ({TOL_TEXT})")
