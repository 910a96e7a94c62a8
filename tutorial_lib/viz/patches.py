"""What the Vision Transformer notebook (03) computes and draws.

Patches and their cost (``patch_grid``, ``patch_token_stats``, ``patch_size_table``), the best
segmentation one label per token can reach (``majority_label_per_patch``, ``oracle_segmentation``,
``iou_per_class``, ``miou``), attention maps of a trained ViT (``attention_map_for_query``,
``rollout_map_for_query``, ``position_embedding_similarity``) and the scenes they are shown on
(``street_scene``, ``synthetic_street_label``). Those are plain functions checked by
``tests/viz/test_viz_patches.py``; the ``draw_*`` and ``plot_*`` functions only draw what they return,
and the notebook wires them to its widgets.

Notation as in Dosovitskiy et al. (2021): an H x W image cut into P x P patches gives
N = HW / P^2 tokens of width D.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import cbook
from matplotlib.patches import Rectangle
from PIL import Image

from .. import metrics
from ..data.classes import CAMVID_CLASSES, CAMVID_COLORS, IGNORE_INDEX, VOID_LABEL, colorize
from ..data.synthetic import street_label
from ..vit import attention_rollout

__all__ = [
    "PATCH_SIZES",
    "PAPER_PATCH",
    "BLOG_PATCH",
    "THIN_CLASSES",
    "patch_grid",
    "patch_token_stats",
    "format_bytes",
    "format_flops",
    "majority_label_per_patch",
    "upsample_nearest",
    "oracle_segmentation",
    "iou_per_class",
    "miou",
    "patch_size_table",
    "format_patch_table",
    "patch_stats_html",
    "synthetic_street_label",
    "street_scene",
    "patch_mosaic",
    "draw_patch_grid",
    "plot_patch_size_figure",
    "plot_patch_size_comparison",
    "attention_map_for_query",
    "rollout_map_for_query",
    "query_options",
    "query_cell",
    "draw_attention",
    "plot_attention_views",
    "position_embedding_similarity",
    "plot_position_similarity",
]

#: The patch sizes the notebook compares (pixels per side of one token).
PATCH_SIZES: tuple[int, ...] = (4, 8, 16, 32, 64, 128)
#: TransUNet's effective token size: 1x1 patches on the ResNet's 1/16 feature map = 16x16 pixels.
PAPER_PATCH = 16
#: The blog variant's token size: 16x16 patches on a 1/8 feature map = 128x128 pixels.
BLOG_PATCH = 128
#: CamVid classes that are only a few pixels wide (indices into CAMVID_CLASSES).
THIN_CLASSES: tuple[int, ...] = (2, 6, 9)  # Pole, SignSymbol, Pedestrian


# --------------------------------------------------------------------------------------------
# How many tokens, and what attention over them costs
# --------------------------------------------------------------------------------------------


def patch_grid(img_hw: Sequence[int], patch: int) -> tuple[int, int]:
    """Token grid (H/P, W/P) of an (H, W) image cut into P x P patches; P must divide H and W."""
    h, w = int(img_hw[0]), int(img_hw[1])
    if patch < 1:
        raise ValueError(f"patch size must be >= 1, got {patch}")
    if h % patch or w % patch:
        raise ValueError(
            f"a {h} x {w} image cannot be cut into {patch} x {patch} patches: "
            f"crop or resize it to a multiple of {patch}"
        )
    return h // patch, w // patch


def patch_token_stats(
    img_hw: Sequence[int],
    patch: int,
    dim: int = 768,
    heads: int = 12,
    layers: int = 12,
    num_prefix_tokens: int = 0,
    bytes_per_value: int = 4,
) -> dict:
    """Token count and attention cost of a ViT on an (H, W) image cut into P x P patches.

    Defaults are ViT-B (D = 768, 12 heads, 12 layers) in fp32. With N tokens (plus any class
    token), per layer:

    * the attention matrix is N x N per head: ``heads * N^2`` weights, ``heads * N^2 * 4`` bytes;
    * the two matrix products Q K^T and A V each take N^2 * D multiply-adds summed over the heads
      (h * N^2 * d_k with d_k = D / h), i.e. ``2 * 2 * N^2 * D`` FLOPs (1 multiply-add = 2 FLOPs).

    The projections and the MLP grow only linearly in N and are not counted here.
    """
    gh, gw = patch_grid(img_hw, patch)
    n = gh * gw + num_prefix_tokens
    flops_layer = 2 * 2 * n * n * dim
    bytes_layer = heads * n * n * bytes_per_value
    return {
        "patch": patch,
        "grid": (gh, gw),
        "tokens": n,
        "pixels_per_token": patch * patch,
        "attn_shape": (heads, n, n),
        "attn_flops_per_layer": flops_layer,
        "attn_flops": layers * flops_layer,
        "attn_bytes_per_layer": bytes_layer,
        "attn_bytes": layers * bytes_layer,
    }


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KB' (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_flops(n: float) -> str:
    """3.2e9 -> '3.2 GFLOPs' (powers of 1000)."""
    for unit in ("", "K", "M", "G", "T", "P"):
        if abs(n) < 1000 or unit == "P":
            return f"{n:.0f} FLOPs" if unit == "" else f"{n:.1f} {unit}FLOPs"
        n /= 1000
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# The best a one-label-per-token prediction can do
# --------------------------------------------------------------------------------------------


def majority_label_per_patch(
    label: np.ndarray,
    patch: int,
    ignore_index: int = IGNORE_INDEX,
    num_classes: int | None = None,
) -> np.ndarray:
    """Most frequent class of every P x P patch of an (H, W) label map -> (H/P, W/P) int64.

    Pixels equal to ``ignore_index`` do not vote; a patch with no other pixel gets
    ``ignore_index``. Ties go to the smaller class index.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"expected an (H, W) label map, got shape {label.shape}")
    gh, gw = patch_grid(label.shape, patch)
    label = label.astype(np.int64)
    valid = label[label != ignore_index]
    if num_classes is None:
        num_classes = int(valid.max()) + 1 if valid.size else 1
    if valid.size and (valid.min() < 0 or valid.max() >= num_classes):
        bad = sorted(set(np.unique(valid[(valid < 0) | (valid >= num_classes)]).tolist()))
        raise ValueError(f"label has values {bad} outside 0..{num_classes - 1} (ignore_index={ignore_index})")
    blocks = label.reshape(gh, patch, gw, patch).transpose(0, 2, 1, 3).reshape(gh, gw, patch * patch)
    counts = np.stack([(blocks == c).sum(-1) for c in range(num_classes)], axis=-1)
    majority = counts.argmax(-1)
    majority[counts.sum(-1) == 0] = ignore_index
    return majority


