"""Checkers for notebook 01 (attention): softmax and scaled dot-product attention."""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..attention import scaled_dot_product_attention as reference_attention
from ._core import (TOL_TEXT, Wrong, call, check_gradient, checker, close, expect_shape,
                    expect_tensor, first_match, max_diff, n_positional, shape)

# (batch dims, N queries, M keys, d_k, d_v, mask shape or None); N != M and d_k != d_v where
# possible, so that a transposed or mixed-up axis shows in the shapes.
_CASES = [
    ((2,), 5, 7, 8, 6, None),
    ((2, 3), 4, 6, 16, 4, (4, 6)),
    ((3,), 6, 6, 4, 4, (3, 1, 6)),
    ((1, 2), 3, 5, 8, 3, (1, 2, 3, 5)),
    ((2,), 9, 4, 32, 5, None),
]


def _mask(shape_: tuple[int, ...]) -> torch.Tensor:
    """A random bool mask; every query row keeps at least one key and masks at least one."""
    m = torch.rand(shape_) > 0.5
    m[..., 0] = True
    m[..., 1] = False
    return m


def _weights(q, k, scale: float, mask=None, dim: int = -1, add_mask: bool = False):
    s = q @ k.transpose(-2, -1) * scale
    if mask is not None:
        s = s + mask.to(s.dtype) if add_mask else s.masked_fill(~mask, float("-inf"))
    return s.softmax(dim=dim)


def _diagnose_weights(w, q, k, mask) -> str:
    """Why the weights ``w`` (..., N, M) are not softmax(q k^T / sqrt(d_k)) with ``mask``."""
    d_k = q.shape[-1]
    if not torch.isfinite(w).all():
        return ("your weights contain NaN or inf (a row whose keys are all masked, or an "
                "overflowing exp)")
    sums_keys, sums_queries = w.sum(-1), w.sum(-2)
    if not torch.allclose(sums_keys, torch.ones_like(sums_keys), atol=1e-4):
        if mask is not None and close(w, _weights(q, k, d_k**-0.5) * mask):
            return ("you zeroed the masked weights after the softmax, so the rows no longer sum "
                    "to 1: fill the masked scores with -inf before the softmax")
        if torch.allclose(sums_queries, torch.ones_like(sums_queries), atol=1e-4):
            return ("your weights sum to 1 over the queries, not the keys: softmax over dim=-1 "
                    "(each query's weights over the keys must sum to 1)")
        return ("your weights do not sum to 1 over the keys (the last axis): apply the softmax "
                "over dim=-1")
    ref_unmasked = _weights(q, k, d_k**-0.5)
    candidates = [
        ("missing the 1/sqrt(d_k) scaling: scores = q @ k^T / sqrt(d_k)",
         lambda: _weights(q, k, 1.0, mask)),
        ("you divided the scores by d_k; divide by sqrt(d_k)",
         lambda: _weights(q, k, 1 / d_k, mask)),
        ("you multiplied the scores by sqrt(d_k); divide by it",
         lambda: _weights(q, k, math.sqrt(d_k), mask)),
    ]
    if mask is not None:
        candidates = [
            ("your function ignores the mask: fill the scores with -inf where the mask is False",
             lambda: ref_unmasked),
            ("your mask is inverted: True must mean 'may attend' (the convention of "
             "F.scaled_dot_product_attention; nn.MultiheadAttention's boolean masks mean the "
             "opposite), so fill with -inf where the mask is False: "
             "scores.masked_fill(~mask, float('-inf'))",
             lambda: _weights(q, k, d_k**-0.5, ~mask)),
            ("you added the boolean mask to the scores; a bool mask selects keys: "
             "scores.masked_fill(~mask, float('-inf'))",
             lambda: _weights(q, k, d_k**-0.5, mask, add_mask=True)),
        ] + candidates
    found = first_match(w, candidates)
    if found:
        return found
    ref = _weights(q, k, d_k**-0.5, mask)
    return f"your weights differ from softmax(q k^T / sqrt(d_k)): {max_diff(w, ref)}"


