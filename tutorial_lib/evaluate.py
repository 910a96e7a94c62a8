"""Evaluate a segmentation model on CamVid or a folder data set: mIoU, per-class IoU, pixel
accuracy, mean Dice.

Protocol (the usual one for CamVid; labels are never resized):

1. the image (360x480 for CamVid) is resized to the model's input size (``config.img_size``,
   a multiple of 16; area averaging when shrinking, bilinear when enlarging) and
   normalised with the ImageNet mean/std: ``EvalTransform`` of ``tutorial_lib.data``, the
   package's one evaluation pre-processing;
2. the logits are resized back to the label's size with bilinear interpolation;
3. the prediction is the argmax there, compared with the full-resolution label;
4. one confusion matrix is accumulated over the whole split; void pixels
   (``IGNORE_INDEX``) are left out; metrics come from that matrix
   (``tutorial_lib.metrics``). mIoU is the mean over the 11 classes (a class absent from
   both prediction and labels of the whole split would be left out of the mean).

Command line::

    python -m tutorial_lib.evaluate --checkpoint checkpoints/camvid_tiny.pt --split val
    python -m tutorial_lib.evaluate --checkpoint runs/x/best.pt --split val --json
    python -m tutorial_lib.evaluate --checkpoint runs/mine/best.pt --data DIR --classes DIR/classes.json

``--data DIR`` is CamVid (found by its layout) or a folder data set (``DIR/<split>/images`` +
``masks``, class table ``--classes FILE`` or ``DIR/classes.json``; ``tutorial_lib.data.folder``).
(``available_splits``, ``camvid_split`` and ``resolve_data_dir`` live in ``tutorial_lib.data``;
they are importable from here too.)

With ``--json`` the last line printed is a JSON object with ``miou`` (a fraction, 0..1),
``per_class_iou`` (class name -> IoU), ``pixel_accuracy``, ``mean_dice``, ``per_class_dice``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint
from .constants import IGNORE_INDEX
from .data import (
    CAMVID_CLASSES,
    MEAN,
    NUM_CLASSES,
    SPLITS,
    STD,
    EvalTransform,
    available_splits,
    camvid_split,
    data_class_table,
    open_split,
    resolve_data_dir,
)
from .metrics import SegmentationMetrics
from .runtime import PRECISIONS, autocast_context, move_batch, pick_device, prepare_model, resolve_precision

__all__ = [
    "EVAL_MODES", "SPLITS", "EvalTransform", "autocast_context", "available_splits", "camvid_split", "evaluate_checkpoint",
    "eval_input_size", "evaluate_model", "format_table", "json_float", "main", "metrics_report", "predict_logits", "resolve_data_dir", "sliding_logits", "window_starts",
]

#: How a model is run on a frame: "resize" the frame to the model's input size (the frame seen
#: whole, at the model's resolution), or "sliding": model-size windows over the frame at its
#: own resolution, their logits averaged where they overlap.
EVAL_MODES = ("resize", "sliding")


def input_size(model) -> tuple[int, int]:
    """The (H, W) a model takes: ``model.config.img_size`` (a TransUNet) or ``model.img_size``."""
    config = getattr(model, "config", None)
    return tuple(config.img_size) if config is not None else tuple(model.img_size)


def eval_input_size(mode: str, size: Sequence[int]) -> tuple[int, int] | None:
    """The size ``EvalTransform`` resizes a frame to for ``mode``: the model's input ``size``
    ("resize"), or None, the frame's own size ("sliding": windows are cut from it)."""
    if mode not in EVAL_MODES:
        raise ValueError(f"mode must be one of {EVAL_MODES}, got {mode!r}")
    return (int(size[0]), int(size[1])) if mode == "resize" else None


def window_starts(length: int, window: int) -> list[int]:
    """Offsets of the fewest ``window``-long windows that cover ``length``, spread evenly
    (first at 0, last at ``length - window``), e.g. ``window_starts(360, 192) == [0, 168]``."""
    if length <= window:
        return [0]
    n = math.ceil((length - window) / window) + 1
    return [round(i * (length - window) / (n - 1)) for i in range(n)]