def upsample_nearest(grid_labels: np.ndarray, patch: int) -> np.ndarray:
    """(h, w) -> (h*P, w*P): every token's value repeated over its P x P pixels."""
    g = np.asarray(grid_labels)
    return np.repeat(np.repeat(g, patch, axis=0), patch, axis=1)


def oracle_segmentation(
    label: np.ndarray,
    patch: int,
    ignore_index: int = IGNORE_INDEX,
    num_classes: int | None = None,
) -> np.ndarray:
    """The best prediction that gives one class per P x P token, at full resolution (H, W)."""
    return upsample_nearest(majority_label_per_patch(label, patch, ignore_index, num_classes), patch)


def iou_per_class(
    pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """IoU = TP / (TP + FP + FN) of each class, (num_classes,) float64, by ``tutorial_lib.metrics``.

    Pixels whose target is ``ignore_index`` are skipped. A prediction outside 0..C-1 (e.g. an
    all-void token) counts as a miss of the true class. Classes absent from both prediction and
    target give nan (neither found nor missed).
    """
    target = torch.as_tensor(np.ascontiguousarray(target))
    bad = (target != ignore_index) & ((target < 0) | (target >= num_classes))
    if bad.any():
        raise ValueError(f"target has values {torch.unique(target[bad]).tolist()} outside 0..{num_classes - 1} "
                         f"(ignore_index={ignore_index})")
    # a prediction outside 0..C-1 goes to an extra column C: a miss of its true class, no class's false alarm
    pred = np.asarray(pred)
    pred = torch.as_tensor(np.where((pred >= 0) & (pred < num_classes), pred, num_classes))
    cm = metrics.confusion_matrix(pred, target, num_classes + 1, ignore_index)
    return metrics.iou_per_class(cm)[:num_classes].numpy()


def miou(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX) -> float:
    """Mean IoU over the classes present in prediction or target (nan if there are none)."""
    ious = iou_per_class(pred, target, num_classes, ignore_index)
    return float(np.nanmean(ious)) if np.isfinite(ious).any() else float("nan")


def patch_size_table(
    label: np.ndarray,
    patch_sizes: Sequence[int] = PATCH_SIZES,
    num_classes: int = len(CAMVID_CLASSES),
    ignore_index: int = IGNORE_INDEX,
    **vit_dims,
) -> list[dict]:
    """One row per patch size: ``patch_token_stats`` of the label's (H, W) plus the oracle's
    ``miou`` and ``iou`` (per class) against the full-resolution label."""
    rows = []
    for p in patch_sizes:
        row = patch_token_stats(label.shape, p, **vit_dims)
        oracle = oracle_segmentation(label, p, ignore_index, num_classes)
        row["iou"] = iou_per_class(oracle, label, num_classes, ignore_index)
        row["miou"] = miou(oracle, label, num_classes, ignore_index)
        rows.append(row)
    return rows


def _gflops(flops: float) -> str:
    g = flops / 1e9
    return f"{g:,.1f}" if g >= 1 else f"{g:.3f}"


def _marker(patch: int) -> str:
    return {PAPER_PATCH: "TransUNet (paper)", BLOG_PATCH: "blog variant"}.get(patch, "")


def format_patch_table(
    rows: Sequence[dict],
    class_names: Sequence[str] = CAMVID_CLASSES,
    thin: Sequence[int] = THIN_CLASSES,
) -> str:
    """The rows of ``patch_size_table`` as a fixed-width text table."""

    def pct(x: float) -> str:
        return "   -" if np.isnan(x) else f"{100 * x:4.1f}"

    head = (f"{'patch':>6} {'grid':>9} {'tokens N':>9} {'attn MB/layer':>14} {'attn GFLOPs':>12} "
            f"{'oracle mIoU':>12} " + " ".join(f"{class_names[c]:>{max(6, len(class_names[c]))}}" for c in thin))
    lines = [head, "-" * len(head)]
    for r in rows:
        gh, gw = r["grid"]
        line = (f"{r['patch']:>6} {f'{gh}x{gw}':>9} {r['tokens']:>9,} "
                f"{r['attn_bytes_per_layer'] / 2**20:>14,.2f} {_gflops(r['attn_flops']):>12} "
                f"{pct(r['miou']):>12} "
                + " ".join(f"{pct(r['iou'][c]):>{max(6, len(class_names[c]))}}" for c in thin))
        mark = _marker(r["patch"])
        lines.append(line + (f"   <- {mark}" if mark else ""))
    return "\n".join(lines)


def patch_stats_html(
    stats: dict,
    oracle_miou: float | None = None,
    thin_iou: dict[str, float] | None = None,
    img_hw: Sequence[int] | None = None,
) -> str:
    """What the patch-size widget reports, as a small HTML block."""
    gh, gw = stats["grid"]
    n, p = stats["tokens"], stats["patch"]
    size = f" of the {img_hw[0]}x{img_hw[1]} image" if img_hw is not None else ""
    parts = [
        f"<b>P = {p}</b>: {gh} x {gw} = <b>{n:,} tokens</b>{size}, each {p}x{p} = {p * p:,} pixels",
        f"attention matrix per head: {n:,} x {n:,} = {n * n:,} weights",
        f"ViT-B (D=768, 12 heads, 12 layers), Q K<sup>T</sup> and A V: "
        f"{format_flops(stats['attn_flops_per_layer'])} per layer, <b>{format_flops(stats['attn_flops'])}</b> in all",
        f"fp32 attention weights: {format_bytes(stats['attn_bytes_per_layer'])} per layer, "
        f"<b>{format_bytes(stats['attn_bytes'])}</b> for 12 layers",
    ]
    if oracle_miou is not None:
        line = f"best mIoU with one label per token: <b>{100 * oracle_miou:.1f}%</b>"
        if thin_iou:
            line += " (" + ", ".join(
                f"{html.escape(k)} {'-' if np.isnan(v) else f'{100 * v:.1f}%'}" for k, v in thin_iou.items()
            ) + ")"
        parts.append(line)
    if p == PAPER_PATCH:
        parts.append("<i>TransUNet (paper): 1x1 patches on the ResNet's 1/16 map = 16x16-pixel tokens</i>")
    elif p == BLOG_PATCH:
        parts.append("<i>blog variant: 16x16 patches on a 1/8 map = 128x128-pixel tokens "
                     "(4 x 4 = 16 tokens for 512 x 512)</i>")
    return "<br>".join(parts)


# --------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------


def synthetic_street_label(h: int = 512, w: int = 512) -> np.ndarray:
    """A street scene drawn with CamVid's 11 class indices, (h, w) uint8; no randomness
    (``tutorial_lib.data.synthetic.street_label`` without a generator)."""
    return street_label(h, w)


def _grace_hopper() -> np.ndarray:
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


def street_scene(
    size: tuple[int, int] = (512, 512),
    root: str | Path | None = None,
    name: str = "0016E5_08089.png",
) -> tuple[np.ndarray, np.ndarray, str]:
    """A street image and its label map at ``size`` = (H, W) -> (image float32 (H, W, 3) in
    [0, 1], label uint8 (H, W) with void = IGNORE_INDEX, description).

    With a CamVid folder ``root`` (``<root>/val/<name>`` and ``<root>/valannot/<name>``, SegNet's
    single-channel labels, 11 = void) the frame is resized like the blog does (bilinear image,
    nearest label). Without one (None, or a folder that lacks the files) the image is matplotlib's
    ``grace_hopper.jpg`` and the label is ``synthetic_street_label``.
    """
    h, w = size
    if root is not None:
        img_path, lab_path = Path(root) / "val" / name, Path(root) / "valannot" / name
        if not img_path.is_file() or not lab_path.is_file():
            val = Path(root) / "val"
            names = sorted(p.name for p in val.glob("*.png")) if val.is_dir() else []
            names = [n for n in names if (Path(root) / "valannot" / n).is_file()]
            if names:
                name = names[0]
                img_path, lab_path = val / name, Path(root) / "valannot" / name
        if img_path.is_file() and lab_path.is_file():
            img = Image.open(img_path).convert("RGB").resize((w, h), Image.BILINEAR)
            lab = np.array(Image.open(lab_path).resize((w, h), Image.NEAREST), dtype=np.uint8)
            lab[lab == VOID_LABEL] = IGNORE_INDEX
            return np.asarray(img, dtype=np.float32) / 255.0, lab, f"CamVid val/{name}"
    img = Image.fromarray(_grace_hopper()).resize((w, h), Image.BILINEAR)
    return (np.asarray(img, dtype=np.float32) / 255.0, synthetic_street_label(h, w),
            "grace_hopper.jpg with a drawn street label")


# --------------------------------------------------------------------------------------------
# Drawing patches
# --------------------------------------------------------------------------------------------


def patch_mosaic(patches: np.ndarray, grid: tuple[int, int], gap: int = 2, fill: float = 1.0) -> np.ndarray:
    """Lay N patch images (N, P, P[, C]) out on a (gh, gw) grid with ``gap`` pixels of ``fill``
    between them -> (gh*P + (gh-1)*gap, gw*P + (gw-1)*gap[, C])."""
    patches = np.asarray(patches)
    gh, gw = grid
    if patches.shape[0] != gh * gw:
        raise ValueError(f"{patches.shape[0]} patches do not fill a {gh} x {gw} grid")
    p = patches.shape[1]
    step = p + gap
    out = np.full((gh * step - gap, gw * step - gap) + patches.shape[3:], fill, dtype=patches.dtype)
    for i, patch in enumerate(patches):
        r, c = divmod(i, gw)
        out[r * step: r * step + p, c * step: c * step + p] = patch
    return out


def draw_patch_grid(ax, image: np.ndarray, patch: int, color: str = "white", linewidth: float = 0.6,
                    title: str | None = None):
    """The image with the borders of its P x P patches drawn over it."""
    h, w = np.asarray(image).shape[:2]
    ax.imshow(image, interpolation="nearest")
    ax.vlines(np.arange(patch, w, patch) - 0.5, -0.5, h - 0.5, colors=color, linewidth=linewidth)
    ax.hlines(np.arange(patch, h, patch) - 0.5, -0.5, w - 0.5, colors=color, linewidth=linewidth)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def _label_rgb(label: np.ndarray) -> np.ndarray:
    return colorize(np.asarray(label)).astype(np.float32) / 255.0


def plot_patch_size_figure(image: np.ndarray, label: np.ndarray, patch: int,
                           num_classes: int = len(CAMVID_CLASSES), ignore_index: int = IGNORE_INDEX,
                           fig=None):
    """Three panels for one patch size: the image cut into tokens, the full-resolution label,
    and the best one-label-per-token prediction (majority label of each patch) with its mIoU."""
    if fig is None:
        fig = plt.figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 3)
    stats = patch_token_stats(image.shape[:2], patch)
    oracle = oracle_segmentation(label, patch, ignore_index, num_classes)
    score = miou(oracle, label, num_classes, ignore_index)
    mark = _marker(patch)
    gh, gw = stats["grid"]
    lw = 0.4 if patch < 8 else 0.8
    draw_patch_grid(axes[0], image, patch, linewidth=lw,
                    title=f"P = {patch}: {gh}x{gw} = {stats['tokens']:,} tokens" + (f"\n{mark}" if mark else ""))
    axes[1].imshow(_label_rgb(label), interpolation="nearest")
    axes[1].set_title("label (full resolution)", fontsize=9)
    draw_patch_grid(axes[2], _label_rgb(oracle), patch, color="black", linewidth=lw * 0.5,
                    title=f"one label per token (majority)\nmIoU {100 * score:.1f}%")
    axes[1].set_xticks([])
    axes[1].set_yticks([])
    fig.tight_layout()
    return fig


