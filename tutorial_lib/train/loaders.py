"""The batches a run trains and validates on.

Training: random rescale around the evaluation scale, random crop of the model's input size
(padding is void), horizontal flip, colour jitter (``tutorial_lib.data.train_transform``).
Each sample's augmentation is seeded by (seed, epoch, index), so it does not depend on
workers, processes or resuming; the order comes from a ``DistributedSampler`` seeded with
(seed, epoch). Validation: images at the model's input size, labels at full resolution
(``tutorial_lib.evaluate``'s protocol). The data is CamVid or a folder data set
(``tutorial_lib.data.open_split``), checked pair by pair before training (``check_data``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..data import (
    SEGNET_CLASS_WEIGHTS,
    ClassTable,
    EvalTransform,
    check_dataset,
    eval_transform,
    median_frequency_weights,
    open_split,
    resolve_data_dir,
    train_transform,
)
from ..evaluate import eval_input_size
from .config import TrainConfig
from .distributed import Dist, all_sum, shard


class DataCheckError(ValueError):
    """The data check (``tutorial_lib.data.check``) found faults that would stop training;
    the message is its report."""


class SeededAugmentation(Dataset):
    """A data set (CamVid, a ``SegmentationFolder``) whose random transform is re-seeded from (seed, epoch, index) per item.

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


def eval_scale(dataset, size: Sequence[int], mode: str = "resize") -> float:
    """How much evaluation shrinks an image of this data set: to the model's input size
    (``mode`` "resize"), not at all ("sliding": model-size windows at full resolution)."""
    if mode == "sliding":
        return 1.0
    h, w = dataset.load_label(0).shape
    return 0.5 * (size[0] / h + size[1] / w)


@dataclass
class TrainData:
    """The training split, its seeded augmentation and this process's sampler."""

    dataset: Dataset            # the split itself (labels for class weights, len for messages)
    augmented: SeededAugmentation
    sampler: DistributedSampler
    batch_size: int
    drop_last: bool
    steps_per_epoch: int

    def loader(self, epoch: int, cfg: TrainConfig, device: torch.device) -> DataLoader:
        """This epoch's batches (order and augmentation seeded by (seed, epoch))."""
        self.sampler.set_epoch(epoch)
        self.augmented.epoch = epoch
        return DataLoader(
            self.augmented, batch_size=self.batch_size, sampler=self.sampler, num_workers=cfg.workers,
            drop_last=self.drop_last, pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch),  # worker seeds only
        )


def train_data(cfg: TrainConfig, size: Sequence[int], d: Dist, progress: bool) -> TrainData:
    """The training split of ``cfg.data`` with its augmentation, sampled for process ``d``."""
    dataset = open_split(cfg.data, "train", cfg.classes, cache=cfg.cache, max_images=cfg.max_images,
                         progress=progress)
    if cfg.augment:
        base = eval_scale(dataset, size, cfg.eval_mode)
        transform = train_transform(size, scale=(base * cfg.scale[0], base * cfg.scale[1]),
                                    color_jitter=cfg.color_jitter or None)
    else:
        transform = eval_transform(size)
    augmented = SeededAugmentation(dataset, transform, cfg.seed)
    sampler = DistributedSampler(augmented, num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.seed)
    drop_last = len(sampler) > cfg.batch_size  # never drop the only batch of a tiny data set
    steps = len(sampler) // cfg.batch_size if drop_last else math.ceil(len(sampler) / cfg.batch_size)
    return TrainData(dataset, augmented, sampler, cfg.batch_size, drop_last, steps)


def val_loader(cfg: TrainConfig, size: Sequence[int], d: Dist, device: torch.device,
               progress: bool) -> DataLoader | None:
    """This process's share of the validation split (None with ``max_val_images=0``)."""
    if cfg.max_val_images == 0:
        return None
    dataset = open_split(cfg.data, "val", cfg.classes, transform=EvalTransform(eval_input_size(cfg.eval_mode, size)),
                         cache=cfg.cache, max_images=cfg.max_val_images, progress=progress)
    return DataLoader(shard(dataset, d), batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers,
                      pin_memory=device.type == "cuda")


def class_weights(cfg: TrainConfig, dataset, table: ClassTable) -> list[float] | None:
    """Cross-entropy class weights: none, median-frequency of ``dataset``'s labels, SegNet's
    (CamVid's 11 classes), or the class table's ``weight`` entries."""
    if cfg.class_weights == "median":
        return median_frequency_weights(dataset, table.num_classes).tolist()
    if cfg.class_weights == "segnet":
        if table.num_classes != len(SEGNET_CLASS_WEIGHTS):
            raise ValueError(f"--class-weights segnet gives CamVid's {len(SEGNET_CLASS_WEIGHTS)} classes; the data "
                             f"has {table.num_classes}: use median or table")
        return list(SEGNET_CLASS_WEIGHTS)
    if cfg.class_weights == "table":
        if table.weights is None:
            raise ValueError(f"--class-weights table: the class table ({table.source}) gives no \"weight\" per "
                             "class; add one to every class, or use --class-weights median")
        return list(table.weights)
    return None


def check_data(cfg: TrainConfig, d: Dist, device: torch.device, progress: bool) -> None:
    """Read every pair of the splits this run uses (``check_dataset``, on rank 0 only); raise
    ``DataCheckError`` with the report when training would fail. Skipped with ``check=False``."""
    if not cfg.check:
        return
    failed = torch.zeros(1, dtype=torch.float64)
    report = None
    if d.main:
        splits = ["train"] + (["val"] if cfg.max_val_images != 0 else [])
        table = cfg.class_table()
        report = check_dataset(resolve_data_dir(cfg.data), table, splits, progress=progress)
        failed[0] = float(not report.ok)
        if progress and report.ok:
            print(report.summary(), flush=True)
    if all_sum(failed, d, device).item() > 0:
        text = report.format() if report is not None else "(see the report of process 0)"
        raise DataCheckError(
            f"the data check found faults that would stop training; nothing was written.\n{text}\n"
            f"Fix the files listed (`python -m tutorial_lib.data.check {cfg.data or 'DIR'}` checks again), "
            "or pass --no-check to train anyway."
        )
