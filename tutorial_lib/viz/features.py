"""What the CNN notebooks (04 ResNet stages, 05 U-Net decoder) compute and draw.

Receptive fields
    ``trace_layers`` records every conv / pooling layer a model runs (kernel, stride, dilation,
    output shape), ``receptive_field_table`` applies the recursion

        r_l = r_{l-1} + (k_l - 1) * j_{l-1},   j_l = j_{l-1} * s_l,   r_0 = j_0 = 1,

    with the effective kernel k = d (k - 1) + 1 of a dilated layer, and ``gradient_footprint``
    measures the same thing empirically: the input pixels that the gradient of one output unit
    reaches. (The formula would also fit ``tutorial_lib.resnet``; it lives here because it works on
    any model and only the notebooks need it.)

Shapes
    ``capture_outputs`` / ``shape_table`` run a model once with forward hooks;
    ``stage_names`` knows the stage modules of ``ResNet`` and ``ResNetV2``; ``format_table``
    prints rows as aligned text; ``leaf_output_bytes`` adds up the activations a forward pass
    produces.

Feature maps of a real image (the notebook 04 widget)
    ``example_image``, ``channel_order``, ``normalize_maps``, ``select_maps``,
    ``plot_feature_grid``, ``figure_png`` and ``feature_map_widget`` (CSS class
    ``tu-feature-widget``).

Decoder pictures (notebook 05)
    ``bilinear_source_coords`` (where ``align_corners`` samples), ``plot_sampling_positions``,
    ``plot_unet_diagram``.

All numbers come from plain functions checked by ``tests/viz/test_viz_features.py``; the
``plot_*`` functions only draw what those return.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import cbook
from matplotlib.patches import FancyArrowPatch, Rectangle
from torch import nn

__all__ = [
    "LayerInfo",
    "RFRow",
    "effective_kernel",
    "trace_layers",
    "receptive_field_table",
    "stage_of",
    "gradient_footprint",
    "footprint_extent",
    "plot_receptive_fields",
    "stage_names",
    "capture_outputs",
    "shape_table",
    "format_table",
    "leaf_output_bytes",
    "example_image",
    "channel_order",
    "normalize_maps",
    "select_maps",
    "plot_feature_grid",
    "figure_png",
    "feature_map_widget",
    "bilinear_source_coords",
    "plot_sampling_positions",
    "plot_unet_diagram",
]

POOLS = (nn.MaxPool2d, nn.AvgPool2d)


# ------------------------------------------------------------------------------------------
# receptive fields
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerInfo:
    """One conv or pooling layer as run by the model (square kernels only)."""

    name: str  # qualified module name, e.g. "body.block1.unit1.conv2"
    kind: str  # "conv" or "pool"
    kernel: int
    stride: int
    dilation: int = 1
    padding: int = 0
    out_shape: tuple[int, ...] = ()  # (C, H, W) of the layer's output for the traced input

    @property
    def effective_kernel(self) -> int:
        return effective_kernel(self.kernel, self.dilation)


class RFRow(NamedTuple):
    """Receptive field ``rf`` and jump ``jump`` (input pixels between neighbouring units) after a layer."""

    name: str
    kernel: int  # effective kernel d (k - 1) + 1
    stride: int
    rf: int
    jump: int
    out_shape: tuple[int, ...]


def effective_kernel(kernel: int, dilation: int = 1) -> int:
    """A k x k kernel with dilation d spans d (k - 1) + 1 pixels."""
    if kernel < 1 or dilation < 1:
        raise ValueError(f"kernel and dilation must be >= 1, got k={kernel}, d={dilation}")
    return dilation * (kernel - 1) + 1


def _square(value, what: str, name: str) -> int:
    if isinstance(value, int):
        return value
    value = tuple(value)
    if len(set(value)) != 1:
        raise ValueError(f"{name}: {what} {value} is not square; only square layers are supported")
    return int(value[0])


def _layer_info(name: str, module: nn.Module, out_shape: tuple[int, ...]) -> LayerInfo:
    if isinstance(module, nn.Conv2d):
        kind, dilation = "conv", _square(module.dilation, "dilation", name)
    else:
        kind = "pool"
        dilation = _square(getattr(module, "dilation", 1), "dilation", name)
    stride = module.stride if module.stride is not None else module.kernel_size
    padding = module.padding if not isinstance(module.padding, str) else 0
    return LayerInfo(
        name=name,
        kind=kind,
        kernel=_square(module.kernel_size, "kernel", name),
        stride=_square(stride, "stride", name),
        dilation=dilation,
        padding=_square(padding, "padding", name),
        out_shape=out_shape,
    )


def _first_tensor(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _run_eval_then_unhook(model: nn.Module, x: torch.Tensor, handles: list) -> None:
    """One eval-mode, no-grad forward pass; then restore the mode and remove the hooks."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()


