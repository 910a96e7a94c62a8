"""What the attention notebooks (01 and 02) compute and draw.

Every widget in those notebooks calls one function from here. The numbers come from plain functions
(``receptive_field``, ``softmax_saturation``, ``nonlocal_attention_map``, ``relative_offset_maps``,
``attention_matrix_bytes``, ``saved_tensor_bytes``), which the tests in
``tests/viz/test_viz_attention.py`` check; the ``plot_*`` functions only draw what those return.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import cbook
from matplotlib.patches import Rectangle

__all__ = [
    "receptive_field",
    "sample_image",
    "plot_receptive_fields",
    "softmax_saturation",
    "saturation_curve",
    "plot_softmax_saturation",
    "plot_saturation_curve",
    "plot_weights_matrix",
    "colour_features",
    "nonlocal_attention_map",
    "plot_attention_overlay",
    "relative_offset_maps",
    "plot_head_maps",
    "attention_matrix_bytes",
    "saved_tensor_bytes",
    "plot_loglog",
]


# --------------------------------------------------------------------------------------------
# Receptive fields
# --------------------------------------------------------------------------------------------


def receptive_field(layers: Iterable[int | Sequence[int]]) -> int:
    """Theoretical receptive field (pixels along one side) of a stack of conv or pooling layers.

    Each layer is a kernel size ``k`` (stride 1, dilation 1), a pair ``(k, stride)`` or a triple
    ``(k, stride, dilation)``. With the jump j (distance in input pixels between neighbouring units)
    the recursion is r_l = r_{l-1} + (k_l - 1) * d_l * j_{l-1} and j_l = j_{l-1} * s_l, from r_0 = j_0 = 1.
    """
    r, jump = 1, 1
    for layer in layers:
        k, s, d = (layer, 1, 1) if isinstance(layer, int) else (tuple(layer) + (1, 1))[:3]
        if k < 1 or s < 1 or d < 1:
            raise ValueError(f"kernel, stride and dilation must be >= 1, got {layer}")
        r += (k - 1) * d * jump
        jump *= s
    return r


def sample_image(size: tuple[int, int] | None = (75, 64)) -> np.ndarray:
    """Grace Hopper (matplotlib's sample data, 600 x 512) as float32 (H, W, 3) in [0, 1].

    ``size=(H, W)`` averages pixel blocks down to that size (area interpolation); ``None`` keeps
    the full resolution.
    """
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        img = plt.imread(f, format="jpeg")
    img = img.astype(np.float32) / 255.0
    if size is None:
        return img
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    t = F.interpolate(t, size=tuple(size), mode="area")
    return t[0].permute(1, 2, 0).numpy().copy()


def plot_receptive_fields(
    image: np.ndarray, sizes: Mapping[str, int], centre_xy: tuple[int, int] | None = None, ax=None
):
    """Draw one square per entry of ``sizes`` (label -> receptive field in pixels), centred on
    ``centre_xy`` (default: the middle), on a grey version of ``image``."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4.5))
    h, w = image.shape[:2]
    cx, cy = centre_xy if centre_xy is not None else (w // 2, h // 2)
    # grey photo, coloured squares (and a much smaller PNG than a colour photo)
    grey = np.asarray(image).mean(-1) if np.ndim(image) == 3 else np.asarray(image)
    ax.imshow(grey, cmap="gray", vmin=0, vmax=1)
    colours = plt.cm.autumn(np.linspace(0, 0.85, max(len(sizes), 1)))
    for (label, r), c in zip(sizes.items(), colours):
        ax.add_patch(
            Rectangle((cx - r / 2, cy - r / 2), r, r, fill=False, lw=2, ec=c, label=f"{label}: {r} px")
        )
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="lower left", fontsize=8, framealpha=0.85)
    return ax


# --------------------------------------------------------------------------------------------
# Why sqrt(d_k): softmax saturation
# --------------------------------------------------------------------------------------------


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def softmax_saturation(
    d_k: int, scaled: bool = True, n_keys: int = 64, n_queries: int = 512, seed: int = 0
) -> dict:
    """Attention weights of random queries over random keys, with or without the 1/sqrt(d_k).

    Queries and keys have independent N(0, 1) entries, so a score q.k has variance d_k, and
    q.k / sqrt(d_k) has variance 1. Returns a dict with ``entropy`` (mean over the queries, in nats;
    log(n_keys) is uniform, 0 is one-hot), ``max_weight`` (mean of each query's largest weight),
    ``saturated_fraction`` (queries whose largest weight exceeds 0.99), ``jacobian_norm`` (median
    over the queries of the Frobenius norm of the softmax Jacobian diag(a) - a a^T: how much
    gradient reaches the scores; it vanishes when the softmax saturates), ``score_std`` (std of
    the scores that enter the softmax), ``max_entropy`` = log(n_keys) and ``weights``
    (n_queries, n_keys).
    """
    if d_k < 1 or n_keys < 1 or n_queries < 1:
        raise ValueError("d_k, n_keys and n_queries must be positive")
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n_queries, d_k))
    k = rng.standard_normal((n_keys, d_k))
    scores = q @ k.T
    if scaled:
        scores = scores / math.sqrt(d_k)
    a = _softmax(scores)
    entropy = -(a * np.log(np.clip(a, 1e-300, None))).sum(-1)
    # ||diag(a) - a a^T||_F^2 = sum a^2 - 2 sum a^3 + (sum a^2)^2
    s2, s3 = (a**2).sum(-1), (a**3).sum(-1)
    jac = np.sqrt(np.clip(s2 - 2 * s3 + s2**2, 0.0, None))
    return {
        "entropy": float(entropy.mean()),
        "max_weight": float(a.max(-1).mean()),
        "saturated_fraction": float((a.max(-1) > 0.99).mean()),
        "jacobian_norm": float(np.median(jac)),
        "score_std": float(scores.std()),
        "max_entropy": math.log(n_keys),
        "weights": a,
    }


