"""Checkers for notebook 03 (Vision Transformer): patchify and resizing position embeddings."""

from __future__ import annotations

import itertools
from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange

from ..vit import patchify, resize_pos_embed
from ._core import (TOL_TEXT, Wrong, call, check_gradient, checker, close, expect_shape,
                    expect_tensor, first_match, max_diff, shape)

_PATCH_CASES = [(2, 3, 8, 12, 4), (1, 3, 6, 4, 2), (2, 2, 12, 8, 4), (3, 3, 16, 16, 8)]


def _patch_variants(x: torch.Tensor, p: int):
    """Every patch order and order inside the patch other than the reference's."""
    for grid, inner in itertools.product(("h w", "w h"), itertools.permutations("p1 p2 c".split())):
        inner = " ".join(inner)
        if (grid, inner) == ("h w", "p1 p2 c"):
            continue
        problems = []
        if grid == "w h":
            problems.append("your patches are in column-major order (down each column first); "
                            "number them row by row, left to right: patch n sits at row "
                            "n // (W/p), column n % (W/p)")
        if inner != "p1 p2 c":
            problems.append(f"inside each patch your features are ordered ({inner}); the library "
                            "uses (p1 p2 c): row in the patch, then column, then channel (channel "
                            "fastest), the order of a Conv2d kernel flattened by "
                            "tutorial_lib.vit.conv_to_linear_weight")
        yield "; and ".join(problems), (lambda g=grid, i=inner: rearrange(
            x, f"b c (h p1) (w p2) -> b ({g}) ({i})", p1=p, p2=p))


@checker
def check_patchify(fn: Callable) -> str:
    """Check ``fn(x, patch_size)``: (B, C, H, W) -> (B, N, p*p*C) against
    ``tutorial_lib.vit.patchify`` (patches row-major, features (p1 p2 c) inside each patch).

    Detects: wrong shape, column-major patch order, any other order inside the patch (e.g.
    channel first, as F.unfold gives), a plain reshape that does not cut p x p squares, and a
    detached result.
    """
    for b, c, h, w, p in _PATCH_CASES:
        x = torch.randn(b, c, h, w, requires_grad=True)
        y = expect_tensor(call(fn, x, p, what=f"fn(x, {p}) with x {shape(x)}"), "the result")
        n = (h // p) * (w // p)
        expect_shape(y, (b, n, p * p * c), f"fn(x, {p}) for x {shape(x)}",
                     f" = (B, N = {h // p}*{w // p}, p*p*C = {p * p * c})")
        ref = patchify(x, p)
        if not close(y, ref):
            found = first_match(y, [*_patch_variants(x, p), (
                "a plain reshape of (B, C, H, W) to (B, N, p*p*C) does not cut p x p squares: "
                "split H and W into (h p1) and (w p2) and move the axes, "
                "rearrange(x, 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)')",
                lambda: x.reshape(b, n, p * p * c))])
            raise Wrong((found or f"values differ from tutorial_lib.vit.patchify: "
                         f"{max_diff(y, ref)}") + f" [x {shape(x)}, p={p}]")
        check_gradient(y, {"x": x})
    return f"matches tutorial_lib.vit.patchify on {len(_PATCH_CASES)} random images"


_RESIZE_CASES = [((3, 4), (5, 7), 8), ((4, 4), (8, 8), 6), ((2, 3), (4, 6), 4), ((5, 2), (3, 3), 5)]


def _resize(pos, old, new, mode="bilinear", align_corners=True, swap=False):
    if swap:  # the token sequence read as (w, h)
        old, new = old[::-1], new[::-1]
    grid = rearrange(pos, "1 (h w) d -> 1 d h w", h=old[0], w=old[1])
    kw = {} if mode in ("nearest", "area") else {"align_corners": align_corners}
    grid = F.interpolate(grid, size=new, mode=mode, **kw)
    return rearrange(grid, "1 d h w -> 1 (h w) d")


@checker
def check_position_embedding_resize(fn: Callable) -> str:
    """Check ``fn(pos, old_grid, new_grid)``: (1, h*w, D) -> (1, h'*w', D) against
    ``tutorial_lib.vit.resize_pos_embed`` (bilinear, align_corners=True, as the official
    TransUNet's ``scipy.ndimage.zoom(order=1)``); grids are (rows, columns), tokens row-major.

    Detects: wrong shape, align_corners=False, nearest or bicubic interpolation, rows and
    columns swapped, a plain reshape to (1, D, h, w) that mixes tokens and features, and a
    detached result.
    """
    for old, new, d in _RESIZE_CASES:
        pos = torch.randn(1, old[0] * old[1], d, requires_grad=True)
        what = f"fn(pos, {old}, {new}) with pos {shape(pos)}"
        y = expect_tensor(call(fn, pos, old, new, what=what), "the result")
        expect_shape(y, (1, new[0] * new[1], d), what, " = (1, h' * w', D)")
        ref = resize_pos_embed(pos, old, new)
        if not close(y, ref):
            found = first_match(y, [
                ("you interpolated with align_corners=False; the official code's "
                 "scipy.ndimage.zoom(order=1) keeps the corner tokens fixed: align_corners=True",
                 lambda: _resize(pos, old, new, align_corners=False)),
                ("you used nearest-neighbour interpolation; use mode='bilinear', "
                 "align_corners=True", lambda: _resize(pos, old, new, "nearest")),
                ("you used bicubic interpolation; use mode='bilinear', align_corners=True",
                 lambda: _resize(pos, old, new, "bicubic")),
                ("you used bicubic interpolation; use mode='bilinear', align_corners=True",
                 lambda: _resize(pos, old, new, "bicubic", False)),
                ("you swapped rows and columns: the grid is (h, w) = (rows, columns) and token n "
                 "sits at row n // w, column n % w",
                 lambda: _resize(pos, old, new, swap=True)),
                ("you reshaped (1, h*w, D) straight to (1, D, h, w), which mixes tokens and "
                 "features: rearrange(pos, '1 (h w) d -> 1 d h w') (and back the same way)",
                 lambda: F.interpolate(pos.reshape(1, d, *old), size=new, mode="bilinear",
                                       align_corners=True).reshape(1, -1, d)),
            ])
            raise Wrong((found or f"values differ from tutorial_lib.vit.resize_pos_embed: "
                         f"{max_diff(y, ref)}") + f" [{what}]")
        check_gradient(y, {"pos": pos})
    return (f"matches tutorial_lib.vit.resize_pos_embed on {len(_RESIZE_CASES)} random grids "
            f"({TOL_TEXT})")