def trace_layers(
    model: nn.Module, x: torch.Tensor, skip: Sequence[str] = ("downsample",)
) -> list[LayerInfo]:
    """Run ``model(x)`` once and list its conv and pooling layers in the order they ran.

    Layers whose qualified name has a component in ``skip`` are left out: by default the 1x1
    projection shortcuts of ResNet units, which sit beside the main path and never widen the
    receptive field. A layer run twice is listed twice.
    """
    records: list[LayerInfo] = []
    handles = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, *POOLS)):
            continue
        if any(part in name.split(".") for part in skip):
            continue

        def hook(mod, inputs, out, name=name):
            records.append(_layer_info(name, mod, tuple(_first_tensor(out).shape[1:])))

        handles.append(module.register_forward_hook(hook))
    _run_eval_then_unhook(model, x, handles)
    return records


def receptive_field_table(
    layers: Iterable[LayerInfo | Sequence[int]], r0: int = 1, j0: int = 1
) -> list[RFRow]:
    """Receptive field and jump after each layer.

    ``layers``: :class:`LayerInfo` (from :func:`trace_layers`) or plain ``(k, s)`` /
    ``(k, s, d)`` tuples. Recursion: r_l = r_{l-1} + (k_l - 1) j_{l-1}, j_l = j_{l-1} s_l with
    the effective kernel k_l = d_l (k_l - 1) + 1.
    """
    rows, r, j = [], r0, j0
    for i, layer in enumerate(layers):
        if isinstance(layer, LayerInfo):
            name, k, s, shape = layer.name, layer.effective_kernel, layer.stride, layer.out_shape
        else:
            k, s, d = (tuple(layer) + (1, 1))[:3]
            if s < 1:
                raise ValueError(f"stride must be >= 1, got {layer}")
            name, k, shape = f"layer{i + 1}", effective_kernel(k, d), ()
        r = r + (k - 1) * j
        j = j * s
        rows.append(RFRow(name, k, s, r, j, shape))
    return rows


def stage_of(name: str) -> str:
    """Stage label of a layer name: ``body.block2.unit1.conv1`` -> ``block2``,
    ``stages.0.1.conv2`` -> ``stage1``, stem and pool layers -> ``stem``."""
    parts = name.split(".")
    if parts[0] == "body" and len(parts) > 1:
        return parts[1]
    if parts[0] == "stages" and len(parts) > 1 and parts[1].isdigit():
        return f"stage{int(parts[1]) + 1}"
    if parts[0] in ("root", "stem", "pool"):
        return "stem"
    return parts[0]


