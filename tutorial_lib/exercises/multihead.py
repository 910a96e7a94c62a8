"""Checkers for notebook 02 (multi-head attention): splitting and merging heads, the module."""

from __future__ import annotations

import math
from typing import Callable

import torch
from einops import rearrange
from torch import nn

from ..attention import MultiHeadSelfAttention, scaled_dot_product_attention
from ._core import (TOL_TEXT, Wrong, call, check_gradient, checker, close, expect_shape,
                    expect_tensor, first_match, max_diff, n_positional, shape)

_SPLIT_CASES = [(2, 5, 12, 3), (1, 7, 16, 4), (3, 4, 8, 2), (2, 5, 24, 6)]  # B, N, D, h; N != h

_INTERLEAVED = ("head i must take the contiguous features i*d_k:(i+1)*d_k; yours takes every "
                "h-th feature (the feature axis read as (d h) instead of (h d))")


@checker
def check_split_heads(fn: Callable) -> str:
    """Check ``fn(x, num_heads)``: (B, N, D) -> (B, h, N, d_k), as
    ``rearrange(x, "b n (h d) -> b h n d", h=num_heads)``.

    Detects: the head axis left after the tokens (B, N, h, d_k), features interleaved across
    heads ((d h) order), a plain reshape that mixes tokens, and a detached result.
    """
    for b, n, d, h in _SPLIT_CASES:
        x = torch.randn(b, n, d, requires_grad=True)
        y = expect_tensor(call(fn, x, h, what=f"fn(x, {h}) with x {shape(x)}"), "the result")
        d_k = d // h
        if tuple(y.shape) == (b, n, h, d_k):
            raise Wrong(f"your result is (B, N, h, d_k) = {shape(y)}: move the head axis before "
                        "the tokens, .transpose(1, 2)")
        expect_shape(y, (b, h, n, d_k), f"fn(x, {h}) for x {shape(x)}", " = (B, h, N, d_k)")
        ref = rearrange(x, "b n (h d) -> b h n d", h=h)
        if not close(y, ref):
            found = first_match(y, [
                (_INTERLEAVED, lambda: rearrange(x, "b n (d h) -> b h n d", h=h)),
                ("you reshaped (B, N, D) straight to (B, h, N, d_k), which mixes tokens: reshape "
                 "to (B, N, h, d_k) first, then .transpose(1, 2)",
                 lambda: x.reshape(b, h, n, d_k)),
            ])
            raise Wrong(found or f"values differ from rearrange(x, 'b n (h d) -> b h n d'): "
                        f"{max_diff(y, ref)}")
        check_gradient(y, {"x": x})
    return f"matches rearrange(x, 'b n (h d) -> b h n d') on {len(_SPLIT_CASES)} random inputs"


