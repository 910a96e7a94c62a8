"""How big and how expensive is a TransUNet, and where do the parameters and FLOPs sit?

* ``count_parameters_by_part(model)``: learnable parameters per component.
* ``count_flops(model, x)``: FLOPs of one forward pass per component, measured with
  ``torch.utils.flop_counter.FlopCounterMode`` (1 multiply-add = 2 FLOPs).
* ``time_forward(model, x)``: median wall-clock seconds of an inference forward pass.
* ``summarize_config(config)``: tokens, pixels per token, parameters and GFLOPs of a preset,
  counted on the ``meta`` device (shapes only: no memory, no arithmetic).

A *part* is a name and a tuple of module/parameter name prefixes, e.g. ``"cnn": ("cnn",)``.
A prefix matches a name equal to it or starting with it followed by a dot.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .attention import MultiHeadSelfAttention
from .transunet import TransUNet, count_parameters

#: The five components of a TransUNet (attribute names of ``tutorial_lib.transunet.TransUNet``).
#: The position embedding (and the blog variant's class token) belong to the patch embedding.
PARTS: dict[str, tuple[str, ...]] = {
    "cnn": ("cnn",),
    "patch_embed": ("patch_embed", "pos_embed", "cls_token"),
    "transformer": ("transformer",),
    "decoder": ("decoder",),
    "head": ("head",),
}

#: Finer parts of the hybrid R50-ViT models, the rows of the parameter table of docs/reference.md section 4.
RESNETV2_PARTS: dict[str, tuple[str, ...]] = {
    "stem": ("cnn.root",),
    "block1": ("cnn.body.block1",),
    "block2": ("cnn.body.block2",),
    "block3": ("cnn.body.block3",),
    "patch_embed": ("patch_embed",),
    "pos_embed": ("pos_embed",),
    "transformer_blocks": ("transformer.layers",),
    "encoder_norm": ("transformer.norm",),
    "decoder": ("decoder",),
    "head": ("head",),
}


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _part_of(name: str, parts: Mapping[str, Sequence[str]]) -> str | None:
    for part, prefixes in parts.items():
        if any(_matches(name, p) for p in prefixes):
            return part
    return None


def _check_parts(parts: Mapping[str, Sequence[str]]) -> None:
    reserved = {"total", "other"} & set(parts)
    if reserved:
        raise ValueError(f"part names {sorted(reserved)} are reserved for the result's totals")
    for part, prefixes in parts.items():
        if isinstance(prefixes, str):
            raise TypeError(f"part {part!r}: give a tuple of prefixes, e.g. ({prefixes!r},)")


def count_parameters_by_part(
    model: nn.Module, parts: Mapping[str, Sequence[str]] = PARTS
) -> dict[str, int]:
    """Learnable parameters per part, plus ``"total"``.

    Every parameter is counted once, in the first part whose prefix matches its name. Parameters
    no part claims are reported as ``"other"`` (the key is present only when there are some).
    BatchNorm running statistics are buffers and are not counted.
    """
    _check_parts(parts)
    counts = dict.fromkeys(parts, 0)
    other = 0
    for name, p in model.named_parameters():
        part = _part_of(name, parts)
        if part is None:
            other += p.numel()
        else:
            counts[part] += p.numel()
    if other:
        counts["other"] = other
    counts["total"] = count_parameters(model)
    return counts


def attention_modules(model: nn.Module) -> list[MultiHeadSelfAttention]:
    return [m for m in model.modules() if isinstance(m, MultiHeadSelfAttention)]


@contextmanager
def explicit_attention(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily switch every ``MultiHeadSelfAttention`` to the explicit einsum path.

    ``FlopCounterMode`` has no formula for PyTorch's fused CPU attention kernel, so with the
    fused path the QK^T and AV matmuls would not be counted. The previous ``use_fused`` flags are
    restored on exit, even after an error.
    """
    modules = attention_modules(model)
    saved = [m.use_fused for m in modules]
    try:
        for m in modules:
            m.use_fused = False
        yield model
    finally:
        for m, flag in zip(modules, saved):
            m.use_fused = flag


