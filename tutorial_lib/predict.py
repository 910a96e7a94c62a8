"""Segment any image with a trained TransUNet: a class-index mask and a colour overlay.

    python -m tutorial_lib.predict photo.jpg frames/ --out predictions/
    python -m tutorial_lib.predict IMAGE_OR_DIR... --checkpoint CK --out DIR [--engine onnx]

For every input ``NAME.ext`` the command writes ``DIR/NAME_mask.png`` (single-channel 8-bit PNG,
pixel value = class index, like the CamVid label files) and ``DIR/NAME_overlay.png`` (the image
with the class colours blended in), both at the input's own size. From Python::

    from tutorial_lib.predict import predict, overlay
    mask = predict(model, image)             # (H, W) uint8 class indices
    picture = overlay(image, mask)           # (H, W, 3) uint8

**Any size** (the resizing policy, ``--resize``): the model only accepts the grid it was trained
at (``config.img_size``, 192x256 for the shipped checkpoint; its learned position embeddings
belong to that token grid, a multiple of the 16-pixel token stride). So

* ``stretch``: the image is resized to that size (area averaging when shrinking,
  bilinear when enlarging), exactly as ``tutorial_lib.evaluate`` does for CamVid's 360x480
  frames, the protocol the model card's mIoU was measured with; the logits are resized back to
  the input's H x W (bilinear) and the argmax taken there. The aspect ratio changes when it
  differs from the model's (4:3 for the shipped checkpoint).
* ``letterbox``: the image is scaled by one factor to fit inside the model's size (aspect ratio
  kept), padded at the bottom and right with the mean colour (0 after normalisation), and the
  logits of the un-padded region are resized back to H x W. Better for images far from 4:3.
* ``sliding``: the image keeps its own size; model-size windows slide over it and their logits
  are averaged where they overlap (``tutorial_lib.evaluate.sliding_logits``). For a model
  trained on full-resolution crops (``--eval-mode sliding``), at the scale it was trained at.

By default (``resize=None``) the policy is the one the checkpoint was validated with:
``sliding`` for a run trained with ``--eval-mode sliding``, else ``stretch``; ``flip=None``
likewise takes the run's ``--eval-flip`` (the mean with the mirrored image's prediction).

**Image conversion rule** (``to_rgb``): 8-bit RGB is used as is; grayscale is repeated to three
channels; palette images are expanded to their colours; an alpha channel is dropped (the colour
values are used as stored, not blended); CMYK and YCbCr are converted to RGB by Pillow; 16-bit
images (grayscale or RGB) keep their high byte, value >> 8 (65535 -> 255; what Pillow does when it
reads a 16-bit RGB file): an image that uses only part of the 16-bit range (e.g. 12-bit data)
must be rescaled by you first. Floating-point
images and other types are refused with a message saying what to do.

**Engines** (``--engine``): ``torch`` runs the checkpoint in PyTorch (fp32, channels_last);
``onnx`` runs an ONNX file exported by ``python -m tutorial_lib.export`` with ONNX Runtime (it
must come from the same checkpoint: the file stores the checkpoint's SHA-256); ``auto``
(default) uses ONNX Runtime on the CPU when the exported file (``--onnx``, default: the
checkpoint path with the suffix ``.onnx``) exists, matches the checkpoint and onnxruntime is
installed, because it measured faster there (``benchmarks/predict_speed.py``,
``benchmarks/results/predict_speed.json``), and PyTorch otherwise (and always on a GPU).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import nn
from tqdm.auto import tqdm

from .data import CAMVID_COLORS, MEAN, STD, colorize
from .evaluate import EvalTransform, predict_logits
from .checkpoint import atomic_output
from .export import MissingExtraError, OnnxModel, check_output_path, load_model
from .runtime import move_images, pick_device, prepare_model

RESIZE_POLICIES = ("stretch", "letterbox", "sliding")
ENGINES = ("auto", "torch", "onnx")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".gif")
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "camvid_tiny.pt"
# Measured by benchmarks/predict_speed.py (results/predict_speed.json): ONNX Runtime 1.32x (batch 1)
# and 1.50x (batch 8) PyTorch eager's throughput on the CPU, full predict pipeline at 360x480,
# faster in every round. So auto picks ONNX Runtime on the CPU when the exported file is there.
ONNX_FASTER_ON_CPU = True
_NO_LABEL = np.zeros((0, 0), np.uint8)


class ImageError(ValueError):
    """An input that cannot be segmented; the message names the file and the fix."""


# --------------------------------------------------------------------------------------
# images in and out


def _from_16bit(a: np.ndarray, name: str) -> np.ndarray:
    if a.min() < 0 or a.max() > 65535:
        raise ImageError(f"{name}: integer values {a.min()}..{a.max()} are outside 0..65535; "
                         "convert it to 8-bit RGB first")
    return (a.astype(np.int64) >> 8).astype(np.uint8)  # the high byte, as Pillow reads 16-bit RGB


def to_rgb(image: Image.Image | np.ndarray, name: str = "image") -> np.ndarray:
    """A PIL image or array -> (H, W, 3) uint8 RGB by the rule in the module docstring.

    Arrays: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), dtype uint8 or uint16 (or an integer
    type holding 0..65535, as Pillow reads 16-bit PNGs). Raises ``ImageError`` otherwise.
    """
    if isinstance(image, Image.Image):
        if image.mode in ("F",):
            raise ImageError(f"{name}: floating-point image (mode F): save it as 8-bit RGB (0..255) first")
        if image.mode.startswith("I"):  # 16-bit ("I;16", "I;16B", ...) or 32-bit integer grayscale
            image = np.asarray(image)
        else:
            try:
                image = np.asarray(image.convert("RGB"))
            except (ValueError, OSError) as err:
                raise ImageError(f"{name}: cannot convert mode {image.mode} to RGB ({err})") from err
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] in (1, 3, 4):
        a = a[..., :3] if a.shape[-1] >= 3 else a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3) or min(a.shape[:2]) < 1:
        raise ImageError(f"{name}: expected an (H, W) or (H, W, 3) image, got shape {a.shape}")
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise ImageError(f"{name}: {a.dtype} pixels; pass uint8 values 0..255, e.g. "
                         "(x * 255).round().astype(np.uint8) for floats in 0..1")
    if a.dtype != np.uint8:
        a = _from_16bit(a, name)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    return np.ascontiguousarray(a)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB (``to_rgb``); ``ImageError`` names the file."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb(im, str(path))
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ImageError(f"{path}: not a readable image ({err.__class__.__name__}: {err})") from err


def class_colors(num_classes: int) -> list[tuple[int, int, int]]:
    """The CamVid colours, extended with fixed pseudo-random colours beyond 11 classes."""
    colors = list(CAMVID_COLORS[:num_classes])
    rng = np.random.default_rng(0)
    while len(colors) < num_classes:
        colors.append(tuple(int(c) for c in rng.integers(0, 256, 3)))
    return colors


def overlay(image: Image.Image | np.ndarray, mask: np.ndarray, alpha: float = 0.5,
            colors: Sequence[tuple[int, int, int]] | None = None) -> np.ndarray:
    """Image (H, W, 3) with the class colours of ``mask`` (H, W) blended in -> (H, W, 3) uint8.

    ``alpha`` is the colour's weight; ``colors``: one RGB colour per class (default: the 11 CamVid
    colours); pixels whose value has no colour (void, ignore) keep the image.
    """
    rgb = to_rgb(image)
    mask = np.asarray(mask)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask {mask.shape} and image {rgb.shape[:2]} differ in size")
    colors = list(colors) if colors is not None else list(CAMVID_COLORS)
    color = colorize(mask, colors).astype(np.float32)
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * color
    valid = (mask >= 0) & (mask < len(colors))
    return np.where(valid[..., None], np.round(blended), rgb).astype(np.uint8)


# --------------------------------------------------------------------------------------
# to the model's grid and back


def prepare(rgb: np.ndarray, size: Sequence[int], mean=MEAN, std=STD,
            resize: str = "stretch") -> tuple[torch.Tensor, tuple[int, int]]:
    """(H, W, 3) uint8 -> normalised (3, h, w) at the model's ``size`` and the (h', w') region
    that holds the image (the rest is letterbox padding)."""
    if resize not in ("stretch", "letterbox"):
        raise ValueError(f"prepare resizes with stretch or letterbox, got {resize!r}")
    h, w = int(size[0]), int(size[1])
    inner = (h, w)
    if resize == "letterbox":
        scale = min(h / rgb.shape[0], w / rgb.shape[1])
        inner = (min(h, max(1, round(rgb.shape[0] * scale))), min(w, max(1, round(rgb.shape[1] * scale))))
    x = EvalTransform(inner, mean, std)(rgb, _NO_LABEL)["image"]
    if inner != (h, w):
        x = F.pad(x, (0, w - inner[1], 0, h - inner[0]))
    return x, inner


def to_mask(logits: torch.Tensor, region: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """Logits (C, h, w) -> (H, W) uint8 argmax after a bilinear resize of ``region`` to ``size``."""
    logits = logits[None, :, : region[0], : region[1]].float()
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits, size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)
    return logits.argmax(dim=1)[0].to("cpu", torch.uint8).numpy()


class TorchModel:
    """A TransUNet as a predict engine: (B, 3, H, W) normalised -> logits (B, C, H, W)."""

    def __init__(self, model: nn.Module, mean=MEAN, std=STD, class_names=None, channels_last: bool = False,
                 eval_mode: str = "resize", eval_flip: bool = False):
        self.device = next(model.parameters()).device
        # channels_last: faster convolutions; only for a model this object owns
        self.model = prepare_model(model.eval(), self.device, channels_last)
        self.channels_last = channels_last
        self.img_size = tuple(model.config.img_size)
        self.mean, self.std = list(mean), list(std)
        self.class_names = list(class_names) if class_names else None
        self.eval_mode, self.eval_flip = eval_mode, eval_flip  # how its run validated

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(move_images(images, self.device, self.channels_last)).float()


def _engine(model) -> TorchModel | OnnxModel:
    return TorchModel(model) if isinstance(model, nn.Module) else model


def policy(engine, resize: str | None = None, flip: bool | None = None) -> tuple[str, bool]:
    """(resize policy, flip) with the engine's own (how its run validated) where None."""
    if resize is None:
        resize = "sliding" if getattr(engine, "eval_mode", "resize") == "sliding" else "stretch"
    if resize not in RESIZE_POLICIES:
        raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {resize!r}")
    return resize, bool(getattr(engine, "eval_flip", False)) if flip is None else flip