def plot_patch_size_comparison(image: np.ndarray, label: np.ndarray,
                               patch_sizes: Sequence[int] = (PAPER_PATCH, BLOG_PATCH),
                               num_classes: int = len(CAMVID_CLASSES), ignore_index: int = IGNORE_INDEX,
                               fig=None):
    """Several patch sizes in one row: the image once, with the patch borders of the first size thin
    and of the last size thick, the label, then the best one-label-per-token prediction of each size."""
    if fig is None:
        fig = plt.figure(figsize=(2.5 * (2 + len(patch_sizes)), 2.9))
    axes = fig.subplots(1, 2 + len(patch_sizes))
    small, large = patch_sizes[0], patch_sizes[-1]
    draw_patch_grid(axes[0], image, small, color="white", linewidth=0.3)
    draw_patch_grid(axes[0], image, large, color="yellow", linewidth=1.5,
                    title=f"{small} px tokens (white)\n{large} px tokens (yellow)")
    axes[1].imshow(_label_rgb(label), interpolation="nearest")
    axes[1].set_title("label (full resolution)", fontsize=9)
    axes[1].set_xticks([])
    axes[1].set_yticks([])
    for ax, p in zip(axes[2:], patch_sizes):
        oracle = oracle_segmentation(label, p, ignore_index, num_classes)
        score = miou(oracle, label, num_classes, ignore_index)
        mark = _marker(p)
        draw_patch_grid(ax, _label_rgb(oracle), p, color="black", linewidth=0.2 if p < 32 else 0.8,
                        title=f"P = {p}" + (f" ({mark})" if mark else "") + f"\nbest mIoU {100 * score:.1f}%")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Attention of a trained ViT