def flops_by_module(model: nn.Module, *inputs: torch.Tensor) -> dict[str, int]:
    """Run ``model(*inputs)`` once (eval mode, no grad) and return FLOPs per module name.

    Names are as in ``model.named_modules()``; ``""`` is the whole model. A module's count
    includes everything run inside it. Attention is counted on the explicit path (see
    :func:`explicit_attention`). Works on the ``meta`` device, where nothing is computed.
    """
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with explicit_attention(model), torch.no_grad(), counter:
            model(*inputs)
    finally:
        model.train(was_training)
    root = type(model).__name__
    out = {}
    for name, ops in counter.get_flop_counts().items():
        if name == "Global":
            continue
        if name == root:
            key = ""
        elif name.startswith(root + "."):
            key = name[len(root) + 1:]
        else:  # pragma: no cover - FlopCounterMode always names modules below the root
            continue
        out[key] = int(sum(ops.values()))
    out[""] = int(counter.get_total_flops())
    return out


def count_flops(
    model: nn.Module,
    *inputs: torch.Tensor,
    by_part: bool = True,
    parts: Mapping[str, Sequence[str]] = PARTS,
) -> dict[str, int] | int:
    """FLOPs of one inference forward pass (1 multiply-add = 2 FLOPs; MACs = FLOPs / 2).

    ``by_part=False`` returns the total. Otherwise a dict with one entry per part, ``"total"``,
    and ``"other"`` when some FLOPs happen outside every part. A prefix may name a module
    (``"cnn"``) or a container that is never called itself (``"cnn.stages"``, a ModuleList): then
    the modules called inside it are added up.

    Counted: convolutions and matrix products (nn.Linear, einsum, matmul), which is what
    "FLOPs" of a network usually means; norms, activations, additions and interpolation are not.
    """
    counts = flops_by_module(model, *inputs)
    total = counts[""]
    if not by_part:
        return total
    _check_parts(parts)
    result = dict.fromkeys(parts, 0)
    for part, prefixes in parts.items():
        for prefix in prefixes:
            matched = [n for n in counts if n and _matches(n, prefix)]
            matched_set = set(matched)
            for name in matched:
                # count only the outermost called modules below the prefix
                parents = [name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)]
                if not any(p in matched_set for p in parents):
                    result[part] += counts[name]
    other = total - sum(result.values())
    if other:
        result["other"] = other
    result["total"] = total
    return result


@torch.no_grad()
def time_forward(
    model: nn.Module, x: torch.Tensor, repeats: int = 3, warmup: int = 1
) -> float:
    """Median wall-clock seconds of ``model(x)`` in eval mode without gradients.

    ``warmup`` untimed runs come first (they allocate memory and pick kernels). The model's
    training flag is restored afterwards. On a GPU the device is synchronised around each run.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    was_training = model.training
    model.eval()
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    try:
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            model(x)
            sync()
            times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return statistics.median(times)


def summarize_config(config, img_size: int | tuple[int, int] | None = None) -> dict:
    """Size and cost of a TransUNet config (optionally at another ``img_size``), batch 1.

    The model is built on the ``meta`` device, so this takes about a second even for the
    largest presets. Returns ``name``, ``img_size`` (H, W), ``grid`` (h, w), ``tokens``,
    ``token_px`` (pixels per token side), ``px_per_token``, ``params``, ``gflops`` and
    ``flops`` (a per-part dict, see :func:`count_flops`).
    """
    if img_size is not None:
        config = config.replace(img_size=img_size)
    with torch.device("meta"):
        model = TransUNet(config)
        x = torch.empty(1, config.in_channels, *config.img_size)
    flops = count_flops(model, x)
    s = config.token_stride
    return {
        "name": config.name,
        "img_size": config.img_size,
        "grid": config.grid,
        "tokens": config.grid[0] * config.grid[1],
        "token_px": s,
        "px_per_token": s * s,
        "params": count_parameters(model),
        "gflops": flops["total"] / 1e9,
        "flops": flops,
    }