def predict_batch(model, images: Sequence, resize: str | None = None, flip: bool | None = None) -> list[np.ndarray]:
    """``predict`` for several images (any sizes) -> list of (H, W) masks: one forward pass for
    all with stretch/letterbox, one sliding pass per image with sliding."""
    engine = _engine(model)
    resize, flip = policy(engine, resize, flip)
    rgbs = [to_rgb(im) for im in images]
    if resize == "sliding":
        masks = []
        for rgb in rgbs:
            x = EvalTransform(None, engine.mean, engine.std)(rgb, _NO_LABEL)["image"][None]
            logits = predict_logits(engine, x, mode="sliding", flip=flip)
            masks.append(to_mask(logits[0], rgb.shape[:2], rgb.shape[:2]))
        return masks
    prepared = [prepare(rgb, engine.img_size, engine.mean, engine.std, resize) for rgb in rgbs]
    logits = predict_logits(engine, torch.stack([x for x, _ in prepared]), flip=flip)
    return [to_mask(lg, region, rgb.shape[:2]) for lg, (_, region), rgb in zip(logits, prepared, rgbs)]


def predict(model, image: Image.Image | np.ndarray, resize: str | None = None, flip: bool | None = None) -> np.ndarray:
    """Class-index mask (H, W) uint8 of one image (PIL image or (H, W, 3) uint8 array, any size).

    ``model``: a TransUNet (inputs normalised with the ImageNet mean/std), a ``TorchModel``
    (own mean/std) or an ``OnnxModel``. ``resize``: "stretch", "letterbox" or "sliding";
    ``flip``: flip test-time augmentation; None: the checkpoint's own (module docstring).
    """
    return predict_batch(model, [image], resize, flip)[0]


