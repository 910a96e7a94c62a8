"""Checkers for notebook 05 (the U-Net decoder): x2 upsampling and the decoder block."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..decoder import DecoderBlock, upsample2x
from ._core import (TOL_TEXT, Wrong, call, check_gradient, checker, close, compare_module,
                    expect_shape, expect_tensor, first_match, max_diff, perturb_defaults_, shape,
                    structure_problem)

_UP_CASES = [(2, 3, 4, 5), (1, 2, 7, 3), (2, 4, 2, 2)]


def _up(x, mode="bilinear", align_corners=True):
    kw = {"align_corners": align_corners} if mode in ("bilinear", "bicubic") else {}
    return F.interpolate(x, scale_factor=2, mode=mode, **kw)


_UP_MISTAKES = [
    ("you upsampled with align_corners=False; the official decoder uses "
     "nn.UpsamplingBilinear2d(scale_factor=2), i.e. align_corners=True",
     dict(align_corners=False)),
    ("you used nearest-neighbour upsampling; the official decoder is bilinear with "
     "align_corners=True", dict(mode="nearest")),
    ("you used bicubic upsampling; the official decoder is bilinear with align_corners=True",
     dict(mode="bicubic")),
    ("you used bicubic upsampling; the official decoder is bilinear with align_corners=True",
     dict(mode="bicubic", align_corners=False)),
]


@checker
def check_upsample(fn: Callable) -> str:
    """Check ``fn(x)``: (B, C, H, W) -> (B, C, 2H, 2W), bilinear with align_corners=True (the
    official decoder's ``nn.UpsamplingBilinear2d``), against ``tutorial_lib.decoder.upsample2x``.

    Detects: wrong shape, align_corners=False, nearest or bicubic modes, and a detached result.
    """
    for s in _UP_CASES:
        x = torch.randn(s, requires_grad=True)
        y = expect_tensor(call(fn, x, what=f"fn(x) with x {shape(x)}"), "the result")
        expect_shape(y, (s[0], s[1], 2 * s[2], 2 * s[3]), f"fn(x) for x {shape(x)}",
                     " = (B, C, 2H, 2W)")
        ref = upsample2x(x)
        if not close(y, ref):
            found = first_match(y, [(m, lambda kw=kw: _up(x, **kw)) for m, kw in _UP_MISTAKES])
            raise Wrong((found or f"values differ from bilinear x2 with align_corners=True: "
                         f"{max_diff(y, ref)}") + f" [x {shape(x)}]")
        check_gradient(y, {"x": x})
    return (f"matches bilinear x2 upsampling with align_corners=True on {len(_UP_CASES)} random "
            f"maps ({TOL_TEXT})")


# --------------------------------------------------------------------------------------------
# The decoder block
# --------------------------------------------------------------------------------------------
_BLOCK_CASES = [(16, 8, 4, 3, 5), (8, 4, 0, 4, 4), (12, 6, 6, 2, 3)]  # cin, cout, cskip, h, w

_BLOCK_LAYOUT = ("The official block upsamples x2 (bilinear, align_corners=True), concatenates "
                 "[upsampled, skip] on the channels, then conv1 = Conv2dReLU(in + skip, out) "
                 "and conv2 = Conv2dReLU(out, out), each a 3x3 conv without bias, BatchNorm2d "
                 "and ReLU")


def _block(x, skip, r: DecoderBlock, up=None, skip_first=False, last_relu=True):
    """The official block written out with switches for typical mistakes (eval-mode BN)."""
    def cbr(seq, t, relu=True):
        t = seq[1](seq[0](t))
        return F.relu(t) if relu else t

    x = (up or upsample2x)(x)
    if skip is not None:
        x = torch.cat([skip, x] if skip_first else [x, skip], dim=1)
    return cbr(r.conv2, cbr(r.conv1, x), relu=last_relu)


def _block_variants(x, skip, r):
    out = [(m, lambda kw=kw: _block(x, skip, r, up=lambda t: _up(t, **kw)))
           for m, kw in _UP_MISTAKES]
    if skip is not None:
        out.append(("you concatenated [skip, upsampled]; the official order is [upsampled, skip] "
                    "(torch.cat([x, skip], dim=1))", lambda: _block(x, skip, r, skip_first=True)))
    out.append(("conv2 must end with a ReLU too (3x3 conv -> BatchNorm -> ReLU)",
                lambda: _block(x, skip, r, last_relu=False)))
    return out


def _run_block_case(cls, cin, cout, cskip, h, w) -> None:
    what = f"cls({cin}, {cout}, {cskip})"
    block = call(cls, cin, cout, cskip, what=what)
    ref = DecoderBlock(cin, cout, cskip, style="cup")
    problem = structure_problem(block, ref)
    if problem:
        if cskip and structure_problem(block, DecoderBlock(cin, cout, cskip, style="blog")) is None:
            raise Wrong(f"{what}: your conv1 takes in_channels and conv2 the skip: that is the "
                        "blog's order (conv, then concatenate). " + _BLOCK_LAYOUT)
        raise Wrong(f"{what}: {problem}. {_BLOCK_LAYOUT}")
    perturb_defaults_(block).eval()
    ref.eval()
    x = torch.randn(2, cin, h, w, requires_grad=True)
    skip = torch.randn(2, cskip, 2 * h, 2 * w, requires_grad=True) if cskip else None
    args = (x,) if skip is None else (x, skip)
    inputs = f"x {shape(x)}" + (f" and skip {shape(skip)}" if skip is not None else "")
    y = expect_tensor(call(block, *args, what=f"{what} on {inputs}"), "the output")
    expect_shape(y, (2, cout, 2 * h, 2 * w), "the output", " = (B, out, 2H, 2W)")
    compare_module(y, block, ref, lambda: ref(x, skip), lambda: _block_variants(x, skip, ref),
                   f"{what} on {inputs}", _BLOCK_LAYOUT)
    grads = {"x": x, **({"skip": skip} if skip is not None else {})}
    check_gradient(y, {**grads, **{f"parameter {k}": p for k, p in block.named_parameters()}})


@checker
def check_decoder_block(cls: Callable) -> str:
    """Check ``cls(in_channels, out_channels, skip_channels)`` with ``forward(x, skip=None)``:
    (B, in, H, W) [+ skip (B, skip, 2H, 2W)] -> (B, out, 2H, 2W), against
    ``tutorial_lib.decoder.DecoderBlock`` (official "cup" order) with the same weights, in
    eval mode with random BatchNorm statistics.

    Detects: missing or extra layers (by shape), the blog's conv-then-concatenate order,
    align_corners=False / nearest / bicubic upsampling, [skip, upsampled] concatenation order,
    a missing final ReLU, and inputs or parameters no gradient reaches.
    """
    for case in _BLOCK_CASES:
        _run_block_case(cls, *case)
    return (f"matches tutorial_lib.decoder.DecoderBlock with the same weights on "
            f"{len(_BLOCK_CASES)} random inputs, with and without a skip ({TOL_TEXT})")
