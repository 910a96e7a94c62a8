"""Checkpoints of ``tutorial_lib.train``: writing them safely, reading them safely.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(..., weights_only=True)`` (no pickled code runs). Keys:

* ``format``: ``"tutorial_lib.train/1"``, checked on read (a newer version is refused with a
  clear message instead of a confusing ``KeyError`` later);
* ``model`` (state dict) and ``model_config`` (``TransUNetConfig`` as a dict): enough to
  rebuild the model (``load_checkpoint``);
* ``class_names``, ``mean``, ``std``, ``ignore_index``: how to feed it and read its output;
* training state for ``--resume``: ``optimizer``, ``scheduler``, ``scaler``, ``rng``
  (``rng_state``), ``epoch``, ``global_step``, ``history``, ``train_config``, ...

Writes are atomic (``atomic_save``): a temporary file in the same folder, flushed and fsynced,
then ``os.replace``. A crash or a full disk never leaves a half-written checkpoint, and the
previous file of that name survives a failed write.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .constants import PROJECT_ROOT
from .data import CAMVID_CLASSES, MEAN, STD
from .transunet import TransUNet, TransUNetConfig

FORMAT_NAME = "tutorial_lib.train"
FORMAT_VERSION = 1
CHECKPOINT_FORMAT = f"{FORMAT_NAME}/{FORMAT_VERSION}"
#: The checkpoint shipped with the repository (see checkpoints/README.md); absent from a
#: non-editable install of the package.
SHIPPED_CHECKPOINT = PROJECT_ROOT / "checkpoints" / "camvid_tiny.pt"
EXPORT_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


class CheckpointSaveError(OSError):
    """Writing a checkpoint failed (e.g. the disk is full); the previous file is unchanged."""


# --------------------------------------------------------------------------------------
# writing


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder to write to; on success fsync it and
    ``os.replace`` it onto ``path`` (usual permissions), on any failure delete it.

    ``path`` is either the complete new file or, after a failure, its previous content: the one
    way this package writes files (checkpoints, ONNX/TorchScript exports, predicted masks).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` through ``atomic_output``: a temporary file, fsync, then ``os.replace``.

    On any failure the temporary file is removed and ``path`` keeps its previous content; an
    ``OSError`` (disk full, no permission, ...) becomes a ``CheckpointSaveError`` that says so.
    """
    path = Path(path)
    try:
        with atomic_output(path) as tmp, open(tmp, "wb") as f:
            torch.save(obj, f)
    except OSError as err:
        raise _save_error(path, err) from err
    return path


def _save_error(path: Path, err: OSError) -> CheckpointSaveError:
    previous = f"the previous {path.name} is unchanged" if path.is_file() else f"no {path.name} was written"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = f"Free some space in {path.parent} (or write somewhere else) and try again."
    else:
        fix = f"Check that {path.parent} is a folder you can write to (or write somewhere else)."
    error = CheckpointSaveError(
        f"Could not write {path}: {err.strerror or err}. Nothing half-written is left and {previous}. {fix}"
    )
    error.errno = err.errno
    return error


# --------------------------------------------------------------------------------------
# what goes in


def config_to_dict(config: TransUNetConfig) -> dict:
    """A TransUNetConfig as a plain dict (loadable with weights_only=True)."""
    return dataclasses.asdict(config)


def config_from_dict(d: dict) -> TransUNetConfig:
    """Inverse of ``config_to_dict`` (lists from JSON become tuples again; unknown keys rejected)."""
    fields = {f.name for f in dataclasses.fields(TransUNetConfig)}
    unknown = sorted(set(d) - fields)
    if unknown:
        raise ValueError(f"checkpoint config has unknown field(s) {unknown}: written by a newer tutorial_lib?")
    return TransUNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def rng_state() -> dict:
    """Every RNG state (torch, CUDA, NumPy, Python), as tensors/lists/ints only (weights_only-loadable)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss_next": py_state[2]},
    }


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


# --------------------------------------------------------------------------------------
# reading


def check_format(ckpt: dict, path: str | os.PathLike) -> None:
    """Raise a ValueError naming ``path`` unless ``ckpt["format"]`` is one this version reads."""
    fmt = ckpt.get("format")
    name, _, version = str(fmt).rpartition("/")
    if name != FORMAT_NAME or not version.isdigit():
        raise ValueError(
            f"{path} has checkpoint format {fmt!r}; expected {CHECKPOINT_FORMAT!r} (a file written by "
            "tutorial_lib.train). For the official TransUNet weights use tutorial_lib.pretrained."
        )
    if int(version) > FORMAT_VERSION:
        raise ValueError(
            f"{path} has checkpoint format {fmt!r}, newer than this tutorial_lib reads "
            f"({CHECKPOINT_FORMAT!r}). Update tutorial_lib (git pull; pip install -e .) to load it."
        )


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """``torch.load(path, weights_only=True)`` with clear errors for a missing, foreign or newer file."""
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            found = sorted(p.name for p in path.parent.glob("*.pt"))
            hint = f" Checkpoints in {path.parent}: {', '.join(found) if found else 'none'}."
        raise FileNotFoundError(f"Checkpoint {path} not found.{hint}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise ValueError(f"Cannot read checkpoint {path}: {err}") from err
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_config" not in ckpt:
        raise ValueError(
            f"{path} is not a tutorial_lib.train checkpoint (expected a dict with 'model' and "
            "'model_config'). For the official TransUNet weights use tutorial_lib.pretrained."
        )
    check_format(ckpt, path)
    return ckpt


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[TransUNet, dict]:
    """Rebuild the model from a checkpoint's stored config and load its weights.

    Returns ``(model, meta)``: the TransUNet in eval mode on ``device`` (float32, also when
    the file stores fp16/bf16 weights), and the checkpoint dict without ``"model"`` (config,
    class names, mean/std, epoch, metrics, history, ...).
    """
    ckpt = read_checkpoint(path)
    model = TransUNet(config_from_dict(ckpt["model_config"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    model.load_state_dict(state)
    meta = {k: v for k, v in ckpt.items() if k != "model"}
    meta.setdefault("class_names", list(CAMVID_CLASSES))
    meta.setdefault("mean", list(MEAN))
    meta.setdefault("std", list(STD))
    return model.to(device).eval(), meta


def export_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, dtype: str = "fp16") -> Path:
    """Write a small inference checkpoint: model weights (as ``dtype``: "fp16", "bf16" or
    "fp32") + config, class names, normalisation, metrics and history; no optimiser state.

    A tensor that would overflow fp16 is kept in fp32. ``load_checkpoint`` upcasts to fp32.
    """
    target = EXPORT_DTYPES[dtype]
    ckpt = read_checkpoint(src)
    model = {}
    for k, v in ckpt["model"].items():
        if v.is_floating_point():
            v = v.float()
            v = v.to(target) if v.abs().max() <= torch.finfo(target).max else v
        model[k] = v.contiguous().clone()
    drop = {"model", "optimizer", "scheduler", "scaler", "rng"}
    out = {"model": model, **{k: v for k, v in ckpt.items() if k not in drop},
           "exported_from": str(src), "weights_dtype": dtype}
    return atomic_save(out, dst)