# --------------------------------------------------------------------------------------
# loading


def load_predictor(checkpoint: str | os.PathLike = DEFAULT_CHECKPOINT, engine: str = "auto",
                   device: str | None = None, onnx: str | os.PathLike | None = None) -> TorchModel | OnnxModel:
    """The engine for ``checkpoint``: "torch", "onnx" (``onnx`` file, default: checkpoint with
    suffix .onnx) or "auto" (module docstring). Errors: ``FileNotFoundError``/``ValueError``/
    ``MissingExtraError`` with messages naming the file and the fix."""
    from .data.download import sha256_file

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    model, meta = load_model(checkpoint, pick_device(device))
    trained = meta.get("train_config") or {}
    torch_engine = TorchModel(model, meta["mean"], meta["std"], meta["class_names"], channels_last=True,
                              eval_mode=trained.get("eval_mode", "resize"),
                              eval_flip=bool(trained.get("eval_flip", False)))
    onnx = Path(onnx) if onnx is not None else Path(checkpoint).with_suffix(".onnx")
    on_cpu = next(model.parameters()).device.type == "cpu"
    if engine == "torch" or (engine == "auto" and not (on_cpu and ONNX_FASTER_ON_CPU and onnx.is_file())):
        return torch_engine
    try:
        onnx_engine = OnnxModel(onnx, device=str(next(model.parameters()).device))
        if onnx_engine.metadata.get("checkpoint_sha256") != sha256_file(checkpoint):
            raise ValueError(f"{onnx} was exported from another checkpoint than {checkpoint}; re-export it: "
                             f"python -m tutorial_lib.export --checkpoint {checkpoint} --format onnx --out {onnx}")
    except (MissingExtraError, ValueError) as err:
        if engine == "onnx":
            raise
        print(f"note: using PyTorch, not ONNX Runtime: {err}", file=sys.stderr)
        return torch_engine
    return onnx_engine


def collect_inputs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, folders as their image files (sorted, not recursive); ``ValueError`` if none."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"{p}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return files


def output_names(files: Sequence[Path]) -> list[str]:
    """Output stem per input (its file stem); ``ValueError`` when two inputs share one."""
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen and seen[f.stem] != f:
            raise ValueError(f"{seen[f.stem]} and {f} would both be written as {f.stem}_mask.png: "
                             "predict them into different --out folders or rename one")
        seen[f.stem] = f
    return [f.stem for f in files]


def _save_png(array: np.ndarray, path: Path) -> None:
    with atomic_output(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def run(files: Sequence[Path], engine, out: Path, batch_size: int = 1, resize: str | None = None,
        alpha: float = 0.5, progress: bool = True, flip: bool | None = None) -> tuple[int, list[str]]:
    """Predict ``files`` in batches and write the PNGs; returns (images written, error messages)."""
    names = output_names(files)
    out.mkdir(parents=True, exist_ok=True)
    colors = class_colors(len(engine.class_names or CAMVID_COLORS))
    written, errors = 0, []
    bar = tqdm(total=len(files), desc="predict", unit="img", disable=not progress or len(files) < 2,
               dynamic_ncols=True)
    for start in range(0, len(files), batch_size):
        batch = []
        for f, name in zip(files[start:start + batch_size], names[start:start + batch_size]):
            try:
                batch.append((read_image(f), name))
            except ImageError as err:
                errors.append(str(err))
                bar.update(1)
        if batch:
            masks = predict_batch(engine, [rgb for rgb, _ in batch], resize, flip)
            for (rgb, name), mask in zip(batch, masks):
                _save_png(mask, out / f"{name}_mask.png")
                _save_png(overlay(rgb, mask, alpha, colors), out / f"{name}_overlay.png")
                written += 1
                bar.update(1)
    bar.close()
    return written, errors


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tutorial_lib.predict",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Segment images with a trained TransUNet. For each input NAME.ext it writes\n"
                    "OUT/NAME_mask.png (8-bit, pixel value = class index) and OUT/NAME_overlay.png,\n"
                    "both at the input's own size (any H x W).",
        epilog=(
            "resizing (--resize): the model runs at the size it was trained at (192x256 for the shipped\n"
            "checkpoint). stretch: resize the image to it (area when shrinking, bilinear when\n"
            "enlarging; the evaluation protocol), resize the logits back to the input's H x W (bilinear),\n"
            "argmax. letterbox: scale to fit keeping the aspect ratio, pad bottom/right with the mean\n"
            "colour, crop the padding off the logits, resize back. sliding: model-size windows over the\n"
            "image at its own size, logits averaged where they overlap. Default: the policy the checkpoint\n"
            "was validated with (sliding for --eval-mode sliding runs, else stretch), and its --eval-flip.\n"
            "images: grayscale -> repeated to RGB; palette -> its colours; alpha dropped; CMYK/YCbCr ->\n"
            "RGB; 16-bit -> the high byte (value >> 8); floating-point images are refused.\n"
            "engines: auto (default) uses ONNX Runtime on the CPU when the --onnx file exists and was exported\n"
            "from --checkpoint, PyTorch otherwise (and on a GPU). ONNX Runtime measured 1.3x (batch 1) and\n"
            "1.5x (batch 8) the throughput of PyTorch eager on the CPU (1 thread) at 360x480, every round\n"
            "(benchmarks/results/predict_speed.json). Export it once, beside the checkpoint, e.g.\n"
            "python -m tutorial_lib.export --checkpoint checkpoints/camvid_tiny.pt --format onnx \\\n"
            "    --out checkpoints/camvid_tiny.onnx\n"
            "exit status: 0 ok; 2 bad arguments or any input refused (the others are still written)."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files and/or folders of images")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT),
                   help="a tutorial_lib.train checkpoint (default: the shipped checkpoints/camvid_tiny.pt)")
    p.add_argument("--out", required=True, help="output folder (created if needed)")
    p.add_argument("--engine", choices=ENGINES, default="auto", help="see below")
    p.add_argument("--onnx", default=None,
                   help="ONNX file from python -m tutorial_lib.export (default: CHECKPOINT with suffix .onnx)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--batch-size", type=_positive, default=1,
                   help="images per forward pass (default 1: faster per image than 8 on the CPU, see above)")
    p.add_argument("--resize", choices=RESIZE_POLICIES, default=None, help="see below")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="average with the mirrored image's prediction (default: as the checkpoint was validated)")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the class colours in the overlay")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_output_path(args.out, is_dir=True)
        files = collect_inputs(args.inputs)
        output_names(files)
        engine = load_predictor(args.checkpoint, args.engine, args.device, args.onnx)
        kind = "ONNX Runtime" if isinstance(engine, OnnxModel) else "PyTorch"
        resize, flip = policy(engine, args.resize, args.flip)
        print(f"{len(files)} image(s), {kind}, model input {engine.img_size[0]}x{engine.img_size[1]}, "
              f"resize {resize}{' + flip' if flip else ''}", file=sys.stderr)
        written, errors = run(files, engine, Path(args.out), args.batch_size, resize, args.alpha,
                              not args.no_progress, flip)
    except (OSError, ValueError, MissingExtraError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    print(f"wrote {written} mask(s) and overlay(s) to {args.out}")
    return 2 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
