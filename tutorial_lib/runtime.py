"""Where and how a model runs: device, numeric precision, memory layout.

One policy for training, evaluation and the benchmarks:

* device: the one asked for, else CUDA when available, else the CPU (``pick_device``);
* precision: ``"auto"`` becomes bf16 autocast where the device computes bf16 natively (a GPU
  with bf16; a CPU with ``avx512_bf16`` or ``amx_bf16``), fp16 + GradScaler on an older GPU,
  else fp32 (``resolve_precision``). On a CPU without those instructions PyTorch emulates bf16
  and autocast is slower than fp32;
* layout: ``channels_last`` (NHWC) model and batches by default: oneDNN's and cuDNN's
  convolutions work on NHWC directly (about 1.1x faster on the CPU too).
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: x86 flags of native bf16 arithmetic (AVX512-BF16 on Zen 4 / Cooper Lake, AMX on Sapphire Rapids).
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (x86 ``flags``, Arm ``Features``) from the text of /proc/cpuinfo
    (read when None; an empty set when it cannot be read)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def cpu_supports_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU computes bf16 natively (x86 flags ``avx512_bf16`` or ``amx_bf16``).

    ``cpuinfo`` is the text of /proc/cpuinfo (read when None; False when it cannot be read).
    Without these instructions PyTorch emulates bf16 matmuls and autocast is slower than fp32.
    """
    return bool(cpu_flags(cpuinfo) & CPU_BF16_FLAGS)


def native_bf16(device: str | torch.device, cpuinfo: str | None = None) -> bool:
    """Does ``device`` compute bf16 natively (so that bf16 autocast is a speed-up)?"""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_supports_bf16(cpuinfo)
    return False


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device``, or CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_precision(precision: str, device: str | torch.device, cpuinfo: str | None = None) -> str:
    """"auto" -> "bf16" / "fp16" / "fp32" for ``device``; explicit values pass through (with a
    warning for bf16 on a CPU that would emulate it)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if native_bf16(device) else "fp16"
        return "bf16" if native_bf16(device, cpuinfo) else "fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_supports_bf16(cpuinfo):
        warnings.warn("bf16 on a CPU without avx512_bf16/amx_bf16 is emulated: expect it to be slower than fp32",
                      stacklevel=2)
    return precision


def autocast_context(device: str | torch.device, precision: str):
    """``torch.autocast`` for "bf16"/"fp16", a no-op context for "fp32"."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=AUTOCAST_DTYPES[precision])


def grad_scaler(device: str | torch.device, precision: str) -> torch.amp.GradScaler:
    """The loss scaler that fp16 training needs (a pass-through for bf16 and fp32)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


def prepare_model(model: nn.Module, device: str | torch.device, channels_last: bool = True) -> nn.Module:
    """The model on ``device`` in the chosen memory layout (NHWC with ``channels_last``)."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def move_images(images: torch.Tensor, device: str | torch.device, channels_last: bool = True) -> torch.Tensor:
    """Images (B, 3, H, W) on ``device``, as NHWC with ``channels_last``."""
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def move_batch(
    images: torch.Tensor, labels: torch.Tensor, device: torch.device, channels_last: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch on ``device``: images (B, 3, H, W) as NHWC with ``channels_last``, labels (B, H, W)."""
    return move_images(images, device, channels_last), labels.to(device, non_blocking=True)
