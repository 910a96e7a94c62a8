"""Pictures and widgets of notebook 07: CamVid data, training curves, evaluation, predictions,
and where a trained TransUNet attends on real road scenes.

Data
    ``plot_samples`` (images over colour-coded labels), ``plot_class_legend``,
    ``plot_class_frequencies`` (pixel share per class and the class weights it implies).
The label bug of the blog version
    ``red_channel_groups`` (which classes share a red value), ``red_channel_ambiguity``
    (share of pixels whose class the red channel cannot tell), ``plot_red_channel_bug``.
Training
    ``LiveTrainingPlot``: a callback for ``tutorial_lib.train.train`` that redraws loss and
    val mIoU while training runs (the engine itself stays headless);
    ``plot_training_curves`` draws the same figure from the history afterwards.
Evaluation
    ``plot_per_class_iou``, ``plot_confusion_matrix``; ``image_scores`` (one image's pixel
    accuracy and mIoU).
Predictions (widget CSS class ``tu-prediction-widget``)
    ``blend``, ``error_mask``, ``plot_prediction``, ``prediction_widget``.
Attention on CamVid (widget CSS class ``tu-camvid-attention-widget``)
    ``transunet_attention`` (per-layer weights of one image), ``label_grid`` (majority class
    per token), ``attention_by_class``, ``plot_camvid_attention``, ``camvid_attention_widget``.

Every widget draws a PNG into a ``widgets.Image`` (no ``Output`` widget: its captured output
can stall headless notebook execution) and has a ``render(...)`` that returns the same
figure for tests and static copies.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Patch

from ..data.classes import CAMVID_CLASSES, CAMVID_COLORS, IGNORE_INDEX, colorize
from ..data.stats import ClassFrequencies
from ..metrics import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy
from .features import figure_png
from .patches import (
    attention_map_for_query,
    draw_attention,
    majority_label_per_patch,
    query_cell,
    rollout_map_for_query,
)

__all__ = [
    "LiveTrainingPlot",
    "attention_by_class",
    "attention_head_summary",
    "blend",
    "camvid_attention_widget",
    "error_mask",
    "image_scores",
    "label_grid",
    "plot_camvid_attention",
    "plot_class_frequencies",
    "plot_class_legend",
    "plot_confusion_matrix",
    "plot_per_class_iou",
    "plot_prediction",
    "plot_red_channel_bug",
    "plot_samples",
    "plot_training_curves",
    "prediction_widget",
    "red_channel_ambiguity",
    "red_channel_groups",
    "transunet_attention",
]

_COLORS = np.asarray(CAMVID_COLORS, dtype=np.float64) / 255.0


def _image01(image) -> np.ndarray:
    """uint8 or float image (H, W, 3) -> float64 in [0, 1]."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return np.clip(image.astype(np.float64), 0.0, 1.0)


def _off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------


def plot_class_legend(ax, class_names: Sequence[str] = CAMVID_CLASSES, ncol: int = 6, void: bool = True):
    """A legend of the class colours (plus black = void) on ``ax``, which is otherwise hidden."""
    handles = [Patch(facecolor=_COLORS[i], edgecolor="0.4", label=f"{i} {n}") for i, n in enumerate(class_names)]
    if void:
        handles.append(Patch(facecolor="black", edgecolor="0.4", label="void (ignored)"))
    ax.legend(handles=handles, loc="center", ncol=ncol, fontsize=8, frameon=False, handlelength=1.2)
    ax.axis("off")
    return ax


def plot_samples(images: Sequence, labels: Sequence, titles: Sequence[str] | None = None, fig=None):
    """Images (top row) over their colour-coded labels (middle row), with the class legend below."""
    n = len(images)
    if n == 0 or len(labels) != n:
        raise ValueError(f"need as many labels as images (got {n} images, {len(labels)} labels)")
    if fig is None:
        fig = plt.figure(figsize=(2.3 * n, 4.0))
    grid = fig.add_gridspec(3, n, height_ratios=[1, 1, 0.45])
    for i, (image, label) in enumerate(zip(images, labels)):
        top, bottom = fig.add_subplot(grid[0, i]), fig.add_subplot(grid[1, i])
        top.imshow(_image01(image))
        bottom.imshow(colorize(np.asarray(label)), interpolation="nearest")
        _off(top)
        _off(bottom)
        if titles is not None:
            top.set_title(titles[i], fontsize=8)
    plot_class_legend(fig.add_subplot(grid[2, :]))
    fig.tight_layout()
    return fig