def sliding_logits(model: nn.Module, images: torch.Tensor, window: Sequence[int]) -> torch.Tensor:
    """(B, 3, H, W) at full resolution -> logits (B, C, H, W) in float32: the mean of the logits
    of the ``window`` = (h, w) crops at ``window_starts`` offsets (a frame smaller than a window
    is zero-padded at the bottom/right, i.e. with the mean colour, and the padding cut off)."""
    h, w = int(window[0]), int(window[1])
    height, width = images.shape[-2:]
    images = F.pad(images, (0, max(w - width, 0), 0, max(h - height, 0)))
    total = count = None
    for top in window_starts(images.shape[-2], h):
        for left in window_starts(images.shape[-1], w):
            out = model(images[..., top:top + h, left:left + w]).float()
            if total is None:
                total = out.new_zeros(*out.shape[:2], *images.shape[-2:])
                count = out.new_zeros(images.shape[-2:])
            total[..., top:top + h, left:left + w] += out
            count[top:top + h, left:left + w] += 1
    return (total / count)[..., :height, :width]


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, out_size: Sequence[int] | None = None,
                   mode: str = "resize", flip: bool = False) -> torch.Tensor:
    """Logits (B, C, H, W) in float32, bilinearly resized to ``out_size`` (the label's size) if given.

    ``model``: a TransUNet or any callable (B, 3, h, w) -> logits with an ``img_size``
    (``tutorial_lib.predict``'s engines). ``mode`` "resize": ``images`` are at the model's
    input size, one forward pass; "sliding":
    ``images`` at any size, ``sliding_logits`` with model-size windows. ``flip``: the mean with
    the logits of the left-right mirrored images, mirrored back (flip test-time augmentation).
    """
    if mode not in EVAL_MODES:
        raise ValueError(f"mode must be one of {EVAL_MODES}, got {mode!r}")

    def run(x: torch.Tensor) -> torch.Tensor:
        return sliding_logits(model, x, input_size(model)) if mode == "sliding" else model(x).float()

    logits = run(images)
    if flip:
        logits = (logits + run(images.flip(-1)).flip(-1)) / 2
    if out_size is not None and tuple(logits.shape[-2:]) != tuple(out_size):
        logits = F.interpolate(logits, size=tuple(out_size), mode="bilinear", align_corners=False)
    return logits


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    batches: Iterable,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    precision: str = "fp32",
    progress: bool = False,
    desc: str = "eval",
    predictions: list | None = None,
    channels_last: bool = True,
    mode: str = "resize",
    flip: bool = False,
) -> SegmentationMetrics:
    """Run ``model`` over ``batches`` of (images at model size, full-size labels); return the metrics.

    ``model`` is put in eval mode (and restored to its previous mode afterwards). Logits
    are upsampled to each label's size before the argmax. Returns the accumulated
    ``SegmentationMetrics`` (its ``.cm`` is the confusion matrix; ``.compute()`` the metrics).
    With a list as ``predictions``, each image's prediction (H, W) uint8 numpy array at the
    label's size is appended to it, in order. ``channels_last``: feed the images as NHWC
    (faster convolutions on CPU and GPU; same results up to float rounding). ``num_classes``
    None: the model's (``model.config.num_classes``), else CamVid's 11.
    """
    if num_classes is None:
        num_classes = getattr(getattr(model, "config", None), "num_classes", NUM_CLASSES)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    metrics = SegmentationMetrics(num_classes, IGNORE_INDEX)
    try:
        total = len(batches) if hasattr(batches, "__len__") else None
        for images, labels in tqdm(batches, desc=desc, total=total, disable=not progress, leave=False,
                                   dynamic_ncols=True, mininterval=1.0):
            images, labels = move_batch(images, labels, device, channels_last)
            with autocast_context(device, precision):
                logits = predict_logits(model, images, labels.shape[-2:], mode, flip)
            pred = logits.argmax(dim=1)
            metrics.update(pred, labels)
            if predictions is not None:
                predictions.extend(pred.to("cpu", torch.uint8).numpy())
    finally:
        model.train(was_training)
    return metrics


