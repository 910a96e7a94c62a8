"""Train a TransUNet on CamVid from scratch: CPU, one GPU, or several processes (DDP).

Python::

    from tutorial_lib.train import TrainConfig, train, load_checkpoint
    result = train(TrainConfig(config="tiny", epochs=2, max_images=16, out="runs/try"),
                   callback=lambda event: print(event["event"], event.get("loss")))
    model, meta = load_checkpoint(result.best_checkpoint)

Command line (``--help`` lists every option)::

    python -m tutorial_lib.train --config tiny --epochs 40 --cache --out runs/camvid_tiny
    python -m tutorial_lib.train --out runs/camvid_tiny --resume           # continue a stopped run
    torchrun --nproc_per_node 2 -m tutorial_lib.train --config tiny ...    # DistributedDataParallel
    python -m tutorial_lib.train --export runs/camvid_tiny/best.pt checkpoints/camvid_tiny.pt

What a run writes to ``--out``: ``metrics.jsonl`` (one JSON object per epoch), ``last.pt``
(after every epoch) and ``best.pt`` (best validation mIoU). Both are written atomically
(temporary file + ``os.replace``), so a crash never leaves a half-written checkpoint, and
both load with ``torch.load(..., weights_only=True)``.

Recipe and why
--------------
* Loss: ``(1 - w) * CE + w * Dice`` with ``w = --dice-weight`` (0.5 as in the official
  TransUNet), void pixels ignored by both terms; optional class weights on CE
  (``--class-weights median`` computes SegNet's median-frequency balancing on the training
  labels, ``segnet`` uses the published SegNet values).
* Optimiser: AdamW (lr 1e-3, betas 0.9/0.999, weight decay 0.01, no decay on biases,
  norm weights and position embeddings), linear warmup for ``--warmup-epochs`` then
  poly(0.9) decay to 0, gradient-norm clipping at 1.0. The official recipe (SGD lr 0.01,
  momentum 0.9, weight decay 1e-4, poly 0.9, batch 24) fine-tunes an ImageNet-pretrained
  encoder; here everything starts from random weights, with batch 8 and about a thousand
  steps in a CPU budget. Transformers trained from scratch usually do better with
  Adam-type updates and warmup (ViT/DeiT, SETR, Segmenter all use them): Adam's per-parameter step
  sizes cope with the very different gradient scales of convolutions, LayerNorms and
  attention weights at initialisation, and warmup keeps the first, noisy steps from
  wrecking the attention layers. ``--optimizer sgd`` gives the official recipe. (An argued
  choice: the shipped checkpoint's CPU budget left no room for a measured comparison.)
* Time budget: ``--time-limit MINUTES`` makes the poly/cosine decay follow the fraction of
  the budget used (or of the steps, whichever is further) and stops when the time is up,
  so a run on a shared or slow machine still ends with a fully annealed learning rate.
* Augmentation: random rescale around the evaluation scale, random crop of the model's
  input size (padding is void), horizontal flip, colour jitter
  (``tutorial_lib.data.train_transform``). Each sample's augmentation is seeded by
  (seed, epoch, index), so it does not depend on workers, ranks or resuming.
* Validation: full-resolution labels (``tutorial_lib.evaluate``): image resized to the
  model's input size, logits resized back, argmax, confusion matrix over the split.
* Precision: ``--precision auto`` = bf16 autocast on a GPU with bf16 (fp16 + GradScaler on
  an older GPU) and on a CPU with native bf16 (``avx512_bf16`` or ``amx_bf16``), else fp32.
  On a CPU without them bf16 is emulated and slower than fp32. On a CPU shared with other
  busy processes, set ``OMP_WAIT_POLICY=PASSIVE`` (or ``--threads 1``): OpenMP's default
  busy-waiting then costs more than the second thread gains. Model and batches are
  ``channels_last`` (NHWC) by default, on the CPU too: oneDNN's convolutions work on NHWC
  directly, about 1.1x faster training (``--no-channels-last`` to compare).
* Reproducibility: model init, dropout, data order (``DistributedSampler`` seeded with
  (seed, epoch)) and augmentation are seeded; ``--resume`` restores model, optimiser,
  scheduler, scaler and all RNG states, so an interrupted single-process run ends with
  the same weights as an uninterrupted one.
* Multi-process: under ``torchrun`` each process trains on its share of the data
  (``DistributedSampler``; gloo on CPU, nccl on GPU); losses and the confusion matrix are
  summed over processes; only rank 0 writes files and shows progress bars. The batch
  size is per process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm.auto import tqdm

from .data import (
    CAMVID_CLASSES,
    IGNORE_INDEX,
    MEAN,
    NUM_CLASSES,
    SEGNET_CLASS_WEIGHTS,
    STD,
    eval_transform,
    median_frequency_weights,
    train_transform,
)
from .evaluate import EvalTransform, autocast_context, camvid_split, evaluate_model, metrics_report
from .losses import SegmentationLoss
from .transunet import PRESETS, TransUNet, TransUNetConfig, get_config

CHECKPOINT_FORMAT = "tutorial_lib.train/1"
#: The checkpoint shipped with the repository (see checkpoints/README.md); absent from a
#: non-editable install of the package.
SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "camvid_tiny.pt"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


# --------------------------------------------------------------------------------------
# configuration and result


@dataclass
class TrainConfig:
    """Everything a training run depends on (the CLI flags map 1:1 onto these fields)."""

    # model
    config: str = "tiny"                      # a preset of tutorial_lib.transunet (num_classes set to 11)
    img_size: tuple[int, int] | None = None   # model input (H, W), multiple of 16; None: the preset's
    model_overrides: dict = field(default_factory=dict)  # any other TransUNetConfig field
    # data
    data: str | None = None                   # CamVid folder; None: tutorial_lib.data.camvid_dir()
    max_images: int | None = None             # only the first N training images (smoke tests)
    max_val_images: int | None = None         # only the first N validation images; 0: no validation
    cache: bool = False                       # decode all images once and keep them in memory
    workers: int = 0                          # data-loader worker processes
    augment: bool = True
    scale: tuple[float, float] = (0.75, 1.5)  # random rescale range, relative to the evaluation scale
    color_jitter: float = 0.3
    # optimisation
    epochs: int = 30
    batch_size: int = 8                       # per process
    optimizer: str = "adamw"                  # "adamw" or "sgd" (the official recipe)
    lr: float | None = None                   # None: 1e-3 for AdamW, 0.01 for SGD
    weight_decay: float | None = None         # None: 0.01 for AdamW, 1e-4 for SGD
    momentum: float = 0.9                     # SGD only
    schedule: str = "poly"                    # "poly", "cosine" or "constant" (after warmup)
    poly_power: float = 0.9
    warmup_epochs: float = 1.0
    grad_clip: float | None = 1.0             # max gradient norm; None or 0: off
    dice_weight: float = 0.5                  # loss = (1 - w) CE + w Dice
    class_weights: str = "none"               # "none", "median" or "segnet" (CE term)
    # run
    precision: str = "auto"                   # "auto", "fp32", "bf16", "fp16"
    device: str | None = None                 # None: cuda if available, else cpu
    threads: int | None = None                # torch CPU threads (None: torch's default)
    channels_last: bool = True                # NHWC model and batches: faster convolutions (oneDNN, cuDNN)
    seed: int = 0
    out: str = "runs/camvid"
    resume: bool = False                      # continue from OUT/last.pt
    overwrite: bool = False                   # allow starting over in an OUT that holds a run
    val_every: int = 1                        # validate every N epochs (and after the last one)
    time_limit: float | None = None           # seconds: the lr schedule follows the time used, and
                                              # training stops when it is up (epochs is then a cap)
    progress: bool = True                     # tqdm bars (rank 0 only)

    def __post_init__(self):
        if self.img_size is not None:
            self.img_size = (int(self.img_size[0]), int(self.img_size[1]))
        self.scale = (float(self.scale[0]), float(self.scale[1]))
        if self.config not in PRESETS:
            raise ValueError(f"unknown config {self.config!r}; choose one of {list(PRESETS)}")
        checks = {
            "optimizer": (self.optimizer, ("adamw", "sgd")),
            "schedule": (self.schedule, ("poly", "cosine", "constant")),
            "class_weights": (self.class_weights, ("none", "median", "segnet")),
            "precision": (self.precision, PRECISIONS),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.val_every < 1:
            raise ValueError("epochs, batch_size and val_every must be at least 1")
        if not 0.0 <= self.dice_weight <= 1.0:
            raise ValueError(f"dice_weight must be in [0, 1], got {self.dice_weight}")

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else (1e-3 if self.optimizer == "adamw" else 0.01)

    @property
    def base_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 0.01 if self.optimizer == "adamw" else 1e-4

    def model_config(self) -> TransUNetConfig:
        """The TransUNetConfig this run trains (11 CamVid classes)."""
        overrides = {"num_classes": NUM_CLASSES, **self.model_overrides}
        if self.img_size is not None:
            overrides["img_size"] = self.img_size
        return get_config(self.config, **overrides)


@dataclass
class TrainResult:
    """What ``train`` returns. ``model`` is the trained model (weights of the last epoch, eval
    mode, on the training device); ``history`` the per-epoch records also in metrics.jsonl."""

    model: nn.Module
    history: list[dict]
    out_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    best_miou: float | None
    best_epoch: int | None
    seconds: float


class TrainingDivergedError(RuntimeError):
    """The loss became nan or inf; the last good checkpoint is kept."""


# --------------------------------------------------------------------------------------
# device and precision


def cpu_supports_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU computes bf16 natively (x86 flags ``avx512_bf16`` or ``amx_bf16``).

    ``cpuinfo`` is the text of /proc/cpuinfo (read when None; False when it cannot be read).
    Without these instructions PyTorch emulates bf16 matmuls and autocast is slower than fp32.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device``, or CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_precision(precision: str, device: torch.device, cpuinfo: str | None = None) -> str:
    """"auto" -> "bf16" / "fp16" / "fp32" for ``device``; explicit values pass through (with a
    warning for bf16 on a CPU that would emulate it)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu" and cpu_supports_bf16(cpuinfo):
            return "bf16"
        return "fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_supports_bf16(cpuinfo):
        warnings.warn("bf16 on a CPU without avx512_bf16/amx_bf16 is emulated: expect it to be slower than fp32",
                      stacklevel=2)
    return precision