# --------------------------------------------------------------------------------------------


def _layer_weights(w) -> torch.Tensor:
    """One layer's attention as a (h, N, N) tensor; a batch (B, h, N, N) gives its first image."""
    w = torch.as_tensor(w).detach().float().cpu()
    if w.ndim == 4:
        w = w[0]
    if w.ndim != 3 or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"expected attention weights (h, N, N) or (B, h, N, N), got {tuple(w.shape)}")
    return w


def _head_index(head) -> int | None:
    return None if head is None or head == "mean" else int(head)


def _to_grid(row: torch.Tensor, grid: tuple[int, int], num_prefix_tokens: int) -> np.ndarray:
    gh, gw = grid
    if row.shape[-1] != num_prefix_tokens + gh * gw:
        raise ValueError(f"{row.shape[-1]} tokens do not match {num_prefix_tokens} prefix + {gh}x{gw} grid")
    return row[num_prefix_tokens:].reshape(gh, gw).numpy().astype(np.float64)


def attention_map_for_query(weights: Sequence, layer: int, head, query: int, grid: tuple[int, int],
                            num_prefix_tokens: int = 1) -> np.ndarray:
    """How much token ``query`` attends to each patch in ``layer``: row ``query`` of the
    attention matrix of one head (or the mean over heads for ``head`` None / "mean"), without
    the prefix (class token) columns, laid out on the (gh, gw) grid.

    ``weights``: per-layer attention, each (h, N, N) or (B, h, N, N) (first image used).
    ``query`` indexes the whole sequence: 0 is the class token when there is one.
    """
    w = _layer_weights(weights[layer])
    if not 0 <= query < w.shape[-1]:
        raise ValueError(f"query {query} outside 0..{w.shape[-1] - 1}")
    h = _head_index(head)
    a = w.mean(0) if h is None else w[h]
    return _to_grid(a[query], grid, num_prefix_tokens)