def plot_receptive_fields(
    tables: Mapping[str, Sequence[RFRow]], image_size: int | None = None, ax=None
):
    """Receptive field (log scale) against layer index, one line per table; the last layer of
    each stage is marked and labelled; ``image_size`` draws the image side as a dashed line."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.6))
    for n, (label, rows) in enumerate(tables.items()):
        rf = [row.rf for row in rows]
        (line,) = ax.plot(range(1, len(rf) + 1), rf, label=label, lw=1.6)
        stages = [stage_of(row.name) for row in rows]
        ends = [i for i in range(len(rows)) if i == len(rows) - 1 or stages[i + 1] != stages[i]]
        ax.plot([i + 1 for i in ends], [rf[i] for i in ends], "o", color=line.get_color(), ms=4)
        for i in ends:  # labels of even lines above-left of the curve, odd lines below-right
            below_right = n % 2 == 1 and i != len(rows) - 1
            ax.annotate(f"{stages[i]}: {rf[i]}", (i + 1, rf[i]), textcoords="offset points",
                        xytext=(5, -10) if below_right else (-4, 5 if n % 2 == 0 else -11),
                        ha="left" if below_right else "right", fontsize=7, color=line.get_color())
    if image_size is not None:
        ax.axhline(image_size, color="k", ls="--", lw=1)
        ax.text(1, image_size * 1.08, f"image side {image_size} px", fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("conv / pool layer along the main path")
    ax.set_ylabel("receptive field (px)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return ax


def gradient_footprint(
    model: nn.Module,
    input_size: int | tuple[int, int],
    channel: int | None = 0,
    position: tuple[int, int] | None = None,
    in_channels: int = 1,
    x: torch.Tensor | None = None,
) -> torch.Tensor:
    """|d y[channel, position] / d input|, summed over input channels: an (H, W) tensor.

    One output unit is differentiated with respect to the whole input (ones by default, or
    ``x``); the pixels with a non-zero gradient are the ones that unit can see. ``position``
    defaults to the centre of the output map; ``channel=None`` differentiates the sum over all
    channels at that position (a single unit behind a ReLU may be off and have no gradient).
    The model is run in eval mode (BatchNorm then is a fixed affine map and cannot mix batch
    elements).
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    if x is None:
        x = torch.ones(1, in_channels, h, w)
    x = x.detach().clone().requires_grad_(True)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            y = _first_tensor(model(x))
            i, j = position if position is not None else (y.shape[-2] // 2, y.shape[-1] // 2)
            unit = y[0, :, i, j].sum() if channel is None else y[0, channel, i, j]
            (grad,) = torch.autograd.grad(unit, x)
    finally:
        model.train(was_training)
    return grad[0].abs().sum(0)


def footprint_extent(footprint: torch.Tensor, rel_tol: float = 0.0) -> tuple[int, int]:
    """(height, width) of the bounding box of the entries above ``rel_tol * max``."""
    fp = torch.as_tensor(footprint)
    mask = fp > rel_tol * fp.max() if rel_tol > 0 else fp != 0
    if not mask.any():
        return 0, 0
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


# ------------------------------------------------------------------------------------------
# shapes
# ------------------------------------------------------------------------------------------
def stage_names(model: nn.Module, include_pool: bool = True) -> dict[str, str]:
    """label -> module name of the stage outputs of a ``ResNetV2`` (stem, pool, block1..) or a
    ``ResNet`` (stem, stage1..). Other models: their direct children."""
    children = dict(model.named_children())
    if "root" in children and "body" in children:  # ResNetV2
        names = {"stem": "root"}
        if include_pool:
            names["pool"] = "pool"
        names.update({b: f"body.{b}" for b, _ in model.body.named_children()})
        return names
    if "stem" in children and "stages" in children:  # ResNet
        names = {"stem": "stem"}
        names.update({f"stage{i + 1}": f"stages.{i}" for i in range(len(model.stages))})
        return names
    return {name: name for name in children}


def capture_outputs(
    model: nn.Module, x: torch.Tensor, names: Mapping[str, str] | Sequence[str]
) -> dict[str, torch.Tensor]:
    """Run ``model(x)`` once (eval mode, no grad) and return the outputs of the named modules.

    ``names``: label -> module name, or a list of module names (used as labels). The outputs
    are cloned, so later in-place operations (``ReLU(inplace=True)``) cannot change them.
    """
    if not isinstance(names, Mapping):
        names = {n: n for n in names}
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for label, name in names.items():
        module = model.get_submodule(name)

        def hook(mod, inputs, out, label=label):
            outputs[label] = _first_tensor(out).detach().clone()

        handles.append(module.register_forward_hook(hook))
    _run_eval_then_unhook(model, x, handles)
    missing = [label for label in names if label not in outputs]
    if missing:
        raise RuntimeError(f"modules {missing} were never called in the forward pass")
    return {label: outputs[label] for label in names}


def shape_table(
    model: nn.Module, x: torch.Tensor, names: Mapping[str, str] | Sequence[str] | None = None
) -> list[tuple[str, str, tuple[int, ...]]]:
    """Rows (label, module name, output shape) for the stage outputs (default
    :func:`stage_names`) of one forward pass of ``x``."""
    if names is None:
        names = stage_names(model)
    if not isinstance(names, Mapping):
        names = {n: n for n in names}
    outs = capture_outputs(model, x, names)
    return [(label, names[label], tuple(outs[label].shape)) for label in names]


def _cell(value) -> str:
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        return " x ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def format_table(rows: Iterable[Sequence], headers: Sequence[str]) -> str:
    """Rows as an aligned plain-text table; tuples of ints print as ``64 x 112 x 112``."""
    text = [[_cell(v) for v in row] for row in rows]
    cols = list(zip(*([list(headers)] + text))) if text else [[h] for h in headers]
    widths = [max(len(c) for c in col) for col in cols]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(list(headers)), line(["-" * w for w in widths])]
    out += [line(r) for r in text]
    return "\n".join(out)