# --------------------------------------------------------------------------------------
# checkpoints


def _atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then os.replace (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


def _rng_state() -> dict:
    """Every RNG state, as tensors/lists/ints only (weights_only-loadable)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss_next": py_state[2]},
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """``torch.load(path, weights_only=True)`` with clear errors for a missing or foreign file."""
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
    target = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    ckpt = read_checkpoint(src)
    model = {}
    for k, v in ckpt["model"].items():
        if v.is_floating_point():
            v = v.float()
            finite_max = torch.finfo(target).max
            v = v.to(target) if v.abs().max() <= finite_max else v
        model[k] = v.contiguous().clone()
    drop = {"model", "optimizer", "scheduler", "scaler", "rng"}
    out = {"model": model, **{k: v for k, v in ckpt.items() if k not in drop},
           "exported_from": str(src), "weights_dtype": dtype}
    dst = Path(dst)
    _atomic_save(out, dst)
    return dst


# --------------------------------------------------------------------------------------
# data


class _SeededAugmentation(Dataset):
    """A CamVid dataset whose random transform is re-seeded from (seed, epoch, index) per item.

    The augmentation of a sample is then a pure function of those three numbers: the same
    with 0 or 8 workers, 1 or 4 processes, and after ``--resume``.
    """

    def __init__(self, dataset, transform, seed: int):
        self.dataset, self.transform, self.seed = dataset, transform, seed
        self.dataset.transform = transform
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        if hasattr(self.transform, "set_random_state"):
            rng = np.random.default_rng([self.seed, self.epoch, index])
            self.transform.set_random_state(rng, random.Random(int(rng.integers(2**62))))
        return self.dataset[index]


def _eval_scale(dataset, size: Sequence[int]) -> float:
    """How much evaluation shrinks an image of this data set to the model's input size."""
    h, w = dataset.load_label(0).shape
    return 0.5 * (size[0] / h + size[1] / w)


# --------------------------------------------------------------------------------------
# schedule and optimiser


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str, power: float = 0.9,
              progress: float | None = None) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based).

    Linear warmup from 1/warmup_steps to 1, then "poly" ``(1 - t)^power``, "cosine"
    ``(1 + cos(pi t)) / 2`` or "constant", with t the fraction of post-warmup steps done,
    or ``progress`` (e.g. the fraction of a time budget used) when that is larger.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    t = min(1.0, max(t, progress or 0.0))
    if schedule == "poly":
        return (1.0 - t) ** power
    return 0.5 * (1.0 + math.cos(math.pi * t))


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    lr, wd = cfg.base_lr, cfg.base_weight_decay
    if cfg.optimizer == "sgd":  # official recipe: decay on every parameter
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=wd)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or "pos_embed" in name or "cls_token" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))