def rollout_map_for_query(weights: Sequence, layer: int, head, query: int, grid: tuple[int, int],
                          num_prefix_tokens: int = 1) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020) from the input through ``layer`` (inclusive),
    row ``query``, patch columns on the (gh, gw) grid. Uses ``tutorial_lib.vit.attention_rollout``."""
    ws = [_layer_weights(w)[None] for w in weights[: layer + 1]]
    r = attention_rollout(ws, head=_head_index(head))[0]
    if not 0 <= query < r.shape[-1]:
        raise ValueError(f"query {query} outside 0..{r.shape[-1] - 1}")
    return _to_grid(r[query], grid, num_prefix_tokens)


def query_options(grid: tuple[int, int], num_prefix_tokens: int = 1) -> list[tuple[str, int]]:
    """(label, token index) pairs for a query dropdown: the class token, then every patch."""
    opts = [("[class] token", i) for i in range(num_prefix_tokens)]
    gh, gw = grid
    opts += [(f"patch {i} (row {i // gw}, col {i % gw})", num_prefix_tokens + i) for i in range(gh * gw)]
    return opts


def query_cell(query: int, grid: tuple[int, int], num_prefix_tokens: int = 1) -> tuple[int, int] | None:
    """(row, col) of the patch that token ``query`` stands for; None for a prefix token."""
    if query < num_prefix_tokens:
        return None
    return divmod(query - num_prefix_tokens, grid[1])


def draw_attention(ax, image: np.ndarray, amap: np.ndarray, cell: tuple[int, int] | None = None,
                   title: str | None = None, cmap: str = "inferno"):
    """The image dimmed, with a (gh, gw) attention map over it (one colour block per patch,
    scaled to its maximum) and the query's patch outlined in cyan."""
    image = np.asarray(image)
    h, w = image.shape[:2]
    a = np.asarray(amap, dtype=np.float64)
    a = a / a.max() if a.max() > 0 else a
    rgba = plt.get_cmap(cmap)(a)
    rgba[..., 3] = 0.85 * np.sqrt(a)
    ax.imshow(image * 0.6 + 0.1, interpolation="nearest")
    ax.imshow(rgba, extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="nearest")
    if cell is not None:
        ph, pw = h / a.shape[0], w / a.shape[1]
        r, c = cell
        ax.add_patch(Rectangle((c * pw - 0.5, r * ph - 0.5), pw, ph, fill=False, ec="cyan", lw=2))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_attention_views(image: np.ndarray, weights: Sequence, layer: int, head, query: int,
                         grid: tuple[int, int], num_prefix_tokens: int = 1, fig=None):
    """Two panels: the raw attention of (layer, head) for one query, and the rollout through
    that layer."""
    if fig is None:
        fig = plt.figure(figsize=(6.4, 3.4))
    axes = fig.subplots(1, 2)
    who = "mean of heads" if _head_index(head) is None else f"head {head}"
    cell = query_cell(query, grid, num_prefix_tokens)
    qname = "[class]" if cell is None else f"patch {query - num_prefix_tokens}"
    a = attention_map_for_query(weights, layer, head, query, grid, num_prefix_tokens)
    r = rollout_map_for_query(weights, layer, head, query, grid, num_prefix_tokens)
    draw_attention(axes[0], image, a, cell, f"layer {layer}, {who}\nquery {qname}")
    draw_attention(axes[1], image, r, cell, f"rollout, layers 0..{layer}\nquery {qname}")
    fig.tight_layout()
    return fig