def leaf_output_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of all tensors produced by leaf modules in one forward pass of ``x``.

    A rough measure of the activations a training step keeps for backward. Outputs that share
    storage with their input (in-place ReLU) are counted once. Works on the ``meta`` device
    (shapes only, nothing computed).
    """
    total = 0
    handles = []

    def hook(mod, inputs, out):
        nonlocal total
        out = _first_tensor(out)
        inp = inputs[0] if inputs else None
        if isinstance(inp, torch.Tensor) and (
            out is inp or (out.device.type != "meta" and out.data_ptr() == inp.data_ptr())
        ):
            return
        total += out.numel() * out.element_size()

    for module in model.modules():
        if not list(module.children()):
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


# ------------------------------------------------------------------------------------------
# feature maps of a real image
# ------------------------------------------------------------------------------------------
def _fit(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre-crop (3, H, W) to the aspect ratio of ``size`` and resize (antialiased bilinear)."""
    h, w = image.shape[-2:]
    th, tw = size
    if h * tw > w * th:  # too tall
        ch, cw = round(w * th / tw), w
    else:
        ch, cw = h, round(h * tw / th)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = image[:, top:top + ch, left:left + cw]
    out = F.interpolate(crop[None], size=size, mode="bilinear", align_corners=False,
                        antialias=True)[0]
    return out.clamp(0, 1)


def example_image(
    size: tuple[int, int] = (192, 256), split: str = "val", index: int = 0, use_camvid: bool = True
) -> tuple[torch.Tensor, str]:
    """A real photo as a float (3, H, W) tensor in [0, 1], and where it came from.

    A CamVid frame (``split``, ``index``) when ``tutorial_lib.data.camvid_dir()`` finds the data,
    else matplotlib's Grace Hopper sample. Centre-cropped to the aspect of ``size``, then
    resized. Nothing is downloaded.
    """
    if use_camvid:
        # the data package imports albumentations, which would otherwise check PyPI for updates
        os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
        from ..data import CamVid, camvid_dir

        root = camvid_dir()
        if root is not None and root.is_dir():
            try:
                ds = CamVid(root, split=split, max_images=index + 1)
                image, _ = ds[index]
                return _fit(image, size), f"CamVid {split} frame {ds.pairs[index][0].stem}"
            except (OSError, ValueError, IndexError):
                pass  # unreadable data: fall back to the sample image
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        img = plt.imread(f, format="jpeg")
    image = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255.0
    return _fit(image, size), "grace_hopper.jpg (matplotlib sample data)"


def channel_order(maps: torch.Tensor, order: str = "variance") -> torch.Tensor:
    """Channel indices of (C, H, W) maps: ``"variance"`` = highest spatial variance first (the
    channels that respond to the image's structure), ``"index"`` = 0, 1, 2, ..."""
    if maps.ndim != 3:
        raise ValueError(f"expected (C, H, W) maps, got shape {tuple(maps.shape)}")
    if order == "index":
        return torch.arange(maps.shape[0])
    if order == "variance":
        var = maps.flatten(1).var(1, unbiased=False)
        return torch.sort(var, descending=True, stable=True).indices
    raise ValueError(f"unknown order {order!r}; use 'variance' or 'index'")


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Each (H, W) map of a (C, H, W) tensor scaled to [0, 1] by its own min and max (a constant
    map becomes 0), so maps of very different magnitude can share one colour scale."""
    flat = maps.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    span = (hi - lo).clamp(min=1e-12)
    out = (flat - lo[:, None]) / span[:, None]
    out[(hi - lo) <= 1e-12] = 0.0
    return out.view_as(maps)


def select_maps(
    maps: torch.Tensor, start: int = 0, count: int = 8, order: str = "variance"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` channels starting at position ``start`` of :func:`channel_order`, normalised:
    (channel indices (n,), maps (n, H, W) in [0, 1]). ``start`` is clamped to the valid range."""
    idx = channel_order(maps, order)
    start = max(0, min(int(start), maps.shape[0] - count))
    chosen = idx[start:start + count]
    return chosen, normalize_maps(maps[chosen])