@checker
def check_merge_heads(fn: Callable) -> str:
    """Check ``fn(x)``: (B, h, N, d_k) -> (B, N, h * d_k), as
    ``rearrange(x, "b h n d -> b n (h d)")``, the inverse of splitting.

    Detects: heads merged in the wrong order ((d h): interleaved), a plain reshape without the
    transpose (mixes tokens and heads), wrong shapes, and a detached result.
    """
    for b, n, d, h in _SPLIT_CASES:
        x = torch.randn(b, h, n, d // h, requires_grad=True)
        y = expect_tensor(call(fn, x, what=f"fn(x) with x {shape(x)}"), "the result")
        expect_shape(y, (b, n, d), f"fn(x) for x {shape(x)}", " = (B, N, h * d_k)")
        ref = rearrange(x, "b h n d -> b n (h d)")
        if not close(y, ref):
            found = first_match(y, [
                ("heads merged in the wrong order: the features of token n must be head 0's "
                 "d_k values, then head 1's, ... ('b h n d -> b n (h d)'); yours interleave the "
                 "heads ((d h))", lambda: rearrange(x, "b h n d -> b n (d h)")),
                ("you reshaped (B, h, N, d_k) straight to (B, N, D), which mixes tokens and heads: "
                 ".transpose(1, 2) first, then .reshape(B, N, D)", lambda: x.reshape(b, n, d)),
            ])
            raise Wrong(found or f"values differ from rearrange(x, 'b h n d -> b n (h d)'): "
                        f"{max_diff(y, ref)}")
        check_gradient(y, {"x": x})
    return f"matches rearrange(x, 'b h n d -> b n (h d)') on {len(_SPLIT_CASES)} random inputs"


# --------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------
_MODULE_CASES = [(16, 4, 2, 5), (24, 3, 1, 7), (32, 8, 2, 3), (12, 2, 3, 4), (16, 1, 2, 6)]


def _reference_from(module: nn.Module, dim: int, heads: int) -> MultiHeadSelfAttention:
    """A library MultiHeadSelfAttention holding the learner's Linear weights."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    shapes = [tuple(m.weight.shape) for m in linears]
    if shapes in ([(dim, dim)] * 3, [(3 * dim, dim)]):
        raise Wrong("your module has the query, key and value projections but no output "
                    "projection W_o: add nn.Linear(dim, dim) and apply it after merging the heads")
    fused = shapes == [(3 * dim, dim), (dim, dim)]
    if shapes != [(dim, dim)] * 4 and not fused:
        raise Wrong(f"expected four nn.Linear(dim, dim) registered in the order W_q, W_k, W_v, "
                    f"W_o (or nn.Linear(dim, 3 * dim) then W_o) for dim={dim}; your module has "
                    f"Linear weights of shapes {shapes}")
    ref = MultiHeadSelfAttention(dim, heads, fused_qkv=fused, use_fused=False,
                                 qkv_bias=linears[0].bias is not None)
    targets = [ref.qkv, ref.out] if fused else [ref.query, ref.key, ref.value, ref.out]
    with torch.no_grad():
        for src, dst in zip(linears, targets):
            dst.weight.copy_(src.weight)
            if dst.bias is not None:
                dst.bias.copy_(src.bias if src.bias is not None else torch.zeros_like(dst.bias))
    return ref


def _variants(ref: MultiHeadSelfAttention, x: torch.Tensor, heads: int, mask):
    """Typical mistakes, computed with the reference's weights: (message, thunk)."""
    b, n, dim = x.shape
    q, k, v = ref.project_qkv(x)
    lin = ref.qkv(x).chunk(3, -1) if ref.fused_qkv else (ref.query(x), ref.key(x), ref.value(x))

    def attend(q_, k_, v_, merge="b h n d -> b n (h d)", out=True, m=mask):
        ctx = scaled_dot_product_attention(q_, k_, v_, m)[0]
        merged = rearrange(ctx, merge) if isinstance(merge, str) else merge(ctx)
        return ref.out(merged) if out else merged

    split_dh = [rearrange(t, "b n (d h) -> b h n d", h=heads) for t in lin]
    split_reshape = [t.reshape(b, heads, n, dim // heads) for t in lin]
    scale = math.sqrt(heads)  # 1/sqrt(dim) = 1/sqrt(d_k) / sqrt(h)
    out = [
        ("heads merged in the wrong order: merge with 'b h n d -> b n (h d)' (head 0's d_k "
         "features, then head 1's, ...), the inverse of the split",
         lambda: attend(q, k, v, "b h n d -> b n (d h)")),
        ("you merged the heads with a plain reshape of (B, h, N, d_k) to (B, N, D), which mixes "
         "tokens and heads: .transpose(1, 2) first",
         lambda: attend(q, k, v, lambda c: c.reshape(b, n, dim))),
        ("you split and merge the features as (d h), so head i takes every h-th feature; each "
         "head takes the contiguous block i*d_k:(i+1)*d_k ('b n (h d) -> b h n d')",
         lambda: attend(*split_dh, "b h n d -> b n (d h)")),
        ("you split (B, N, D) with a plain reshape to (B, h, N, d_k), which mixes tokens: reshape "
         "to (B, N, h, d_k), then .transpose(1, 2)",
         lambda: attend(*split_reshape, lambda c: c.reshape(b, n, dim))),
        ("you never apply the output projection W_o after merging the heads",
         lambda: attend(q, k, v, out=False)),
        ("you scaled the scores by 1/sqrt(dim); each head uses 1/sqrt(d_k), d_k = dim / num_heads",
         lambda: attend(q / scale, k, v)),
        ("missing the 1/sqrt(d_k) scaling of the scores",
         lambda: attend(q * math.sqrt(dim // heads), k, v)),
    ]
    if mask is not None:
        out.insert(0, ("your mask is inverted: True must mean 'may attend' (the convention of "
                       "F.scaled_dot_product_attention; nn.MultiheadAttention's boolean masks "
                       "mean the opposite)", lambda: attend(q, k, v, m=~mask)))
        out.insert(0, ("your module ignores the mask", lambda: attend(q, k, v, m=None)))
    return out


def _run_module_case(module_cls, dim, heads, b, n, with_mask) -> None:
    module = call(module_cls, dim, heads, what=f"module_cls({dim}, {heads})")
    ref = _reference_from(module, dim, heads)
    module.eval()
    x = torch.randn(b, n, dim, requires_grad=True)
    mask = None
    if with_mask:
        mask = torch.rand(n, n) > 0.5
        mask[:, 0], mask[:, 1] = True, False
    args = (x,) if mask is None else (x, mask)
    what = f"your module (dim={dim}, num_heads={heads}) on x {shape(x)}" + (
        f" with a bool mask {shape(mask)}" if mask is not None else "")
    result = call(module, *args, what=what)
    y = expect_tensor(result[0] if isinstance(result, (tuple, list)) else result, "the output")
    expect_shape(y, (b, n, dim), "the output", " = (B, N, dim)")
    ref_y, ref_w = ref(x, mask, return_weights=True)
    if not close(y, ref_y):
        with torch.no_grad():
            found = first_match(y, _variants(ref, x, heads, mask))
        raise Wrong((found or f"the output differs from the reference: {max_diff(y, ref_y)}")
                    + f" [{what}]")
    weights = result[1] if isinstance(result, (tuple, list)) and len(result) > 1 else None
    if isinstance(weights, torch.Tensor):
        expect_shape(weights, (b, heads, n, n), "the returned weights", " = (B, h, N, N)")
        if not close(weights, ref_w):
            raise Wrong(f"the output is right but the returned weights are not: "
                        f"{max_diff(weights, ref_w)} [{what}]")
    check_gradient(y, {"x": x, **{f"parameter {k}": p for k, p in module.named_parameters()}})


@checker
def check_multi_head_attention(module_cls: Callable) -> str:
    """Check ``module_cls(dim, num_heads)``, whose ``forward(x)`` or ``forward(x, mask)`` maps
    (B, N, dim) -> (B, N, dim) or (output, weights (B, h, N, N)).

    Its nn.Linear layers, registered in the order W_q, W_k, W_v, W_o (or one fused qkv Linear
    then W_o), are copied into ``tutorial_lib.attention.MultiHeadSelfAttention``. Detects: a
    missing output projection (structure or forward), heads merged in the wrong order, plain
    reshapes that mix tokens, an interleaved (d h) split, 1/sqrt(dim) instead of 1/sqrt(d_k),
    no scaling, an ignored or inverted mask (when forward takes one), wrong weights, and
    parameters or input that no gradient reaches.
    """
    takes_mask = None
    for dim, heads, b, n in _MODULE_CASES:
        if takes_mask is None:
            module = call(module_cls, dim, heads, what=f"module_cls({dim}, {heads})")
            takes_mask = n_positional(module.forward) >= 2
        _run_module_case(module_cls, dim, heads, b, n, False)
        if takes_mask:
            _run_module_case(module_cls, dim, heads, b, n, True)
    masks = " with and without a mask" if takes_mask else ""
    return (f"output and gradients match tutorial_lib.attention.MultiHeadSelfAttention with "
            f"the same weights on {len(_MODULE_CASES)} random inputs{masks} ({TOL_TEXT})")