def _run_case(fn: Callable, case) -> None:
    batch, n, m, d_k, d_v, mask_shape = case
    q = torch.randn(*batch, n, d_k, requires_grad=True)
    k = torch.randn(*batch, m, d_k, requires_grad=True)
    v = torch.randn(*batch, m, d_v, requires_grad=True)
    mask = _mask(mask_shape) if mask_shape else None
    args = (q, k, v) if mask is None else (q, k, v, mask)
    what = f"your function, called with q {shape(q)}, k {shape(k)}, v {shape(v)}" + (
        f", mask {shape(mask)} (bool)" if mask is not None else "")
    result = call(fn, *args, what=what)
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise Wrong(f"return a pair (output, weights); {what} returned "
                    f"{type(result).__name__}")
    out = expect_tensor(result[0], "the output (first returned value)")
    w = expect_tensor(result[1], "the weights (second returned value)")
    if tuple(w.shape) == (*batch, m, n) and m != n:
        raise Wrong(f"your weights are (..., M, N) = {shape(w)}, keys by queries: compute the "
                    "scores as q @ k.transpose(-2, -1), one row per query")
    expect_shape(w, (*batch, n, m), "the weights", " = (..., N queries, M keys)")
    expect_shape(out, (*batch, n, d_v), "the output", " = (..., N queries, d_v)")
    ref_out, ref_w = reference_attention(q, k, v, mask)
    if not close(w, ref_w):
        raise Wrong(_diagnose_weights(w.detach(), q.detach(), k.detach(), mask) + f" [{what}]")
    if not close(out, ref_out):
        hint = (" it equals weights @ v only for your weights' transpose or another matrix"
                if not close(out, w.detach() @ v.detach()) else "")
        raise Wrong(f"your weights are right but the output is not weights @ v "
                    f"({max_diff(out, ref_out)}).{hint} [{what}]")
    check_gradient(out, {"q": q, "k": k, "v": v}, {"__out__": ref_out, "q": q, "k": k, "v": v})


@checker
def check_attention(fn: Callable) -> str:
    """Check ``fn(q, k, v, mask=None) -> (output, weights)`` against the library's attention.

    q (..., N, d_k), k (..., M, d_k), v (..., M, d_v) -> output (..., N, d_v), weights
    (..., N, M); a bool ``mask`` broadcast to (..., N, M) keeps the keys where it is True (the
    convention of ``F.scaled_dot_product_attention``); a ``fn(q, k, v)`` without a mask
    argument is checked without masks (the verdict says so). Detects: not returning a pair, wrong or
    transposed shapes, missing or wrong 1/sqrt(d_k) scaling, softmax over the wrong axis, an
    ignored, inverted or added mask, masking after the softmax, an output other than
    weights @ v, and a detached or partly detached computation (no or wrong gradients).
    """
    takes_mask = n_positional(fn) >= 4
    cases = _CASES if takes_mask else [c[:-1] + (None,) for c in _CASES]
    for case in cases:
        _run_case(fn, case)
    if not takes_mask:
        return (f"output, weights and gradients match the reference on {len(_CASES)} random "
                f"inputs ({TOL_TEXT}); fn takes no mask, so masking was not checked")
    return (f"output, weights, masking and gradients match the reference on {len(_CASES)} "
            f"random inputs ({TOL_TEXT})")


_SOFTMAX_SHAPES = [(7,), (3, 5), (2, 4, 6), (2, 3, 1)]


@checker
def check_softmax(fn: Callable) -> str:
    """Check ``fn(x) -> softmax of x over its last axis`` against ``torch.softmax(x, dim=-1)``.

    Detects: wrong shape, normalising over another axis, a function that is not the softmax,
    overflow for large inputs (no max subtraction), subtracting the global instead of each
    row's maximum, and a detached computation (no or wrong gradients).
    """
    for s in _SOFTMAX_SHAPES:
        x = torch.randn(s, requires_grad=True)
        y = expect_tensor(call(fn, x, what=f"fn(x) with x of shape {s}"), "fn(x)")
        expect_shape(y, s, "fn(x)")
        ref = torch.softmax(x, dim=-1)
        if not close(y, ref):
            for dim in range(len(s) - 1):
                if close(y, torch.softmax(x, dim=dim)):
                    raise Wrong(f"you normalised over dim={dim}; the softmax runs over the last "
                                "axis, dim=-1 (each row sums to 1)")
            raise Wrong(f"fn(x) is not softmax(x) = exp(x) / sum(exp(x)) over the last axis "
                        f"for x of shape {s}: {max_diff(y, ref)}")
        check_gradient(y, {"x": x}, {"__out__": ref, "x": x})
    big = torch.randn(3, 5) + 1000.0
    y = call(fn, big, what="fn(x) with x around 1000")
    if not torch.isfinite(torch.as_tensor(y)).all():
        raise Wrong("fn(x) overflows for inputs around 1000 (exp(1000) is inf): subtract each "
                    "row's maximum first, softmax(x) = softmax(x - m) with "
                    "m = x.max(dim=-1, keepdim=True).values")
    rows = torch.randn(3, 5) + torch.tensor([[0.0], [1000.0], [-1000.0]])
    y = expect_tensor(call(fn, rows, what="fn(x) with rows around 0, 1000 and -1000"), "fn(x)")
    if not close(y, torch.softmax(rows, dim=-1)):
        raise Wrong("rows around 0, 1000 and -1000 fail: subtract each row's own maximum "
                    "(x.max(dim=-1, keepdim=True).values), not the maximum of the whole tensor")
    return (f"matches torch.softmax(x, dim=-1) on {len(_SOFTMAX_SHAPES) + 2} random inputs, "
            f"including rows around +-1000, with gradients ({TOL_TEXT})")