def plot_class_frequencies(stats: ClassFrequencies, weights: Sequence[float] | None = None,
                           reference: Sequence[float] | None = None,
                           class_names: Sequence[str] = CAMVID_CLASSES, fig=None):
    """Left: each class's share of the labelled pixels (log scale). Right, when given: the
    class weights computed here (``weights``) next to published ones (``reference``)."""
    names = list(class_names)
    share = stats.pixel_counts / max(stats.pixel_counts.sum(), 1)
    panels = 1 + (weights is not None)
    if fig is None:
        fig = plt.figure(figsize=(4.6 * panels, 3.2))
    axes = np.atleast_1d(fig.subplots(1, panels))
    y = np.arange(len(names))
    ax = axes[0]
    ax.barh(y, 100 * share, color=_COLORS[: len(names)], edgecolor="0.3")
    ax.set_xscale("log")
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("% of labelled pixels (log scale)", fontsize=8)
    ax.set_title(f"class frequencies over {stats.num_images} label images", fontsize=9)
    for yi, s in zip(y, share):
        ax.text(100 * s * 1.1, yi, f"{100 * s:.2g}%", va="center", fontsize=7)
    if weights is not None:
        ax = axes[1]
        h = 0.4 if reference is not None else 0.8
        ax.barh(y - (h / 2 if reference is not None else 0), weights, height=h, color="tab:blue", label="computed here")
        if reference is not None:
            ax.barh(y + h / 2, reference, height=h, color="tab:orange", label="SegNet (published)")
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("median-frequency class weight", fontsize=8)
        ax.set_title("class weights for the loss", fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------
# the red-channel label bug
# ------------------------------------------------------------------------------------------


def red_channel_groups(colors: Sequence = CAMVID_COLORS, class_names: Sequence[str] = CAMVID_CLASSES
                       ) -> dict[int, list[str]]:
    """Red value -> the classes whose colour has that red value (what the blog's loader saw)."""
    groups: dict[int, list[str]] = {}
    for color, name in zip(colors, class_names):
        groups.setdefault(int(color[0]), []).append(name)
    return dict(sorted(groups.items()))


def _red_is_shared(colors: Sequence = CAMVID_COLORS) -> np.ndarray:
    """(num_classes,) bool: the class's colour has a red value that another class's has too."""
    reds = np.asarray([c[0] for c in colors])
    return (reds[:, None] == reds[None, :]).sum(1) > 1


def _lost_to_red_channel(label: np.ndarray, colors: Sequence = CAMVID_COLORS,
                         ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """(H, W) bool: labelled pixels whose class the red channel cannot tell."""
    label = np.asarray(label)
    lost = np.zeros(label.shape, bool)
    valid = label != ignore_index
    lost[valid] = _red_is_shared(colors)[label[valid].astype(np.intp)]
    return lost


def red_channel_ambiguity(label: np.ndarray, colors: Sequence = CAMVID_COLORS,
                          ignore_index: int = IGNORE_INDEX) -> float:
    """Share of the labelled pixels of ``label`` (H, W class indices) whose class shares its
    red value with another class: the red channel cannot tell which class they are."""
    valid = np.asarray(label) != ignore_index
    if not valid.any():
        return float("nan")
    return float(_lost_to_red_channel(label, colors, ignore_index)[valid].mean())


def plot_red_channel_bug(image, label: np.ndarray, fig=None):
    """Four panels: the image; the colour label (what a colour label file holds); its red
    channel, which the blog version used as the class index; the pixels that channel
    cannot classify (their class shares its red value with another class)."""
    label = np.asarray(label)
    rgb = colorize(label)
    red = rgb[..., 0]
    if fig is None:
        fig = plt.figure(figsize=(9.6, 2.4))
    axes = fig.subplots(1, 4)
    axes[0].imshow(_image01(image))
    axes[0].set_title("image", fontsize=9)
    axes[1].imshow(rgb, interpolation="nearest")
    axes[1].set_title("colour label\n(11 classes + void)", fontsize=9)
    values = sorted(int(v) for v in np.unique(red))
    im = axes[2].imshow(red, cmap="viridis", interpolation="nearest", vmin=0, vmax=255)
    axes[2].set_title("red channel read as 'class'\nvalues " + ", ".join(map(str, values)), fontsize=9)
    fig.colorbar(im, ax=axes[2], fraction=0.04, pad=0.02)
    lost = _lost_to_red_channel(label)
    view = _image01(image) * 0.35
    view[lost] = (1.0, 0.2, 0.2)
    axes[3].imshow(view)
    axes[3].set_title(f"red: class cannot be told\n({100 * red_channel_ambiguity(label):.0f}% of labelled pixels)",
                      fontsize=9)
    for ax in axes:
        _off(ax)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------
# training curves
# ------------------------------------------------------------------------------------------


def plot_training_curves(steps: Sequence[int], losses: Sequence[float], epochs: Sequence[int] = (),
                         mious: Sequence[float] = (), steps_per_epoch: int | None = None,
                         total_epochs: int | None = None, fig=None):
    """Training loss per optimiser step (and its running mean) | validation mIoU per epoch."""
    if fig is None:
        fig = plt.figure(figsize=(8, 2.8))
    ax_loss, ax_miou = fig.subplots(1, 2)
    if len(steps):
        ax_loss.plot(steps, losses, color="0.75", lw=0.8, label="per step")
        k = max(1, min(len(losses) // 5, steps_per_epoch or 10))
        if len(losses) >= k > 1:
            smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
            ax_loss.plot(steps[k - 1:], smooth, color="tab:blue", lw=1.5, label=f"mean of {k}")
        ax_loss.legend(fontsize=7)
    if steps_per_epoch and total_epochs:
        ax_loss.set_xlim(0, steps_per_epoch * total_epochs)
    ax_loss.set_xlabel("optimiser step", fontsize=8)
    ax_loss.set_ylabel("loss (0.5 CE + 0.5 Dice)", fontsize=8)
    ax_loss.set_title("training loss", fontsize=9)
    if len(epochs):
        ax_miou.plot(epochs, [100 * m for m in mious], "o-", color="tab:green")
        for e, m in zip(epochs, mious):
            ax_miou.annotate(f"{100 * m:.1f}", (e, 100 * m), textcoords="offset points", xytext=(0, 5),
                             ha="center", fontsize=7)
    if total_epochs:
        ax_miou.set_xlim(0.5, total_epochs + 0.5)
        ax_miou.set_xticks(range(1, total_epochs + 1))
    ax_miou.set_ylim(0, max([5.0] + [100 * m * 1.25 for m in mious]))
    ax_miou.set_xlabel("epoch", fontsize=8)
    ax_miou.set_ylabel("val mIoU (%)", fontsize=8)
    ax_miou.set_title("validation mIoU", fontsize=9)
    for ax in (ax_loss, ax_miou):
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


class LiveTrainingPlot:
    """A ``callback`` for ``tutorial_lib.train.train`` that keeps the loss of every step and the
    val mIoU of every epoch, and redraws them into ``self.widget`` (an ipywidgets ``Image``,
    CSS class ``tu-training-plot``) every ``every`` steps and after each epoch.

    ``widget`` is created on first use, so the callback also works without ipywidgets
    (``redraw=False``: only record). ``figure()`` draws the current state.
    """

    def __init__(self, total_epochs: int | None = None, every: int = 5, redraw: bool = True):
        self.total_epochs = total_epochs
        self.every = max(1, int(every))
        self.redraw = redraw
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.epochs: list[int] = []
        self.mious: list[float] = []
        self.steps_per_epoch: int | None = None
        self._widget = None

    @property
    def widget(self):
        if self._widget is None:
            import ipywidgets as widgets

            self._widget = widgets.Image(format="png", value=figure_png(self.figure()))
            self._widget.add_class("tu-training-plot")
        return self._widget

    def __call__(self, event: Mapping) -> None:
        kind = event.get("event")
        if kind == "step":
            self.steps.append(int(event["global_step"]))
            self.losses.append(float(event["loss"]))
            self.steps_per_epoch = int(event["steps_per_epoch"])
            due = event["global_step"] % self.every == 0
        elif kind == "epoch":
            if event.get("val_miou") is not None:
                self.epochs.append(int(event["epoch"]))
                self.mious.append(float(event["val_miou"]))
            due = True
        else:
            return
        if due and self.redraw:
            self.widget.value = figure_png(self.figure())

    def figure(self):
        return plot_training_curves(self.steps, self.losses, self.epochs, self.mious, self.steps_per_epoch,
                                    self.total_epochs)


# ------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------


def plot_per_class_iou(per_class: Mapping[str, float | None], reference: Mapping[str, float] | None = None,
                       reference_name: str = "reference", title: str | None = None, ax=None):
    """Horizontal bars of IoU per class (class colours), the mIoU as a dashed line, and optional
    reference values as black ticks."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.3))
    names = list(per_class)
    values = np.array([np.nan if per_class[n] is None else 100 * per_class[n] for n in names])
    colors = [_COLORS[CAMVID_CLASSES.index(n)] if n in CAMVID_CLASSES else "tab:blue" for n in names]
    y = np.arange(len(names))
    ax.barh(y, np.nan_to_num(values), color=colors, edgecolor="0.3")
    for yi, v in zip(y, values):
        ax.text((0 if np.isnan(v) else v) + 1, yi, "-" if np.isnan(v) else f"{v:.1f}", va="center", fontsize=7)
    miou = np.nanmean(values)
    ax.axvline(miou, color="k", ls="--", lw=1)
    if reference is not None:
        ref = [100 * reference[n] if reference.get(n) is not None else np.nan for n in names]
        ax.plot(ref, y, "|", color="k", ms=12, mew=2, label=reference_name)
        ax.legend(fontsize=7, loc="lower right")
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 105)
    ax.set_xlabel("IoU (%)", fontsize=8)
    ax.set_title(f"{title or 'IoU per class'} (dashed: mIoU {miou:.1f}%)", fontsize=9)
    ax.tick_params(labelsize=7)
    return ax


def plot_confusion_matrix(cm, class_names: Sequence[str] = CAMVID_CLASSES, ax=None, min_label: float = 1.0):
    """Row-normalised confusion matrix (row = true class, column = predicted class, in % of the
    row's pixels); cells of at least ``min_label`` % carry their number."""
    cm = torch.as_tensor(cm).double().cpu().numpy()
    rows = cm.sum(axis=1, keepdims=True)
    share = 100 * np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 4.6))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=100)
    n = len(class_names)
    for i in range(n):
        for j in range(n):
            if share[i, j] >= min_label:
                ax.text(j, i, f"{share[i, j]:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if share[i, j] > 55 else "black")
    ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), class_names, fontsize=7)
    ax.set_xlabel("predicted class", fontsize=8)
    ax.set_ylabel("true class", fontsize=8)
    ax.set_title("confusion matrix (% of each true class)", fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    return ax


def image_scores(label: np.ndarray, pred: np.ndarray, num_classes: int = len(CAMVID_CLASSES),
                 ignore_index: int = IGNORE_INDEX) -> dict:
    """One image's pixel accuracy and mIoU (over the classes present in its label or prediction),
    both fractions, from ``tutorial_lib.metrics``; ``nan`` when nothing is labelled."""
    cm = confusion_matrix(torch.as_tensor(np.asarray(pred)), torch.as_tensor(np.asarray(label)), num_classes,
                          ignore_index)
    if cm.sum() == 0:
        return {"pixel_accuracy": float("nan"), "miou": float("nan"), "classes": 0}
    return {"pixel_accuracy": pixel_accuracy(cm), "miou": mean_iou(cm),
            "classes": int((~torch.isnan(iou_per_class(cm))).sum())}


# ------------------------------------------------------------------------------------------
# predictions
# ------------------------------------------------------------------------------------------


def error_mask(label: np.ndarray, pred: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """(H, W) bool: labelled pixels whose predicted class is wrong (void pixels never count)."""
    label, pred = np.asarray(label), np.asarray(pred)
    if label.shape != pred.shape:
        raise ValueError(f"label {label.shape} and prediction {pred.shape} must have the same size")
    return (label != ignore_index) & (label != pred)


def blend(image, classes: np.ndarray, alpha: float, where: np.ndarray | None = None) -> np.ndarray:
    """The image with the class colours of ``classes`` (H, W) laid over it at opacity ``alpha``
    (0: image only, 1: colours only), only where ``where`` is true (default: every labelled
    pixel). Returns float (H, W, 3) in [0, 1]."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    image = _image01(image)
    classes = np.asarray(classes)
    if image.shape[:2] != classes.shape:
        raise ValueError(f"image {image.shape[:2]} and class map {classes.shape} must have the same size")
    colours = colorize(classes).astype(np.float64) / 255.0
    mask = (classes < len(CAMVID_COLORS)) if where is None else np.asarray(where, bool)
    out = image.copy()
    out[mask] = (1 - alpha) * image[mask] + alpha * colours[mask]
    return out


def plot_prediction(image, label: np.ndarray, pred: np.ndarray, alpha: float = 0.6, errors_only: bool = False,
                    title: str | None = None, fig=None):
    """Three panels: the image with the true labels over it, with the prediction over it, and
    either the error map (wrong pixels in red) or, with ``errors_only``, the wrong pixels only,
    painted in the class the model predicted."""
    label, pred = np.asarray(label), np.asarray(pred)
    wrong = error_mask(label, pred)
    scores = image_scores(label, pred)
    if fig is None:
        fig = plt.figure(figsize=(8.4, 2.6))
    axes = fig.subplots(1, 3)
    axes[0].imshow(blend(image, label, alpha))
    axes[0].set_title("ground truth", fontsize=9)
    if errors_only:
        dim = _image01(image) * 0.35
        axes[1].imshow(blend(dim, pred, max(alpha, 0.5), where=wrong))
        axes[1].set_title("errors only, in the predicted class's colour", fontsize=9)
    else:
        axes[1].imshow(blend(image, pred, alpha))
        axes[1].set_title("prediction", fontsize=9)
    view = _image01(image) * 0.35 + 0.3
    view[wrong] = (0.85, 0.1, 0.1)
    view[label == IGNORE_INDEX] = (0.0, 0.0, 0.0)
    axes[2].imshow(np.clip(view, 0, 1))
    axes[2].set_title(f"wrong pixels (red): {100 * wrong.sum() / max((label != IGNORE_INDEX).sum(), 1):.1f}%",
                      fontsize=9)
    for ax in axes:
        _off(ax)
    if title is None:
        title = ""
    fig.suptitle(f"{title}  pixel accuracy {100 * scores['pixel_accuracy']:.1f}%, "
                 f"image mIoU {100 * scores['miou']:.1f}%".strip(), fontsize=9)
    fig.tight_layout()
    return fig


def prediction_widget(images: Sequence, labels: Sequence[np.ndarray], preds: Sequence[np.ndarray],
                      names: Sequence[str], index: int = 0, alpha: float = 0.6):
    """ipywidgets box (CSS class ``tu-prediction-widget``): choose an image, the overlay's
    opacity and whether to show only the errors; see ground truth, prediction and errors.

    ``images``: (H, W, 3) uint8 or float; ``labels`` and ``preds``: (H, W) class indices.
    The returned box has ``render(index, alpha, errors_only)``, ``controls``, ``image`` and
    ``stats`` (an HTML readout of the image's scores, CSS class ``tu-prediction-stats``). The
    controls' CSS classes are ``tu-pred-image``, ``tu-pred-opacity`` and ``tu-pred-errors``.
    """
    import ipywidgets as widgets

    if not (len(images) == len(labels) == len(preds) == len(names)) or not images:
        raise ValueError("prediction_widget needs as many images, labels, predictions and names (at least one)")
    scores = [image_scores(lab, p) for lab, p in zip(labels, preds)]
    options = [(f"{n}  (mIoU {100 * s['miou']:.0f}%)", i) for i, (n, s) in enumerate(zip(names, scores))]
    pick = widgets.Dropdown(options=options, value=index, description="val image",
                            layout=widgets.Layout(width="360px"))
    opacity = widgets.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.1, description="opacity",
                                  continuous_update=False, readout_format=".1f")
    errors = widgets.Checkbox(value=False, description="errors only", indent=False)
    view = widgets.Image(format="png")
    stats = widgets.HTML()
    stats.add_class("tu-prediction-stats")
    for w, css in ((pick, "tu-pred-image"), (opacity, "tu-pred-opacity"), (errors, "tu-pred-errors")):
        w.add_class(css)

    def render(i: int, a: float, errors_only: bool):
        return plot_prediction(images[i], labels[i], preds[i], a, errors_only, title=names[i])

    def update(change=None):
        i = pick.value
        s = scores[i]
        wrong = error_mask(labels[i], preds[i])
        stats.value = (f"<b>{html.escape(names[i])}</b>: pixel accuracy {100 * s['pixel_accuracy']:.1f}%, "
                       f"mIoU {100 * s['miou']:.1f}% over its {s['classes']} classes, "
                       f"{int(wrong.sum()):,} wrong pixels")
        view.value = figure_png(render(i, opacity.value, errors.value))

    for w in (pick, opacity, errors):
        w.observe(update, names="value")
    update()
    box = widgets.VBox([widgets.HBox([pick, opacity, errors]), stats, view])
    box.add_class("tu-prediction-widget")
    box.render = render
    box.controls = {"image": pick, "opacity": opacity, "errors_only": errors}
    box.image = view
    box.stats = stats
    return box


# ------------------------------------------------------------------------------------------
# attention on CamVid
# ------------------------------------------------------------------------------------------


@torch.no_grad()
def transunet_attention(model: torch.nn.Module, image: torch.Tensor) -> list[torch.Tensor]:
    """Per-layer attention weights of one normalised image (3, H, W) at the model's input size:
    a list of (h, N, N) float tensors on the CPU (N = tokens; TransUNet has no class token)."""
    if image.ndim != 3:
        raise ValueError(f"expected one image (3, H, W), got shape {tuple(image.shape)}")
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        _, weights = model(image[None].to(device), return_attention=True)
    finally:
        model.train(was_training)
    return [w[0].float().cpu() for w in weights]


def attention_head_summary(weights: Sequence[torch.Tensor]) -> list[dict]:
    """For every (layer, head) of per-layer weights (h, N, N) (or (B, h, N, N), first image):

    * ``tokens``: exp of the mean entropy of a query's attention row, the number of tokens
      it is effectively spread over (N = uniform, 1 = a single token);
    * ``query_dependence``: mean total-variation distance between each query's row and the
      average row of that head, 0 = every query attends to the same place, 1 = disjoint.
    """
    rows = []
    for layer, w in enumerate(weights):
        w = torch.as_tensor(w).detach().double().cpu()
        if w.ndim == 4:
            w = w[0]
        if w.ndim != 3 or w.shape[-1] != w.shape[-2]:
            raise ValueError(f"layer {layer}: expected (h, N, N) attention, got {tuple(w.shape)}")
        entropy = -(w * torch.log(w.clamp_min(1e-30))).sum(-1).mean(-1)  # (h,)
        spread = 0.5 * (w - w.mean(1, keepdim=True)).abs().sum(-1).mean(-1)  # (h,)
        for head in range(w.shape[0]):
            rows.append({"layer": layer, "head": head, "tokens": float(entropy[head].exp()),
                         "query_dependence": float(spread[head])})
    return rows


def label_grid(label: np.ndarray, grid: tuple[int, int], num_classes: int = len(CAMVID_CLASSES),
               ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """The majority class of each token's pixels, (gh, gw) (``ignore_index`` where all are void).
    ``label`` must be ``grid`` times the token size (resize it to the model's input first)."""
    label = np.asarray(label)
    gh, gw = grid
    if label.shape[0] % gh or label.shape[1] % gw or label.shape[0] // gh != label.shape[1] // gw:
        raise ValueError(f"label {label.shape} is not a {gh} x {gw} grid of square tokens")
    return majority_label_per_patch(label, label.shape[0] // gh, ignore_index, num_classes)


def attention_by_class(amap: np.ndarray, classes: np.ndarray, num_classes: int = len(CAMVID_CLASSES)) -> np.ndarray:
    """Share of a (gh, gw) attention map falling on tokens of each class -> (num_classes,);
    void tokens are left out, the rest sums to 1."""
    amap, classes = np.asarray(amap, dtype=np.float64), np.asarray(classes)
    if amap.shape != classes.shape:
        raise ValueError(f"attention map {amap.shape} and class grid {classes.shape} differ")
    valid = classes < num_classes
    mass = np.bincount(classes[valid].astype(np.intp), weights=amap[valid], minlength=num_classes)
    total = mass.sum()
    return mass / total if total > 0 else mass


def plot_camvid_attention(image, weights: Sequence[torch.Tensor], layer: int, head, cell: tuple[int, int],
                          grid: tuple[int, int], classes: np.ndarray | None = None,
                          rollout_through: int | None = None, fig=None):
    """Where the query token at ``cell`` = (row, col) attends: the attention of ``layer`` (one
    head, or the mean over heads for ``head`` "mean"), and the attention rollout (heads
    averaged, as Abnar & Zuidema do) from the input through layer ``rollout_through``
    (default: ``layer``). With ``classes`` (the (gh, gw) majority class of every token), the
    titles name the two classes receiving the most attention."""
    gh, gw = grid
    r, c = cell
    if not (0 <= r < gh and 0 <= c < gw):
        raise ValueError(f"patch {cell} is outside the {gh} x {gw} grid")
    last = layer if rollout_through is None else rollout_through
    query = r * gw + c
    if fig is None:
        fig = plt.figure(figsize=(6.6, 2.7))
    axes = fig.subplots(1, 2)
    who = "mean of heads" if head in (None, "mean") else f"head {head}"
    amap = attention_map_for_query(weights, layer, head, query, grid, num_prefix_tokens=0)
    rmap = rollout_map_for_query(weights, last, "mean", query, grid, num_prefix_tokens=0)
    image = _image01(image)
    for ax, m, t in ((axes[0], amap, f"layer {layer}, {who}"), (axes[1], rmap, f"rollout, layers 0..{last}")):
        sub = ""
        if classes is not None:
            share = attention_by_class(m, classes)
            top = np.argsort(share)[::-1][:2]
            sub = "\n" + ", ".join(f"{CAMVID_CLASSES[k]} {100 * share[k]:.0f}%" for k in top)
        draw_attention(ax, image, m, query_cell(query, grid, 0), t + sub)
    fig.tight_layout()
    return fig


def camvid_attention_widget(model: torch.nn.Module, inputs: Sequence[torch.Tensor], images: Sequence,
                            labels: Sequence[np.ndarray], names: Sequence[str], grid: tuple[int, int],
                            cell: tuple[int, int] | None = None, layer: int | None = None, head="mean",
                            attention: Callable[[int], list[torch.Tensor]] | None = None):
    """ipywidgets box (CSS class ``tu-camvid-attention-widget``): choose a val image, a query
    patch (row, column), a layer and a head (or their mean); see where that token attends and
    the rollout, with the share of attention that lands on each class.

    ``inputs``: normalised images (3, H, W) at the model's size; ``images``: the same images
    for display, (H, W, 3); ``labels``: (H, W) labels at that size. Attention is computed once
    per image and kept. The box has ``render(index, layer, head, row, col)``, ``controls``,
    ``image`` and ``stats`` (CSS class ``tu-camvid-attention-stats``). The controls' CSS
    classes are ``tu-att-image``, ``tu-att-row``, ``tu-att-col``, ``tu-att-layer``, ``tu-att-head``.
    """
    import ipywidgets as widgets

    if not (len(inputs) == len(images) == len(labels) == len(names)) or not inputs:
        raise ValueError("camvid_attention_widget needs as many inputs, images, labels and names (at least one)")
    gh, gw = grid
    cache: dict[int, list[torch.Tensor]] = {}

    def weights_of(i: int) -> list[torch.Tensor]:
        if i not in cache:
            cache[i] = attention(i) if attention is not None else transunet_attention(model, inputs[i])
        return cache[i]

    first = weights_of(0)
    depth, heads = len(first), first[0].shape[0]
    row0, col0 = cell if cell is not None else (gh // 2, gw // 2)
    pick = widgets.Dropdown(options=[(n, i) for i, n in enumerate(names)], value=0, description="val image",
                            layout=widgets.Layout(width="300px"))
    row = widgets.IntSlider(value=row0, min=0, max=gh - 1, description="patch row", continuous_update=False)
    col = widgets.IntSlider(value=col0, min=0, max=gw - 1, description="patch col", continuous_update=False)
    layer_w = widgets.IntSlider(value=depth - 1 if layer is None else layer, min=0, max=depth - 1,
                                description="layer", continuous_update=False)
    head_w = widgets.Dropdown(options=[("mean of heads", "mean")] + [(f"head {h}", h) for h in range(heads)],
                              value=head, description="head")
    view = widgets.Image(format="png")
    stats = widgets.HTML()
    stats.add_class("tu-camvid-attention-stats")
    for w, css in ((pick, "tu-att-image"), (row, "tu-att-row"), (col, "tu-att-col"), (layer_w, "tu-att-layer"),
                   (head_w, "tu-att-head")):
        w.add_class(css)
    grids = {}

    def classes_of(i: int) -> np.ndarray:
        if i not in grids:
            grids[i] = label_grid(labels[i], grid)
        return grids[i]

    def render(i: int, lay: int, hd, r: int, c: int):
        return plot_camvid_attention(images[i], weights_of(i), lay, hd, (r, c), grid, classes_of(i))

    def update(change=None):
        i, r, c = pick.value, row.value, col.value
        own = classes_of(i)[r, c]
        amap = attention_map_for_query(weights_of(i), layer_w.value, head_w.value, r * gw + c, grid, 0)
        share = attention_by_class(amap, classes_of(i))
        top = ", ".join(f"{CAMVID_CLASSES[k]} {100 * share[k]:.0f}%" for k in np.argsort(share)[::-1][:3])
        what = CAMVID_CLASSES[own] if own < len(CAMVID_CLASSES) else "void"
        stats.value = (f"query patch (row {r}, col {c}) is mostly <b>{what}</b>; "
                       f"its attention goes to: {top}")
        view.value = figure_png(render(i, layer_w.value, head_w.value, r, c))

    for w in (pick, row, col, layer_w, head_w):
        w.observe(update, names="value")
    update()
    box = widgets.VBox([widgets.HBox([pick, head_w]), widgets.HBox([row, col, layer_w]), stats, view])
    box.add_class("tu-camvid-attention-widget")
    box.render = render
    box.controls = {"image": pick, "row": row, "col": col, "layer": layer_w, "head": head_w}
    box.image = view
    box.stats = stats
    return box