# --------------------------------------------------------------------------------------
# distributed helpers


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def _init_distributed(device_arg: str | None) -> tuple[_Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(), pick_device(device_arg)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_arg)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    initialised_here = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        initialised_here = True
    return _Dist(rank, world, local_rank, initialised_here), device


def _all_sum(tensor: torch.Tensor, d: _Dist, device: torch.device) -> torch.Tensor:
    if not d.active:
        return tensor
    t = tensor.to(device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.to(tensor.device)


# --------------------------------------------------------------------------------------
# training


def _clean(x):
    """float for JSON: nan/inf -> None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def train(cfg: TrainConfig, callback: Callable[[dict], None] | None = None) -> TrainResult:
    """Train (or resume) a run described by ``cfg``; see the module docstring.

    ``callback(event)`` is called (on rank 0 only) with a dict:

    * after every optimiser step: ``{"event": "step", "epoch", "step" (1-based, in the
      epoch), "steps_per_epoch", "global_step", "loss", "ce", "dice", "lr"}``;
    * after every epoch: ``{"event": "epoch", ...}`` with the record also appended to
      metrics.jsonl (``epoch``, ``train_loss``, ``train_ce``, ``train_dice``, ``val_miou``,
      ``val_per_class_iou`` (name -> IoU), ``val_pixel_accuracy``, ``val_mean_dice``, ``lr``,
      ``img_per_s``, ``seconds``, ...).

    Raises ``TrainingDivergedError`` when the loss becomes nan/inf (``OUT/last.pt`` keeps
    the last good epoch).
    """
    d, device = _init_distributed(cfg.device)
    try:
        return _train(cfg, callback, d, device)
    finally:
        if d.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, callback, d: _Dist, device: torch.device) -> TrainResult:
    start_time = time.perf_counter()
    out = Path(cfg.out)
    last_path, best_path, metrics_path = out / "last.pt", out / "best.pt", out / "metrics.jsonl"
    if cfg.resume and not last_path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint {last_path} to resume from (start without --resume).")
    if not cfg.resume and last_path.is_file() and not cfg.overwrite:
        raise FileExistsError(
            f"{out} already holds a run ({last_path}). Pass --resume to continue it, --overwrite to "
            "start over (its checkpoints will be replaced), or choose another --out."
        )
    precision = resolve_precision(cfg.precision, device)
    channels_last = cfg.channels_last
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    show = cfg.progress and d.main

    # --- seeds and model -------------------------------------------------------------
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model_cfg = cfg.model_config()
    model = TransUNet(model_cfg).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    # --- data ------------------------------------------------------------------------
    train_set = camvid_split(cfg.data, "train", cache=cfg.cache, max_images=cfg.max_images, progress=show)
    size = model_cfg.img_size
    if cfg.augment:
        base = _eval_scale(train_set, size)
        transform = train_transform(size, scale=(base * cfg.scale[0], base * cfg.scale[1]),
                                    color_jitter=cfg.color_jitter or None)
    else:
        transform = eval_transform(size)
    train_data = _SeededAugmentation(train_set, transform, cfg.seed)
    sampler = DistributedSampler(train_data, num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.seed)
    drop_last = len(sampler) > cfg.batch_size  # never drop the only batch of a tiny data set
    steps_per_epoch = len(sampler) // cfg.batch_size if drop_last else math.ceil(len(sampler) / cfg.batch_size)

    val_loader = None
    if cfg.max_val_images != 0:
        val_set = camvid_split(cfg.data, "val", transform=EvalTransform(size), cache=cfg.cache,
                               max_images=cfg.max_val_images, progress=show)
        shard = Subset(val_set, range(d.rank, len(val_set), d.world))  # no padding: every image once
        val_loader = DataLoader(shard, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers,
                                pin_memory=device.type == "cuda")

    class_weights = None
    if cfg.class_weights == "median":
        class_weights = median_frequency_weights(train_set).tolist()
    elif cfg.class_weights == "segnet":
        class_weights = list(SEGNET_CLASS_WEIGHTS)
    criterion = SegmentationLoss(cfg.dice_weight, class_weights, IGNORE_INDEX).to(device)

    # --- optimisation ----------------------------------------------------------------
    optimizer = _optimizer(model, cfg)
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total_steps)
    # Run clock (seconds of training so far, across resumes; rank 0's value on every rank).
    clock = {"now": 0.0, "base": 0.0, "warmup_end": None}

    def time_progress(step: int) -> float | None:
        """Post-warmup fraction of the time budget used (None without a budget)."""
        if cfg.time_limit is None or step < warmup_steps:
            return None
        if clock["warmup_end"] is None:
            clock["warmup_end"] = clock["now"]
        start = clock["warmup_end"]
        return (clock["now"] - start) / max(cfg.time_limit - start, 1e-9)

    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, total_steps, warmup_steps, cfg.schedule, cfg.poly_power, time_progress(step)),
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    # --- resume ----------------------------------------------------------------------
    history: list[dict] = []
    start_epoch, global_step = 1, 0
    best_miou, best_epoch = None, None
    if cfg.resume:
        ckpt = read_checkpoint(last_path)
        stored = config_from_dict(ckpt["model_config"])
        if stored != model_cfg:
            raise ValueError(
                f"--resume: {last_path} was trained with a different model config:\n  stored {stored}\n"
                f"  now    {model_cfg}\nUse the same --config/--img-size, or another --out."
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        _set_rng_state(ckpt["rng"])
        history = list(ckpt.get("history", []))
        start_epoch, global_step = ckpt["epoch"] + 1, ckpt["global_step"]
        best_miou, best_epoch = ckpt.get("best_miou"), ckpt.get("best_epoch")
        clock["now"] = clock["base"] = float(ckpt.get("elapsed", 0.0))
        clock["warmup_end"] = ckpt.get("warmup_end_elapsed")
        if ckpt.get("time_limit_reached"):
            start_epoch = cfg.epochs + 1  # that run is complete
        volatile = {"resume", "overwrite", "progress", "epochs", "workers", "threads", "device", "time_limit"}
        changed = sorted(k for k, v in ckpt.get("train_config", {}).items()
                         if k not in volatile and dataclasses.asdict(cfg).get(k, v) != v)
        if changed and d.main:
            tqdm.write(f"note: resuming with settings that differ from the stored run: {', '.join(changed)}")
        if d.main:
            # the file may hold an epoch whose checkpoint was never written: rewrite from the checkpoint
            metrics_path.write_text("".join(json.dumps(r) + "\n" for r in history))
            tqdm.write(f"resuming {out} after epoch {ckpt['epoch']} (global step {global_step})")
    elif d.main:
        out.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text("")
        for stale in (best_path, last_path):
            stale.unlink(missing_ok=True)

    net = model
    if d.active:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    if d.main and show:
        tqdm.write(
            f"training {model_cfg.name} at {size[0]}x{size[1]} on {device} ({precision}), {d.world} process(es), "
            f"{len(train_set)} train images, {steps_per_epoch} steps/epoch, epochs {start_epoch}..{cfg.epochs}"
        )

    def checkpoint(epoch: int, record: dict, val_report: dict | None) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": model.state_dict(),
            "model_config": config_to_dict(model_cfg),
            "train_config": dataclasses.asdict(cfg),
            "class_names": list(CAMVID_CLASSES),
            "mean": list(MEAN),
            "std": list(STD),
            "ignore_index": IGNORE_INDEX,
            "epoch": epoch,
            "global_step": global_step,
            "best_miou": best_miou,
            "best_epoch": best_epoch,
            "metrics": val_report,
            "record": record,
            "history": history,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": _rng_state(),
            "elapsed": clock["now"],
            "warmup_end_elapsed": clock["warmup_end"],
            "time_limit_reached": time_up,
            "precision": precision,
            "world_size": d.world,
            "torch_version": str(torch.__version__),
        }

    # --- epochs ----------------------------------------------------------------------
    time_up = False
    session_start = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        sampler.set_epoch(epoch)
        train_data.epoch = epoch
        loader = DataLoader(
            train_data, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
            drop_last=drop_last, pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch),  # worker seeds only
        )
        net.train()
        sums = torch.zeros(4, dtype=torch.float64)  # loss, ce, dice (x images), images
        bar = tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", disable=not show, leave=False,
                   dynamic_ncols=True, mininterval=1.0)
        for step, (images, labels) in enumerate(bar, start=1):
            images = images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            with autocast_context(device, precision):
                logits = net(images)
            loss, parts = criterion(logits, labels, return_parts=True)

            # one all-reduce per step: "is every loss finite?" and rank 0's clock
            now = clock["base"] + time.perf_counter() - session_start
            sync = torch.tensor([float(torch.isfinite(loss.detach()).item()), now if d.main else 0.0],
                                dtype=torch.float64)
            if d.active:
                sync = _all_sum(sync, d, device)
            clock["now"] = sync[1].item()
            if sync[0].item() < d.world:
                raise TrainingDivergedError(
                    f"The loss became non-finite ({loss.item()} on this process) at epoch {epoch}, "
                    f"step {step}/{steps_per_epoch} "
                    f"(global step {global_step + 1}, lr {scheduler.get_last_lr()[0]:.3g}, precision "
                    f"{precision}). Training stopped; the last good checkpoint is "
                    f"{last_path if last_path.is_file() else '(none: no epoch finished)'}. Try a lower "
                    "--lr (e.g. half), --precision fp32, or a smaller --grad-clip; then --resume or start over."
                )

            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            global_step += 1

            n = images.shape[0]
            values = (loss.item(), parts["ce"].item(), parts["dice"].item())
            sums += torch.tensor([values[0] * n, values[1] * n, values[2] * n, n], dtype=torch.float64)
            if show:
                bar.set_postfix(loss=f"{values[0]:.3f}", lr=f"{lr:.2e}", refresh=False)
            if callback is not None and d.main:
                callback({"event": "step", "epoch": epoch, "step": step, "steps_per_epoch": steps_per_epoch,
                          "global_step": global_step, "loss": values[0], "ce": values[1], "dice": values[2],
                          "lr": lr})
            if cfg.time_limit is not None and clock["now"] >= cfg.time_limit:
                time_up = True
                break
        bar.close()
        train_seconds = time.perf_counter() - epoch_start
        sums = _all_sum(sums, d, device)
        images_seen = max(sums[3].item(), 1.0)

        # --- validation ------------------------------------------------------------------
        val_report, val_seconds = None, 0.0
        if val_loader is not None and (epoch % cfg.val_every == 0 or epoch == cfg.epochs or time_up):
            val_start = time.perf_counter()
            metrics = evaluate_model(model, val_loader, NUM_CLASSES, device, precision, progress=show,
                                     desc=f"val {epoch}", channels_last=channels_last)
            metrics.cm = _all_sum(metrics.cm, d, device)
            val_report = metrics_report(metrics)
            val_seconds = time.perf_counter() - val_start
            if val_report["miou"] is not None and (best_miou is None or val_report["miou"] > best_miou):
                best_miou, best_epoch = val_report["miou"], epoch

        record = {
            "epoch": epoch,
            "global_step": global_step,
            "train_loss": _clean(sums[0].item() / images_seen),
            "train_ce": _clean(sums[1].item() / images_seen),
            "train_dice": _clean(sums[2].item() / images_seen),
            "val_miou": val_report["miou"] if val_report else None,
            "val_per_class_iou": val_report["per_class_iou"] if val_report else None,
            "val_pixel_accuracy": val_report["pixel_accuracy"] if val_report else None,
            "val_mean_dice": val_report["mean_dice"] if val_report else None,
            "lr": _clean(scheduler.get_last_lr()[0]),
            "img_per_s": round(sums[3].item() / train_seconds, 3),
            "train_seconds": round(train_seconds, 2),
            "val_seconds": round(val_seconds, 2),
            "seconds": round(time.perf_counter() - epoch_start, 2),
            "best_miou": best_miou,
            "best_epoch": best_epoch,
            "elapsed": round(clock["now"], 2),
        }
        if time_up:
            record["time_limit_reached"] = True
            record["steps_in_epoch"] = step
        history.append(record)
        if d.main:
            state = checkpoint(epoch, record, val_report)
            _atomic_save(state, last_path)
            if val_report is not None and best_epoch == epoch:
                _atomic_save(state, best_path)
            with open(metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            if cfg.progress:
                miou = "" if record["val_miou"] is None else f"  val mIoU {100 * record['val_miou']:.2f}%"
                tqdm.write(f"epoch {epoch}/{cfg.epochs}  loss {record['train_loss']:.4f}{miou}  "
                           f"lr {record['lr']:.2e}  {record['img_per_s']:.2f} img/s  {record['seconds']:.0f} s")
            if time_up and cfg.progress:
                tqdm.write(f"time limit of {cfg.time_limit:.0f} s reached after {global_step} steps (epoch {epoch}, "
                           f"step {step}/{steps_per_epoch})")
            if callback is not None:
                callback({"event": "epoch", **record})
        if time_up:
            break

    if d.active:
        dist.barrier()
    model.eval()
    return TrainResult(
        model=model,
        history=history,
        out_dir=out,
        last_checkpoint=last_path,
        best_checkpoint=best_path if best_path.is_file() else None,
        best_miou=best_miou,
        best_epoch=best_epoch,
        seconds=time.perf_counter() - start_time,
    )


# --------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m tutorial_lib.train",
        allow_abbrev=False,
        description="Train a TransUNet on CamVid from scratch (CPU, GPU, or torchrun for several processes).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("model")
    g.add_argument("--config", default=defaults.config, choices=PRESETS, help="preset of tutorial_lib.transunet")
    g.add_argument("--img-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="model input size, multiple of 16 (default: the preset's)")
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None, help="CamVid folder (default: tutorial_lib.data.camvid_dir())")
    g.add_argument("--max-images", type=int, default=None, help="only the first N training images")
    g.add_argument("--max-val-images", type=int, default=None, help="only the first N val images (0: no validation)")
    g.add_argument("--cache", action="store_true", help="decode all images once and keep them in memory")
    g.add_argument("--workers", type=int, default=defaults.workers, help="data-loader worker processes")
    g.add_argument("--no-augment", action="store_true", help="no augmentation (just resize)")
    g.add_argument("--scale", type=float, nargs=2, metavar=("LO", "HI"), default=defaults.scale,
                   help="random rescale range relative to the evaluation scale")
    g.add_argument("--color-jitter", type=float, default=defaults.color_jitter)
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=defaults.epochs)
    g.add_argument("--batch-size", type=int, default=defaults.batch_size, help="per process")
    g.add_argument("--optimizer", default=defaults.optimizer, choices=("adamw", "sgd"))
    g.add_argument("--lr", type=float, default=None, help="base learning rate (default 1e-3 AdamW, 0.01 SGD)")
    g.add_argument("--weight-decay", type=float, default=None, help="(default 0.01 AdamW, 1e-4 SGD)")
    g.add_argument("--schedule", default=defaults.schedule, choices=("poly", "cosine", "constant"))
    g.add_argument("--warmup-epochs", type=float, default=defaults.warmup_epochs)
    g.add_argument("--grad-clip", type=float, default=defaults.grad_clip, help="max gradient norm (0: off)")
    g.add_argument("--dice-weight", type=float, default=defaults.dice_weight, help="loss = (1-w) CE + w Dice")
    g.add_argument("--class-weights", default=defaults.class_weights, choices=("none", "median", "segnet"),
                   help="CE class weights: median-frequency from the train labels, or SegNet's published ones")
    g = p.add_argument_group("run")
    g.add_argument("--precision", default=defaults.precision, choices=PRECISIONS)
    g.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--no-channels-last", action="store_true",
                   help="keep NCHW tensors (channels_last is about 1.1x faster on CPU and GPU)")
    g.add_argument("--seed", type=int, default=defaults.seed)
    g.add_argument("--out", default=defaults.out, help="output folder: metrics.jsonl, last.pt, best.pt")
    g.add_argument("--resume", action="store_true",
                   help="continue from OUT/last.pt with the settings stored in it (options given now override them)")
    g.add_argument("--overwrite", action="store_true", help="start over in an OUT that already holds a run")
    g.add_argument("--val-every", type=int, default=defaults.val_every, help="validate every N epochs")
    g.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="training time budget: the lr schedule follows the fraction of it used and training "
                        "stops when it is up (then --epochs is only a cap)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g = p.add_argument_group("export (instead of training)")
    g.add_argument("--export", nargs=2, metavar=("SRC", "DST"), default=None,
                   help="write a small inference checkpoint DST (weights + config, no optimiser) from SRC")
    g.add_argument("--export-dtype", default="fp16", choices=("fp16", "bf16", "fp32"))
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        config=args.config, img_size=tuple(args.img_size) if args.img_size else None, data=args.data,
        max_images=args.max_images, max_val_images=args.max_val_images, cache=args.cache,
        workers=args.workers, augment=not args.no_augment, scale=tuple(args.scale),
        color_jitter=args.color_jitter, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay, schedule=args.schedule,
        warmup_epochs=args.warmup_epochs, grad_clip=args.grad_clip or None, dice_weight=args.dice_weight,
        class_weights=args.class_weights, precision=args.precision, device=args.device, threads=args.threads,
        channels_last=not args.no_channels_last, seed=args.seed,
        out=args.out, resume=args.resume, overwrite=args.overwrite, val_every=args.val_every,
        time_limit=None if args.time_limit is None else 60.0 * args.time_limit,
        progress=not args.no_progress,
    )


# CLI destinations whose TrainConfig field has another name
_DEST_TO_FIELD = {"no_augment": "augment", "no_progress": "progress", "no_channels_last": "channels_last"}


def _explicit_fields(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """TrainConfig fields whose option appears on the command line."""
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    return {
        _DEST_TO_FIELD.get(action.dest, action.dest)
        for action in parser._actions
        if given & set(action.option_strings)
    }


def resume_config(args_cfg: TrainConfig, explicit: set[str]) -> TrainConfig:
    """For ``--resume`` from the command line: the stored run's settings, except those given
    explicitly now (e.g. ``--epochs 60`` to extend a run, ``--workers 4``)."""
    stored = read_checkpoint(Path(args_cfg.out) / "last.pt").get("train_config", {})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    merged = {k: v for k, v in stored.items() if k in known}
    merged.update({f: getattr(args_cfg, f) for f in explicit if f in known})
    merged.update(out=args_cfg.out, resume=True, overwrite=False)
    return TrainConfig(**merged)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.export:
        dst = export_checkpoint(args.export[0], args.export[1], args.export_dtype)
        print(f"wrote {dst} ({dst.stat().st_size / 1e6:.1f} MB)")
        return 0
    try:
        cfg = config_from_args(args)
        if cfg.resume and (Path(cfg.out) / "last.pt").is_file():
            cfg = resume_config(cfg, _explicit_fields(parser, argv))
        result = train(cfg)
    except TrainingDivergedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        best = "n/a" if result.best_miou is None else f"{100 * result.best_miou:.2f}% (epoch {result.best_epoch})"
        print(f"done in {result.seconds:.0f} s; best val mIoU {best}; checkpoints in {result.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