def json_float(x) -> float | None:
    """A float for JSON: nan, inf and None become None (strict JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def metrics_report(metrics: SegmentationMetrics | dict, class_names: Sequence[str] = CAMVID_CLASSES) -> dict:
    """JSON-ready metrics: per-class values keyed by class name, nan -> None."""
    raw = metrics.compute() if isinstance(metrics, SegmentationMetrics) else metrics
    clean = json_float
    return {
        "miou": clean(raw["miou"]),
        "per_class_iou": {n: clean(v) for n, v in zip(class_names, raw["per_class_iou"])},
        "pixel_accuracy": clean(raw["pixel_accuracy"]),
        "mean_dice": clean(raw["mean_dice"]),
        "per_class_dice": {n: clean(v) for n, v in zip(class_names, raw["per_class_dice"])},
    }


def format_table(report: dict) -> str:
    """A human-readable table of a ``metrics_report`` (percentages)."""

    def pct(x):
        return "   n/a" if x is None else f"{100 * x:6.2f}"

    width = max(len(n) for n in report["per_class_iou"]) + 2
    lines = [f"{'class':<{width}}{'IoU %':>8}{'Dice %':>9}", "-" * (width + 17)]
    for name, iou in report["per_class_iou"].items():
        lines.append(f"{name:<{width}}{pct(iou):>8}{pct(report['per_class_dice'].get(name)):>9}")
    lines += [
        "-" * (width + 17),
        f"{'mIoU':<{width}}{pct(report['miou']):>8}{pct(report['mean_dice']):>9}",
        f"pixel accuracy {pct(report['pixel_accuracy']).strip()} %",
    ]
    return "\n".join(lines)


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike | None = None,
    split: str = "val",
    batch_size: int = 4,
    img_size: Sequence[int] | None = None,
    workers: int = 0,
    max_images: int | None = None,
    precision: str = "fp32",
    device: str | torch.device | None = None,
    progress: bool = True,
    classes: str | os.PathLike | None = None,
    mode: str | None = None,
    flip: bool | None = None,
) -> dict:
    """Evaluate a checkpoint written by ``tutorial_lib.train`` on a split of CamVid or of a
    folder data set (``data``; ``classes``: its class table file, default ``DIR/classes.json``).

    ``img_size`` = (H, W) overrides the model's input size (position embeddings are
    resized); by default the size it was trained at is used. ``precision``: fp32 by default, so
    that the metrics are the same on every machine (up to float rounding); "auto" uses bf16/fp16
    where the device computes it natively. ``mode`` ("resize" or "sliding")
    and ``flip`` (``predict_logits``): by default the ones the run validated with (its
    ``eval_mode``/``eval_flip``; "resize" without flip for older checkpoints). Returns
    ``metrics_report`` plus ``split``, ``num_images``, ``img_size``, ``mode``, ``flip``,
    ``checkpoint``, ``precision``, ``seconds`` and ``img_per_s``.
    """
    device = pick_device(device)
    precision = resolve_precision(precision, device)
    model, meta = load_checkpoint(checkpoint, device=device)
    if img_size is not None and tuple(img_size) != tuple(model.config.img_size):
        model.resize_pos_embed(tuple(int(s) for s in img_size))
    model = prepare_model(model, device, channels_last=True)  # NHWC: faster convolutions on CPU and GPU
    size = tuple(model.config.img_size)
    trained = meta.get("train_config") or {}
    mode = mode if mode is not None else trained.get("eval_mode", "resize")
    flip = flip if flip is not None else bool(trained.get("eval_flip", False))
    _check_class_count(data_class_table(data, classes), meta, model.config.num_classes)
    dataset = open_split(data, split, classes, transform=EvalTransform(eval_input_size(mode, size), meta.get("mean", MEAN), meta.get("std", STD)),
                         max_images=max_images, progress=False)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda")
    start = time.perf_counter()
    metrics = evaluate_model(model, loader, len(meta["class_names"]), device, precision,
                             progress=progress, desc=f"eval {split}", mode=mode, flip=flip)
    seconds = time.perf_counter() - start
    report = metrics_report(metrics, meta["class_names"])
    report.update(
        split=split,
        data=str(resolve_data_dir(data)),
        num_images=len(dataset),
        img_size=list(size),
        mode=mode,
        flip=flip,
        checkpoint=str(checkpoint),
        precision=precision,
        seconds=round(seconds, 2),
        img_per_s=round(len(dataset) / seconds, 2),
    )
    return report


def _check_class_count(table, meta: dict, num_classes: int) -> None:
    """A ValueError when the data's class table and the checkpoint's classes differ in number."""
    if table.num_classes != num_classes:
        names = ", ".join(meta["class_names"][:6]) + (", ..." if num_classes > 6 else "")
        raise ValueError(
            f"The checkpoint predicts {num_classes} classes ({names}) but the class table of the data "
            f"({table.source}) has {table.num_classes}. Evaluate on the data it was trained on, with "
            "--classes FILE of that run."
        )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tutorial_lib.evaluate",
        description="Evaluate a tutorial_lib.train checkpoint on CamVid or a folder data set "
                    "(full-resolution labels, void ignored).",
    )
    p.add_argument("--checkpoint", required=True,
                   help="a .pt file written by tutorial_lib.train (last.pt, best.pt or an export)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="CamVid (found by its layout) or a folder data set: DIR/<split>/images + masks "
                        "(default: tutorial_lib.data.camvid_dir())")
    p.add_argument("--classes", default=None, metavar="FILE",
                   help="class table of a folder data set (.json or .csv; default: DIR/classes.json or .csv)")
    p.add_argument("--split", default="val", help=f"split to evaluate ({', '.join(SPLITS)}, or a folder's own)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--img-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="model input size (multiple of 16); default: the size it was trained at")
    p.add_argument("--mode", choices=EVAL_MODES, default=None,
                   help="resize: the frame resized to the model's input size; sliding: model-size windows "
                        "over the full-resolution frame (default: what the run validated with)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="average with the mirrored frame's prediction (default: what the run validated with)")
    p.add_argument("--workers", type=int, default=0, help="data-loader worker processes")
    p.add_argument("--max-images", type=int, default=None, help="only the first N images of the split")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="fp32 (default: the same metrics on every machine, up to float rounding) or auto "
                        "(bf16/fp16 where the device computes it natively: faster, and a few pixels may differ)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object (the last line)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = evaluate_checkpoint(
            args.checkpoint, args.data, args.split, args.batch_size, args.img_size, args.workers,
            args.max_images, args.precision, args.device, progress=not args.no_progress, classes=args.classes,
            mode=args.mode, flip=args.flip,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['checkpoint']} on {report['data']} {report['split']} ({report['num_images']} images, "
              f"model input {report['img_size'][0]}x{report['img_size'][1]}, {report['mode']}"
              f"{' + flip' if report['flip'] else ''}, labels at full resolution, "
              f"{report['precision']}, {report['img_per_s']} img/s)")
        print(format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
