"""Checkers for notebook 04 (ResNet stages): weight standardisation and the hybrid's unit."""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from ..resnet import BitBottleneck, StdConv2d
from torch import nn

from ._core import (TOL_TEXT, Wrong, call, check_gradient, checker, close, compare_module,
                    expect_shape, expect_tensor, first_match, max_diff, perturb_defaults_, shape,
                    shape_diff, structure_problem)

# cin, cout, kernel, stride, padding
_CONV_CASES = [(3, 8, 3, 1, 1), (16, 4, 1, 1, 0), (8, 8, 3, 2, 1), (4, 6, 7, 2, 3), (5, 3, 3, 1, 1)]


def _raw_weight(cout: int, cin: int, k: int) -> torch.Tensor:
    """Filters with different means and scales; filter 0 has a variance near eps = 1e-5."""
    w = torch.randn(cout, cin, k, k) * (0.5 + torch.rand(cout, 1, 1, 1))
    w = w + torch.randn(cout, 1, 1, 1)
    w[0] = 3e-3 * torch.randn(cin, k, k)
    return w


def _std(w, dims=(1, 2, 3), unbiased=False, eps=1e-5, eps_outside=False, divide=True, center=True):
    var, mean = torch.var_mean(w, dim=list(dims), keepdim=True, unbiased=unbiased)
    w = w - mean if center else w
    if not divide:
        return w
    return w / (var.sqrt() + eps) if eps_outside else w / torch.sqrt(var + eps)


def _std_variants(x, w, stride, padding):
    conv = lambda weight: F.conv2d(x, weight, None, stride, padding)  # noqa: E731
    out = [
        ("your output equals a plain Conv2d: standardise the weight inside forward, "
         "(w - mean) / sqrt(var + 1e-5) per output filter", lambda: conv(w)),
        ("you used the unbiased variance (divides by n - 1); weight standardisation uses the "
         "biased one: torch.var_mean(w, dim=[1, 2, 3], keepdim=True, unbiased=False)",
         lambda: conv(_std(w, unbiased=True))),
        ("put eps inside the square root: sqrt(var + 1e-5), not std + eps",
         lambda: conv(_std(w, eps_outside=True))),
        ("you standardised the whole weight tensor at once; standardise each output filter "
         "over (in, kh, kw): dim=[1, 2, 3], keepdim=True", lambda: conv(_std(w, (0, 1, 2, 3)))),
        ("you standardised over the output filters (dim=0); standardise each output filter "
         "over (in, kh, kw): dim=[1, 2, 3]", lambda: conv(_std(w, (0, 2, 3)))),
        ("you standardised over (kh, kw) only; standardise each output filter over "
         "(in, kh, kw): dim=[1, 2, 3]", lambda: conv(_std(w, (2, 3)))),
        ("you subtract the mean but never divide by sqrt(var + 1e-5)",
         lambda: conv(_std(w, divide=False))),
        ("you divide by sqrt(var + 1e-5) but never subtract the mean",
         lambda: conv(_std(w, center=False))),
    ]
    for eps in (0.0, 1e-10, 1e-8, 1e-6, 1e-4, 1e-3):
        text = f"1e{round(math.log10(eps))}" if eps else "0"
        out.append((f"your eps is not 1e-5 (it behaves like {text}); the hybrid ResNet "
                    "uses sqrt(var + 1e-5)", lambda e=eps: conv(_std(w, eps=e))))
    return out


@checker
def check_std_conv(cls: Callable) -> str:
    """Check ``cls(cin, cout, kernel_size, stride=..., padding=..., bias=False)``, a Conv2d with
    weight standardisation, against ``tutorial_lib.resnet.StdConv2d`` with the same weight.

    Detects: no standardisation (plain conv, or standardising only once in __init__), unbiased
    variance, eps other than 1e-5 or outside the square root, statistics over the wrong axes
    (whole tensor, dim=0, (kh, kw) only), a missing mean subtraction or division, and a
    standardisation that no gradient flows through.
    """
    for cin, cout, k, stride, padding in _CONV_CASES:
        what = f"cls({cin}, {cout}, {k}, stride={stride}, padding={padding}, bias=False)"
        conv = call(lambda: cls(cin, cout, k, stride=stride, padding=padding, bias=False),
                    what=what)
        if not isinstance(getattr(conv, "weight", None), torch.Tensor):
            raise Wrong(f"{what} has no .weight tensor; subclass nn.Conv2d so the raw weight "
                        "lives in .weight (cout, cin, k, k)")
        expect_shape(conv.weight, (cout, cin, k, k), f"{what}.weight")
        ref = StdConv2d(cin, cout, k, stride=stride, padding=padding, bias=False)
        with torch.no_grad():
            conv.weight.copy_(_raw_weight(cout, cin, k))
            ref.weight.copy_(conv.weight)
        x = torch.randn(2, cin, 9, 10)
        y = expect_tensor(call(conv, x, what=f"{what} on x {shape(x)}"), "the output")
        ref_y = ref(x)
        expect_shape(y, ref_y.shape, "the output")
        if not close(y, ref_y):
            with torch.no_grad():
                found = first_match(y, _std_variants(x, ref.weight, stride, padding))
            raise Wrong((found or f"the output differs from StdConv2d's: {max_diff(y, ref_y)}")
                        + f" [{what}]")
        check_gradient(y, {"the weight": conv.weight}, {"__out__": ref_y, "w": ref.weight})
    return (f"matches tutorial_lib.resnet.StdConv2d with the same weights on "
            f"{len(_CONV_CASES)} random inputs, gradients included ({TOL_TEXT})")


# --------------------------------------------------------------------------------------------
# The hybrid's bottleneck unit
# --------------------------------------------------------------------------------------------
_UNIT_CASES = [(96, 256, 64, 2, 9), (256, 256, 64, 1, 8), (64, 256, 64, 1, 7)]  # + input size

_UNIT_LAYOUT = ("The official unit is conv1 (1x1, cin->cmid) -> gn1 -> ReLU -> conv2 (3x3, "
                "stride) -> gn2 -> ReLU -> conv3 (1x1, cmid->cout) -> gn3, plus the shortcut "
                "(when stride != 1 or cin != cout: downsample 1x1 StdConv2d with the stride -> "
                "gn_proj = GroupNorm(cout, cout)), then ReLU; gn1, gn2 = GroupNorm(32, cmid, "
                "eps=1e-6), gn3 = GroupNorm(32, cout, eps=1e-6), all convs StdConv2d without bias")


def _unit(x, r: BitBottleneck, std=True, relu_before_add=False, final_relu=True,
          proj_groups=None, stride_on_conv1=False, no_proj_norm=False):
    """BitBottleneck's forward written out, with switches for typical mistakes."""
    def conv(c, t, stride=None):
        w = c.standardized_weight() if std else c.weight
        s = c.stride if stride is None else stride
        return F.conv2d(t, w, None, s, c.padding)

    stride = r.conv2.stride
    y = F.relu(r.gn1(conv(r.conv1, x, stride if stride_on_conv1 else 1)))
    y = F.relu(r.gn2(conv(r.conv2, y, 1 if stride_on_conv1 else None)))
    y = r.gn3(conv(r.conv3, y))
    if relu_before_add:
        y = F.relu(y)
    residual = x
    if r.downsample is not None:
        residual = conv(r.downsample, x)
        if not no_proj_norm:
            g = r.gn_proj
            groups = proj_groups or g.num_groups
            residual = F.group_norm(residual, groups, g.weight, g.bias, g.eps)
    return F.relu(residual + y) if final_relu else residual + y


def _unit_variants(x, r: BitBottleneck):
    out = [
        ("your convolutions do not standardise their weights: use StdConv2d (weight "
         "standardisation) for every conv of the unit", lambda: _unit(x, r, std=False)),
        ("apply the final ReLU after adding the shortcut, not before", lambda: _unit(
            x, r, relu_before_add=True, final_relu=False)),
        ("there is no ReLU between gn3 and the addition: y = gn3(conv3(...)); "
         "out = relu(y + shortcut)", lambda: _unit(x, r, relu_before_add=True)),
        ("apply a ReLU after adding the shortcut (out = relu(y + shortcut))",
         lambda: _unit(x, r, final_relu=False)),
        ("the stride belongs on the 3x3 conv2 (the hybrid's choice, as in torchvision v1.5), "
         "not on the 1x1 conv1", lambda: _unit(x, r, stride_on_conv1=True)),
    ]
    if r.downsample is not None:
        out += [
            ("gn_proj must have one group per channel, GroupNorm(cout, cout), not 32 groups",
             lambda: _unit(x, r, proj_groups=32)),
            ("your shortcut skips its GroupNorm: shortcut = gn_proj(downsample(x))",
             lambda: _unit(x, r, no_proj_norm=True)),
        ]
    return out


def _run_unit_case(cls, cin, cout, cmid, stride, size) -> None:
    what = f"cls({cin}, {cout}, {cmid}, stride={stride})"
    unit = call(lambda: cls(cin, cout, cmid, stride=stride), what=what)
    ref = BitBottleneck(cin, cout, cmid, stride)
    problem = structure_problem(unit, ref)
    if problem:
        missing, extra = shape_diff(unit, ref)
        per_channel = [m for m in unit.modules()
                       if isinstance(m, nn.GroupNorm) and m.num_groups == m.num_channels == cout]
        only_gn_proj = not extra and missing == [(cout,)] * 2 and not per_channel
        if ref.downsample is not None and only_gn_proj:
            raise Wrong(f"{what}: your projection shortcut has no GroupNorm; the official unit "
                        f"normalises it with gn_proj = GroupNorm(cout, cout)")
        raise Wrong(f"{what}: {problem}. {_UNIT_LAYOUT}")
    perturb_defaults_(unit).eval()
    ref.eval()
    x = torch.randn(2, cin, size, size, requires_grad=True)
    y = expect_tensor(call(unit, x, what=f"{what} on x {shape(x)}"), "the output")
    out_size = (size - 1) // stride + 1
    expect_shape(y, (2, cout, out_size, out_size), "the output")
    compare_module(y, unit, ref, lambda: ref(x), lambda: _unit_variants(x, ref), what,
                   _UNIT_LAYOUT)
    check_gradient(y, {"x": x, **{f"parameter {k}": p for k, p in unit.named_parameters()}})


@checker
def check_bit_bottleneck(cls: Callable) -> str:
    """Check ``cls(cin, cout, cmid, stride=1)``, the hybrid's StdConv2d + GroupNorm unit
    (post-activation, ``gn_proj`` on the projection shortcut), against
    ``tutorial_lib.resnet.BitBottleneck`` with the same weights.

    The weights are copied by name when the names match the reference's, otherwise module by
    module by shape and order. Detects: missing or extra layers (by shape), no gn_proj, plain
    convolutions instead of StdConv2d, a ReLU before the addition or none after it, the stride
    on the 1x1 conv, gn_proj with 32 groups, and parameters no gradient reaches.
    """
    for case in _UNIT_CASES:
        _run_unit_case(cls, *case)
    return (f"matches tutorial_lib.resnet.BitBottleneck with the same weights on "
            f"{len(_UNIT_CASES)} random inputs (projection with stride 2, identity, projection "
            f"with stride 1; {TOL_TEXT})")