def saturation_curve(
    d_ks: Sequence[int], n_keys: int = 64, n_queries: int = 512, seed: int = 0
) -> dict[str, np.ndarray]:
    """``softmax_saturation`` over several d_k, scaled and unscaled: arrays keyed
    ``d_k``, ``entropy_scaled``, ``entropy_unscaled``, ``jacobian_scaled``, ``jacobian_unscaled``."""
    out: dict[str, list] = {k: [] for k in ("entropy_scaled", "entropy_unscaled",
                                            "jacobian_scaled", "jacobian_unscaled")}
    for d in d_ks:
        for scaled, tag in ((True, "scaled"), (False, "unscaled")):
            r = softmax_saturation(d, scaled, n_keys, n_queries, seed)
            out[f"entropy_{tag}"].append(r["entropy"])
            out[f"jacobian_{tag}"].append(r["jacobian_norm"])
    res = {k: np.asarray(v) for k, v in out.items()}
    res["d_k"] = np.asarray(list(d_ks))
    res["max_entropy"] = math.log(n_keys)
    return res


def plot_softmax_saturation(d_k: int, scaled: bool, n_keys: int = 64, seed: int = 0):
    """Two panels for one d_k: the sorted weights of three queries, and a histogram of each
    query's largest weight. Returns the figure."""
    r = softmax_saturation(d_k, scaled, n_keys=n_keys, seed=seed)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8.5, 2.8))
    ranks = np.arange(1, n_keys + 1)
    for i in range(3):
        ax1.plot(ranks, np.sort(r["weights"][i])[::-1], marker=".", ms=3, label=f"query {i}")
    ax1.axhline(1 / n_keys, color="grey", ls=":", lw=1, label="uniform 1/M")
    ax1.set_xscale("log")
    ax1.set_ylim(0, 1.02)
    ax1.set_xlabel("key rank (largest weight first)")
    ax1.set_ylabel("attention weight")
    ax1.legend(fontsize=7)
    ax2.hist(r["weights"].max(-1), bins=np.linspace(0, 1, 26), color="tab:purple")
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("largest weight of a query")
    ax2.set_ylabel("queries")
    how = "QK^T/sqrt(d_k)" if scaled else "QK^T (unscaled)"
    fig.suptitle(
        f"d_k = {d_k}, {how}: entropy {r['entropy']:.2f} of max {r['max_entropy']:.2f} nats, "
        f"mean largest weight {r['max_weight']:.2f}, {100 * r['saturated_fraction']:.0f}% of queries > 0.99",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def plot_saturation_curve(curve: Mapping[str, np.ndarray], axes=None):
    """Entropy and softmax-Jacobian norm against d_k, scaled vs unscaled (output of ``saturation_curve``)."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(8.5, 2.8))
    d = curve["d_k"]
    ax1, ax2 = axes
    ax1.plot(d, curve["entropy_scaled"], "o-", label="scaled by 1/sqrt(d_k)")
    ax1.plot(d, curve["entropy_unscaled"], "s--", label="unscaled")
    ax1.axhline(curve["max_entropy"], color="grey", ls=":", lw=1, label="uniform (log M)")
    ax1.set_ylabel("entropy of the weights (nats)")
    ax2.plot(d, curve["jacobian_scaled"], "o-", label="scaled")
    ax2.plot(d, curve["jacobian_unscaled"], "s--", label="unscaled")
    ax2.set_ylabel("median ||softmax Jacobian||_F")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("d_k")
        ax.legend(fontsize=7)
    ax.figure.tight_layout()
    return axes


# --------------------------------------------------------------------------------------------
# Attention weights as a picture
# --------------------------------------------------------------------------------------------


def plot_weights_matrix(
    weights,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    ax=None,
    title: str | None = None,
    annotate: bool = True,
):
    """An (N, M) attention matrix as an image: rows are queries, columns keys, each row sums to 1."""
    w = weights.detach().cpu().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights)
    if w.ndim != 2:
        raise ValueError(f"expected an (N, M) matrix, got shape {w.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.5 * w.shape[1] + 1.5, 0.5 * w.shape[0] + 1))
    ax.imshow(w, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(w.shape[1]), col_labels if col_labels is not None else range(w.shape[1]))
    ax.set_yticks(range(w.shape[0]), row_labels if row_labels is not None else range(w.shape[0]))
    ax.tick_params(axis="x", labelrotation=45)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if annotate and w.size <= 144:
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if w[i, j] > 0.6 else "black")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


# --------------------------------------------------------------------------------------------
# A Non-local block on an image
# --------------------------------------------------------------------------------------------


def colour_features(image: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """(H, W, 3) image -> (H, W, 3) features: each channel standardised over the image, then each
    pixel's vector scaled to unit length, so that a dot product is a cosine similarity of colours."""
    x = np.asarray(image, dtype=np.float64)
    x = (x - x.mean(axis=(0, 1))) / (x.std(axis=(0, 1)) + eps)
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + eps)