def plot_feature_grid(
    maps: torch.Tensor,
    channels: Sequence[int],
    image: torch.Tensor | None = None,
    ncols: int = 4,
    title: str | None = None,
    cmap: str = "viridis",
    panel: float = 1.6,
):
    """Draw normalised (n, H, W) ``maps`` labelled by ``channels``; with ``image`` (3, H, W)
    the input photo comes first. Returns the figure."""
    n = len(maps) + (image is not None)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    h, w = maps.shape[-2:]
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel * ncols * w / h + 0.2,
                                                    (panel + 0.25) * nrows + (0.3 if title else 0)),
                             squeeze=False, layout="constrained")
    axes = axes.ravel()
    k = 0
    if image is not None:
        axes[0].imshow(image.permute(1, 2, 0).numpy())
        axes[0].set_title("input", fontsize=8)
        k = 1
    for m, c in zip(maps, channels):
        axes[k].imshow(m.numpy(), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        axes[k].set_title(f"channel {int(c)}", fontsize=8)
        k += 1
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[k:]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def figure_png(fig, dpi: float | None = None) -> bytes:
    """The figure as PNG bytes (at ``dpi``, default ``rcParams["figure.dpi"]``); closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or plt.rcParams["figure.dpi"])
    plt.close(fig)
    return buf.getvalue()


def feature_map_widget(
    activations: Mapping[str, torch.Tensor],
    image: torch.Tensor | None = None,
    count: int = 8,
    stage: str | None = None,
):
    """ipywidgets box (CSS class ``tu-feature-widget``): pick a stage and the first channel,
    see ``count`` normalised feature maps. ``activations``: stage label -> (C, H, W) maps.

    The view is a PNG in a ``widgets.Image`` that is redrawn when a control changes. (No
    ``Output`` widget: its captured-output messages can stall headless notebook execution.)
    The returned box has ``render(stage, start, order)`` (draws one view as a figure, for tests
    and static copies), ``controls`` (the three input widgets) and ``image``.
    """
    import ipywidgets as widgets

    labels = list(activations)
    stage = stage if stage is not None else labels[min(1, len(labels) - 1)]
    options = [(f"{k}  ({' x '.join(str(s) for s in v.shape)})", k) for k, v in activations.items()]

    def max_start(label):
        return max(0, activations[label].shape[0] - count)

    stage_w = widgets.Dropdown(options=options, value=stage, description="stage")
    start_w = widgets.IntSlider(value=0, min=0, max=max_start(stage), step=1,
                                description="first", continuous_update=False)
    order_w = widgets.ToggleButtons(
        options=[("most varied first", "variance"), ("channel index", "index")],
        value="variance", description="order",
    )
    image_w = widgets.Image(format="png")

    def render(stage, start, order):
        maps = activations[stage]
        chosen, shown = select_maps(maps, start, count, order)
        first = int(min(max(start, 0), max_start(stage)))
        rank = "" if order == "index" else f", ranks {first}-{first + len(chosen) - 1} by variance"
        return plot_feature_grid(
            shown, chosen.tolist(), image=image, ncols=(count + 2) // 2,
            title=f"{stage}: {maps.shape[0]} channels at {maps.shape[1]} x {maps.shape[2]}{rank}",
        )

    busy = False

    def update(change=None):
        nonlocal busy
        if busy:  # a change made below (slider range) must not redraw twice
            return
        busy = True
        try:
            if change is not None and change["owner"] is stage_w:
                start_w.max = max_start(stage_w.value)
                start_w.value = min(start_w.value, start_w.max)
            image_w.value = figure_png(render(stage_w.value, start_w.value, order_w.value))
        finally:
            busy = False

    for w in (stage_w, start_w, order_w):
        w.observe(update, names="value")
    update()

    box = widgets.VBox([widgets.HBox([stage_w, start_w]), order_w, image_w])
    box.add_class("tu-feature-widget")
    box.render = render
    box.controls = {"stage": stage_w, "start": start_w, "order": order_w}
    box.image = image_w
    return box


# ------------------------------------------------------------------------------------------
# decoder pictures
# ------------------------------------------------------------------------------------------
def bilinear_source_coords(out_size: int, in_size: int, align_corners: bool) -> np.ndarray:
    """Input coordinate (pixel centres at 0 .. in_size-1) that each output pixel samples in
    PyTorch's (bi)linear interpolation, clamped to the image as PyTorch does.

    align_corners=True:  x_in = x_out (in - 1) / (out - 1)  (corner pixel centres coincide)
    align_corners=False: x_in = (x_out + 0.5) in / out - 0.5 (pixel edges coincide)
    """
    i = np.arange(out_size, dtype=np.float64)
    if align_corners:
        x = i * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros(1)
    else:
        x = (i + 0.5) * in_size / out_size - 0.5
    return np.clip(x, 0, in_size - 1)


def plot_sampling_positions(in_size: int = 4, scale: int = 2, ax=None):
    """Input pixels (squares, centres at integers) and where the ``scale``x larger output samples
    them with align_corners=True (top) and False (bottom), drawn along one image axis."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 2.2))
    out_size = in_size * scale
    for row, ac in ((1.0, True), (0.0, False)):
        for p in range(in_size):
            ax.add_patch(Rectangle((p - 0.5, row - 0.3), 1, 0.6, fill=False, ec="0.6"))
            ax.plot(p, row, "s", color="0.4", ms=7)
        xs = bilinear_source_coords(out_size, in_size, ac)
        raw = (np.arange(out_size) + 0.5) / scale - 0.5
        ax.plot(xs, np.full_like(xs, row), "o", color="C3" if ac else "C0", ms=5, mfc="none",
                mew=1.5)
        if not ac:  # show where the two outermost samples would fall before clamping
            outside = (raw < 0) | (raw > in_size - 1)
            ax.plot(raw[outside], np.full(outside.sum(), row), "x", color="C0", ms=5)
        ax.text(-0.7, row, f"align_corners={ac}", ha="right", va="center", fontsize=8)
    ax.set_xlim(-2.6, in_size - 0.3)
    ax.set_ylim(-0.6, 1.6)
    ax.set_yticks([])
    ax.set_xticks(range(in_size))
    ax.set_xlabel("input coordinate (pixel centres); squares: input pixels, circles: output samples")
    for s in ("left", "right", "top"):
        ax.spines[s].set_visible(False)
    return ax


def plot_unet_diagram(
    encoder: Sequence[tuple[str, int, int]],
    decoder: Sequence[tuple[str, int, int]],
    skips: Sequence[tuple[int, int]] = (),
    ax=None,
):
    """A U-shaped block diagram.

    ``encoder``: (name, channels, side) from full resolution down to the bottleneck;
    ``decoder``: (name, channels, side) from just above the bottleneck up to full resolution;
    ``skips``: (encoder index, decoder index) pairs drawn as horizontal arrows (concatenation).
    Boxes sit at a height given by the resolution level log2(side), so equal sizes line up.
    """
    if ax is None:
        n = len(encoder) + len(decoder)
        _, ax = plt.subplots(figsize=(0.8 * n + 0.4, 0.75 * (len(encoder) + 0.5)))
    top = np.log2(max(s for _, _, s in [*encoder, *decoder]))

    def y_of(side):
        return -(top - np.log2(side))

    def box(x, name, ch, side, colour):
        y = y_of(side)
        ax.add_patch(Rectangle((x - 0.46, y - 0.3), 0.92, 0.6, fc=colour, ec="k", lw=0.8))
        ax.text(x, y + 0.08, name, ha="center", va="center", fontsize=7, weight="bold")
        ax.text(x, y - 0.14, f"{ch} x {side}²", ha="center", va="center", fontsize=7)
        return x, y

    enc_pos = [box(float(i), n, c, s, "#cfe3f7") for i, (n, c, s) in enumerate(encoder)]
    x0 = enc_pos[-1][0] + 1.2
    dec_pos = [box(x0 + i, n, c, s, "#f9dcc4") for i, (n, c, s) in enumerate(decoder)]

    def arrow(a, b, **kw):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=9, lw=1, **kw))

    def link(a, b):  # from box a to box b: sideways at equal height, else corner to corner
        (xa, ya), (xb, yb) = a, b
        if abs(ya - yb) < 1e-9:
            arrow((xa + 0.46, ya), (xb - 0.46, yb), color="k")
        else:
            dy = 0.3 if yb > ya else -0.3
            arrow((xa + 0.2, ya + dy), (xb - 0.2, yb - dy), color="k")

    chain = enc_pos + dec_pos
    for a, b in zip(chain, chain[1:]):
        link(a, b)
    for e, d in skips:
        (xa, ya), (xb, yb) = enc_pos[e], dec_pos[d]
        arrow((xa + 0.46, ya), (xb - 0.46, yb), color="C2", ls="--")
    xs = [p[0] for p in enc_pos + dec_pos]
    ys = [p[1] for p in enc_pos + dec_pos]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax
