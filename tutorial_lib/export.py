"""Export a trained TransUNet to ONNX or TorchScript, and run the ONNX file with ONNX Runtime.

    python -m tutorial_lib.export --checkpoint checkpoints/camvid_tiny.pt --format onnx \\
        --out checkpoints/camvid_tiny.onnx
    python -m tutorial_lib.export --checkpoint checkpoints/camvid_tiny.pt --format torchscript \\
        --out camvid_tiny.ts.pt

Both files map a normalised image batch ``image`` (B, 3, H, W) float32 to ``logits``
(B, num_classes, H, W) float32, where (H, W) is the size the model was trained at
(``config.img_size``, 192x256 for the shipped checkpoint): **the batch axis is dynamic, H and W
are fixed** (the learned position embeddings belong to one token grid). Normalisation (ImageNet
mean/std) and the resizing to and from (H, W) happen outside the file, in
``tutorial_lib.predict``; the numbers they need are stored in the file (ONNX metadata
``tutorial_lib.*``, TorchScript extra file ``tutorial_lib.json``): image size, mean, std, class
names and the SHA-256 of the checkpoint it came from.

How: ``torch.onnx.export(..., dynamo=False)``, the TorchScript-based exporter, opset 17. It
needs only the ``onnx`` package (the ``torch.export``-based ``dynamo=True`` exporter needs
``onnxscript`` too). The model is exported as it runs in PyTorch, unchanged: the einops
rearranges trace to Reshape/Transpose with the batch size read from the input,
``F.scaled_dot_product_attention`` becomes MatMul/Softmax/MatMul, the weight-standardised convs
are folded into constant kernels; nothing in the model was changed to make it exportable.
TorchScript is ``torch.jit.trace`` of the same model, for LibTorch and other runtimes that read
it (``torch.jit`` is deprecated in PyTorch 2.13: ``torch.jit.load`` warns, but works). Files
are written to a temporary name and renamed, so a failed export leaves nothing behind.

ONNX needs the optional extra: ``pip install -e ".[export]"`` (onnx, onnxruntime).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import atomic_output, load_checkpoint

FORMATS = ("onnx", "torchscript")
OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"
META_PREFIX = "tutorial_lib."
TORCHSCRIPT_META = "tutorial_lib.json"
INSTALL_HINT = 'pip install -e ".[export]"'


class MissingExtraError(ImportError):
    """onnx / onnxruntime are not installed; the message says how to install them."""


def require(module: str):
    """Import ``module`` (onnx, onnxruntime) or raise ``MissingExtraError`` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"{module} is not installed; it comes with the optional extra: {INSTALL_HINT} "
            f"(or pip install onnx onnxruntime)"
        ) from err


class _Logits(nn.Module):
    """The model as a pure tensor -> tensor function (no optional arguments to trace)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def export_metadata(model: nn.Module, meta: dict | None = None, checkpoint_sha256: str | None = None) -> dict:
    """What a predictor needs besides the graph: image size, mean/std, class names, how the run
    validated (``eval_mode``, ``eval_flip``), source hash."""
    from .data import CAMVID_CLASSES, MEAN, STD

    meta = meta or {}
    names = list(meta.get("class_names") or CAMVID_CLASSES[: model.config.num_classes])
    trained = meta.get("train_config") or {}
    return {
        "img_size": list(model.config.img_size),
        "mean": [float(m) for m in meta.get("mean", MEAN)],
        "std": [float(s) for s in meta.get("std", STD)],
        "class_names": names,
        "num_classes": int(model.config.num_classes),
        "eval_mode": trained.get("eval_mode", "resize"),
        "eval_flip": bool(trained.get("eval_flip", False)),
        "checkpoint_sha256": checkpoint_sha256 or "",
    }


@contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Silence the expected warnings: shape checks evaluated once at trace time, and the
    legacy-exporter deprecation notice (the choice is explained in the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\..*")
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated.*")
        yield


def _example(model: nn.Module, batch: int = 2) -> torch.Tensor:
    h, w = model.config.img_size
    device = next(model.parameters()).device
    return torch.randn(batch, model.config.in_channels, h, w, generator=torch.Generator().manual_seed(0)).to(device)


def export_onnx(model: nn.Module, out: str | os.PathLike, metadata: dict | None = None,
                opset: int = OPSET) -> Path:
    """Write ``model`` as ONNX: ``image`` (B, 3, H, W) -> ``logits`` (B, C, H, W), B dynamic.

    ``metadata`` (``export_metadata``) is stored as ``tutorial_lib.<key>`` JSON strings.
    """
    onnx = require("onnx")
    model = model.eval()
    out = Path(out)
    with atomic_output(out) as tmp, _quiet_tracing(), torch.no_grad():
        torch.onnx.export(
            _Logits(model), (_example(model),), str(tmp), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
        proto = onnx.load(str(tmp))
        for key, value in (metadata or {}).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = META_PREFIX + key, json.dumps(value)
        proto.producer_name = "tutorial_lib.export"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return out


def export_torchscript(model: nn.Module, out: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write ``torch.jit.trace(model)`` (B, 3, H, W) -> (B, C, H, W); metadata as an extra file."""
    model = model.eval()
    out = Path(out)
    with atomic_output(out) as tmp, _quiet_tracing(), torch.no_grad():
        traced = torch.jit.trace(_Logits(model), _example(model), check_trace=False)
        torch.jit.save(traced, str(tmp), _extra_files={TORCHSCRIPT_META: json.dumps(metadata or {})})
    return out


def read_onnx_metadata(path: str | os.PathLike) -> dict:
    """The ``tutorial_lib.*`` metadata of an exported ONNX file (decoded JSON values)."""
    onnx = require("onnx")
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key[len(META_PREFIX):]: json.loads(p.value) for p in proto.metadata_props
            if p.key.startswith(META_PREFIX)}


class OnnxModel:
    """An exported ONNX file run by ONNX Runtime: ``(B, 3, H, W)`` float32 -> logits tensor.

    ``img_size``, ``mean``, ``std``, ``class_names``, ``eval_mode``, ``eval_flip`` come from the
    file's metadata.
    ``threads``: ONNX Runtime intra-op threads (default: ``torch.get_num_threads()``, so both
    engines use the same number of cores).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, device: str = "cpu"):
        ort = require("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"ONNX file {self.path} not found; write it with `python -m tutorial_lib.export "
                f"--checkpoint CK --format onnx --out {self.path}`"
            )
        self.metadata = read_onnx_metadata(self.path)
        if "img_size" not in self.metadata:
            raise ValueError(f"{self.path} has no tutorial_lib metadata: export it with tutorial_lib.export")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError("this onnxruntime has no CUDA provider: use --device cpu or --engine torch")
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        self.img_size = tuple(self.metadata["img_size"])
        self.mean, self.std = self.metadata["mean"], self.metadata["std"]
        self.class_names = self.metadata["class_names"]
        self.eval_mode = self.metadata.get("eval_mode", "resize")
        self.eval_flip = bool(self.metadata.get("eval_flip", False))

    def __call__(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(B, 3, H, W) -> logits (B, C, H, W), a CPU float32 tensor."""
        x = images.detach().cpu().float().contiguous().numpy() if isinstance(images, torch.Tensor) \
            else np.ascontiguousarray(images, dtype=np.float32)
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0])


def load_model(checkpoint: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """``(model in eval mode, meta)`` from a ``tutorial_lib.train`` checkpoint (the one place
    predict and export read checkpoints; ``FileNotFoundError``/``ValueError`` with clear messages)."""
    return load_checkpoint(checkpoint, device=device)


def export_checkpoint_file(checkpoint: str | os.PathLike, fmt: str, out: str | os.PathLike) -> Path:
    """Load a ``tutorial_lib.train`` checkpoint and write it as ``fmt`` ("onnx" or "torchscript")."""
    from .data.download import sha256_file

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "onnx":
        require("onnx")  # fail before the slow part
    model, meta = load_model(checkpoint)
    metadata = export_metadata(model, meta, sha256_file(checkpoint))
    writer = export_onnx if fmt == "onnx" else export_torchscript
    return writer(model, out, metadata)


def check_output_path(out: str | os.PathLike, is_dir: bool) -> None:
    """Raise ``ValueError`` when ``out`` cannot be created: a regular file stands on its path."""
    out = Path(out)
    parents = [out] + list(out.parents) if is_dir else list(out.parents)
    for p in parents:
        if p.exists():
            if not p.is_dir():
                raise ValueError(f"{out}: {p} is a regular file, not a folder; choose another output path")
            break
    if not is_dir and out.is_dir():
        raise ValueError(f"{out} is a folder; give a file name, e.g. {out / 'model.onnx'}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tutorial_lib.export",
        description="Export a tutorial_lib.train checkpoint to ONNX (dynamic batch, fixed H x W = the "
                    "training size) or TorchScript. Input: normalised images (B, 3, H, W); output: "
                    "logits (B, classes, H, W). ONNX needs: " + INSTALL_HINT,
    )
    p.add_argument("--checkpoint", default="checkpoints/camvid_tiny.pt",
                   help="a .pt file written by tutorial_lib.train (default: the shipped checkpoint)")
    p.add_argument("--format", choices=FORMATS, default="onnx")
    p.add_argument("--out", required=True, help="the file to write (e.g. model.onnx, model.ts.pt)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_output_path(args.out, is_dir=False)
        out = export_checkpoint_file(args.checkpoint, args.format, args.out)
    except (FileNotFoundError, ValueError, MissingExtraError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({args.format}, {out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