def nonlocal_attention_map(
    image: np.ndarray,
    query_xy: tuple[int, int],
    temperature: float = 0.1,
    sigma: float | None = None,
) -> np.ndarray:
    """Where pixel ``query_xy = (x, y)`` attends in an embedded-Gaussian Non-local operation.

    f(x_i, x_j) = exp(theta(x_i) . phi(x_j)) with theta(x) = u(x) / temperature and phi(x) = u(x),
    u = ``colour_features``; normalised by C(x) = sum_j f(x_i, x_j), i.e. a softmax over all pixels j.
    ``sigma`` (pixels) multiplies f by a Gaussian of the distance to the query,
    exp(-|p_i - p_j|^2 / (2 sigma^2)), which makes the operation local again; ``None`` leaves it
    purely non-local. Returns the (H, W) weights (they sum to 1).
    """
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    h, w = image.shape[:2]
    x, y = query_xy
    if not (0 <= x < w and 0 <= y < h):
        raise ValueError(f"query {query_xy} lies outside the {w} x {h} image")
    u = colour_features(image)
    scores = (u @ u[y, x]) / temperature
    if sigma is not None:
        yy, xx = np.mgrid[0:h, 0:w]
        scores = scores - ((yy - y) ** 2 + (xx - x) ** 2) / (2.0 * sigma**2)
    flat = _softmax(scores.reshape(-1))
    return flat.reshape(h, w)


def plot_attention_overlay(
    image: np.ndarray,
    attn: np.ndarray,
    query_xy: tuple[int, int] | None = None,
    ax=None,
    title: str | None = None,
    cmap: str = "inferno",
):
    """The image, with the attention map drawn over it: opaque where the weight is large,
    transparent where it is small (scaled to the map's maximum). A cyan cross marks the query."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3.6))
    a = np.asarray(attn, dtype=np.float64)
    a = a / a.max() if a.max() > 0 else a
    h, w = a.shape
    rgba = plt.get_cmap(cmap)(a)
    rgba[..., 3] = 0.9 * np.sqrt(a)
    ax.imshow(np.asarray(image) * 0.55 + 0.15, interpolation="nearest")
    ax.imshow(rgba, interpolation="nearest")
    if query_xy is not None:
        ax.plot(*query_xy, marker="+", color="cyan", ms=14, mew=2.5)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax


# --------------------------------------------------------------------------------------------
# What heads attend to
# --------------------------------------------------------------------------------------------


def relative_offset_maps(weights, grid: tuple[int, int]) -> np.ndarray:
    """Average attention by relative offset on a (H, W) grid of tokens that wraps around (a torus).

    ``weights``: (..., N, N) with N = H * W in row-major order. Entry [..., H//2 + dy, W//2 + dx]
    of the result is the mean over all queries of the weight they give to the token dy rows below
    and dx columns right of them (modulo the grid); the centre is the query itself.
    """
    w = weights.detach().cpu().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights)
    h, wd = grid
    n = h * wd
    if w.shape[-1] != n or w.shape[-2] != n:
        raise ValueError(f"weights end in {w.shape[-2:]}, expected ({n}, {n}) for a {h}x{wd} grid")
    w = w.reshape(*w.shape[:-2], h, wd, h, wd)
    out = np.zeros((*w.shape[:-4], h, wd), dtype=np.float64)
    for qy in range(h):
        for qx in range(wd):
            # key map of this query, rolled so that the query sits at (h//2, wd//2)
            out += np.roll(w[..., qy, qx, :, :], shift=(h // 2 - qy, wd // 2 - qx), axis=(-2, -1))
    return out / n


def plot_head_maps(
    maps,
    titles: Sequence[str] | None = None,
    marker_xy: tuple[int, int] | None = None,
    axes=None,
    row_label: str | None = None,
    cmap: str = "viridis",
):
    """One heat map per head, side by side, on a shared colour scale (0 .. the largest value).
    ``maps``: (h, H, W). ``marker_xy`` (x, y) draws a red ring, e.g. at the query."""
    m = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    n_heads = m.shape[0]
    if axes is None:
        _, axes = plt.subplots(1, n_heads, figsize=(2.1 * n_heads, 2.3), squeeze=False)
        axes = axes[0]
    vmax = float(m.max())
    for i, ax in enumerate(axes):
        ax.imshow(m[i], cmap=cmap, vmin=0, vmax=vmax)
        if marker_xy is not None:
            ax.plot(*marker_xy, "o", mfc="none", mec="red", ms=12, mew=2)
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    if row_label:
        axes[0].set_ylabel(row_label, fontsize=9)
    return axes


# --------------------------------------------------------------------------------------------
# The quadratic cost
# --------------------------------------------------------------------------------------------


def attention_matrix_bytes(
    n_tokens: int, num_heads: int = 1, batch: int = 1, bytes_per_element: int = 4
) -> int:
    """Bytes of the attention weights softmax(QK^T/sqrt(d_k)): batch * heads * N * N elements."""
    return int(batch) * int(num_heads) * int(n_tokens) ** 2 * int(bytes_per_element)


def saved_tensor_bytes(fn: Callable[..., torch.Tensor], *args, **kwargs) -> tuple[torch.Tensor, int]:
    """Run ``fn(*args, **kwargs)`` and measure what autograd keeps for the backward pass.

    Every tensor the graph saves passes through a ``saved_tensors_hooks`` pack hook; storages are
    counted once (a tensor saved by two ops, or a view of another, is not counted twice).
    Returns (output, bytes). This is the activation memory a layer holds from its forward pass
    until backward; the peak during the pass is higher by the short-lived temporaries.
    """
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor):
        s = t.untyped_storage()
        storages[s.data_ptr()] = max(storages.get(s.data_ptr(), 0), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*args, **kwargs)
    return out, int(sum(storages.values()))


def plot_loglog(
    ns: Sequence[float],
    series: Mapping[str, Sequence[float]],
    ylabel: str,
    ax=None,
    ref_slope: float | None = 2.0,
    title: str | None = None,
):
    """Curves against N on log-log axes, plus a reference line of slope ``ref_slope`` through the
    last point of the first series (on log-log axes, y ~ N^2 is a straight line of slope 2)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 3.2))
    ns = np.asarray(ns, dtype=np.float64)
    markers = "osd^v"
    for i, (label, ys) in enumerate(series.items()):
        ax.plot(ns, np.asarray(ys, dtype=np.float64), marker=markers[i % len(markers)], label=label)
    if ref_slope is not None and series:
        y0 = np.asarray(next(iter(series.values())), dtype=np.float64)[-1]
        ax.plot(ns, y0 * (ns / ns[-1]) ** ref_slope, "k:", lw=1,
                label=f"slope {ref_slope:g} (~ N^{ref_slope:g})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length N")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return ax