def position_embedding_similarity(pos, grid: tuple[int, int], num_prefix_tokens: int = 0) -> np.ndarray:
    """Cosine similarity of every patch's position embedding with every other one.

    ``pos``: (1, P + gh*gw, D) or (P + gh*gw, D). Returns (gh, gw, gh, gw): entry [r, c] is the
    (gh, gw) map of similarities of patch (r, c) with all patches (the ViT paper's Fig. 7 layout).
    """
    p = torch.as_tensor(pos).detach().float().cpu()
    if p.ndim == 3:
        p = p[0]
    gh, gw = grid
    p = p[num_prefix_tokens:]
    if p.shape[0] != gh * gw:
        raise ValueError(f"{p.shape[0]} position embeddings do not match a {gh} x {gw} grid")
    p = torch.nn.functional.normalize(p, dim=-1)
    return (p @ p.T).reshape(gh, gw, gh, gw).numpy().astype(np.float64)


def plot_position_similarity(sim: np.ndarray, fig=None, cmap: str = "viridis"):
    """A (gh, gw) grid of small maps: map (r, c) is the similarity of patch (r, c)'s position
    embedding with all others."""
    gh, gw = sim.shape[:2]
    if fig is None:
        fig = plt.figure(figsize=(0.75 * gw + 1.0, 0.75 * gh + 0.3))
    axes = np.asarray(fig.subplots(gh, gw, squeeze=False))
    im = None
    for r in range(gh):
        for c in range(gw):
            ax = axes[r, c]
            im = ax.imshow(sim[r, c], vmin=-1, vmax=1, cmap=cmap, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(str(r), fontsize=7)
            if r == gh - 1:
                ax.set_xlabel(str(c), fontsize=7)
    fig.supylabel("input patch row", fontsize=8)
    fig.supxlabel("input patch column", fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="cosine similarity")
    return fig


# --------------------------------------------------------------------------------------------
# Several frames at their own aspect ratio, costs per layer, structure of position embeddings
# --------------------------------------------------------------------------------------------


def pad_to_multiple(array: np.ndarray, patch: int, fill) -> np.ndarray:
    """Pad an (H, W) or (H, W, C) array at the bottom and right with ``fill`` up to the next
    multiples of P -> (ceil(H/P) P, ceil(W/P) P[, C]); unchanged when P divides H and W."""
    a = np.asarray(array)
    if patch < 1:
        raise ValueError(f"patch size must be >= 1, got {patch}")
    h, w = a.shape[:2]
    ph, pw = -h % patch, -w % patch
    return np.pad(a, [(0, ph), (0, pw)] + [(0, 0)] * (a.ndim - 2), constant_values=fill)


def oracle_table(
    labels: Sequence[np.ndarray],
    patch_sizes: Sequence[int] = PATCH_SIZES,
    num_classes: int = len(CAMVID_CLASSES),
    ignore_index: int = IGNORE_INDEX,
    **vit_dims,
) -> list[dict]:
    """``patch_size_table`` over several (H, W) label maps of one size, e.g. CamVid frames at
    360 x 480: one row per patch size P.

    Each map is padded with ``ignore_index`` at the bottom and right to a multiple of P
    (``pad_to_multiple``; padding neither votes nor counts), every token predicts the majority
    label of its patch (``oracle_segmentation``), and one confusion matrix is summed over all
    maps (``tutorial_lib.metrics.confusion_matrix``), so ``iou`` is TP / (TP + FP + FN) over all
    their pixels. Integer counts and one division per class: the values do not depend on the
    CPU; ``miou`` (classes present) is summed with ``math.fsum``, exact before its one division.
    Each row also holds ``patch_token_stats`` of the padded size and ``frames``.
    """
    import math

    from .. import metrics as seg_metrics

    labels = [np.asarray(lab) for lab in labels]
    if not labels or any(lab.shape != labels[0].shape or lab.ndim != 2 for lab in labels):
        raise ValueError("oracle_table needs one or more (H, W) label maps of the same size, got shapes "
                         f"{[lab.shape for lab in labels]}")
    rows = []
    for p in patch_sizes:
        cm = torch.zeros(num_classes + 1, num_classes + 1, dtype=torch.int64)
        for lab in labels:
            lab = pad_to_multiple(lab, p, ignore_index)
            pred = oracle_segmentation(lab, p, ignore_index, num_classes)
            pred = np.where((pred >= 0) & (pred < num_classes), pred, num_classes)  # all-void token: column C
            seg_metrics.confusion_matrix(torch.as_tensor(pred), torch.as_tensor(lab.astype(np.int64)),
                                         num_classes + 1, ignore_index, out=cm)
        iou = seg_metrics.iou_per_class(cm)[:num_classes].numpy()
        present = [float(v) for v in iou if np.isfinite(v)]
        row = patch_token_stats(lab.shape, p, **vit_dims)
        row.update(iou=iou, miou=math.fsum(present) / len(present) if present else float("nan"),
                   frames=len(labels), frame_hw=tuple(labels[0].shape), padded_hw=tuple(lab.shape))
        rows.append(row)
    return rows


def format_oracle_table(
    rows: Sequence[dict],
    class_names: Sequence[str] = CAMVID_CLASSES,
    thin: Sequence[int] = THIN_CLASSES,
) -> str:
    """The rows of ``oracle_table`` as a fixed-width text table. Both cost columns are per
    layer (multiply by the number of layers for the whole encoder; 1 MB = 2^20 bytes); IoUs in %."""

    def pct(x: float) -> str:
        return "   -" if np.isnan(x) else f"{100 * x:4.1f}"

    def num(x: float) -> str:  # 5,339.4 / 21.8 / 1.46 / 0.000442: three significant digits below 10
        return f"{x:,.1f}" if x >= 10 else f"{x:.3g}"

    widths = [max(6, len(class_names[c])) for c in thin]
    head = (f"{'patch':>5} {'padded':>8} {'grid':>7} {'tokens N':>9} {'attn MB':>10} {'attn GFLOPs':>12} "
            f"{'oracle mIoU':>12} " + " ".join(f"{class_names[c]:>{w}}" for c, w in zip(thin, widths)))
    sub = f"{'':>5} {'frame':>8} {'':>7} {'':>9} {'per layer':>10} {'per layer':>12}"
    lines = [head, sub, "-" * len(head)]
    for r in rows:
        (gh, gw), (ph, pw) = r["grid"], r["padded_hw"]
        line = (f"{r['patch']:>5} {f'{ph}x{pw}':>8} {f'{gh}x{gw}':>7} {r['tokens']:>9,} "
                f"{num(r['attn_bytes_per_layer'] / 2**20):>10} {num(r['attn_flops_per_layer'] / 1e9):>12} "
                f"{pct(r['miou']):>12} " + " ".join(f"{pct(r['iou'][c]):>{w}}" for c, w in zip(thin, widths)))
        mark = _marker(r["patch"])
        lines.append(line + (f"   <- {mark}" if mark else ""))
    return "\n".join(lines)


def row_column_similarity(sim: np.ndarray) -> tuple[float, float]:
    """From ``position_embedding_similarity``'s (gh, gw, gh, gw) array: (mean similarity of a
    patch with the other patches of its row or column, mean with the patches that share neither)."""
    s = np.asarray(sim, dtype=np.float64)
    gh, gw = s.shape[:2]
    r = np.arange(gh)[:, None, None, None]
    c = np.arange(gw)[None, :, None, None]
    r2 = np.arange(gh)[None, None, :, None]
    c2 = np.arange(gw)[None, None, None, :]
    same = (r == r2) | (c == c2)
    itself = (r == r2) & (c == c2)
    line = np.broadcast_to(same & ~itself, s.shape)
    other = np.broadcast_to(~same, s.shape)
    return float(s[line].mean()), float(s[other].mean())


def plot_position_similarities(sims: Sequence[np.ndarray], titles: Sequence[str], limits=None, fig=None):
    """Several ``plot_position_similarity`` grids side by side, each in its own subfigure with
    its own colour range ``limits[i]`` = (vmin, vmax) (default (-1, 1))."""
    if fig is None:
        fig = plt.figure(figsize=(4.4 * len(sims), 3.8))
    subs = np.atleast_1d(fig.subfigures(1, len(sims)))
    limits = limits or [(-1.0, 1.0)] * len(sims)
    for sub, sim, title, lim in zip(subs, sims, titles, limits):
        plot_position_similarity(sim, fig=sub)
        for ax in sub.axes:
            for im in ax.get_images():
                im.set_clim(*lim)
        sub.suptitle(title, fontsize=9)
    return fig


__all__ += ["pad_to_multiple", "oracle_table", "format_oracle_table", "row_column_similarity",
            "plot_position_similarities"]
