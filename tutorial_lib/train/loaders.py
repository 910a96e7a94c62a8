"""The batches a run trains and validates on.

Training: random rescale around the evaluation scale, random crop of the model's input size
(padding is void), horizontal flip, colour jitter (``tutorial_lib.data.train_transform``).
Each sample's augmentation is seeded by (seed, epoch, index), so it does not depend on
workers, processes or resuming; the order comes from a ``DistributedSampler`` seeded with
(seed, epoch). Validation: images at the model's input size, labels at full resolution
(``tutorial_lib.evaluate``'s protocol).
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
    EvalTransform,
    eval_transform,
    median_frequency_weights,
    train_transform,
)
from ..evaluate import camvid_split
from .config import TrainConfig
from .distributed import Dist, shard


class SeededAugmentation(Dataset):
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


def eval_scale(dataset, size: Sequence[int]) -> float:
    """How much evaluation shrinks an image of this data set to the model's input size."""
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
    dataset = camvid_split(cfg.data, "train", cache=cfg.cache, max_images=cfg.max_images, progress=progress)
    if cfg.augment:
        base = eval_scale(dataset, size)
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
    dataset = camvid_split(cfg.data, "val", transform=EvalTransform(size), cache=cfg.cache,
                           max_images=cfg.max_val_images, progress=progress)
    return DataLoader(shard(dataset, d), batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers,
                      pin_memory=device.type == "cuda")


def class_weights(cfg: TrainConfig, dataset) -> list[float] | None:
    """Cross-entropy class weights: none, median-frequency of ``dataset``'s labels, or SegNet's."""
    if cfg.class_weights == "median":
        return median_frequency_weights(dataset).tolist()
    if cfg.class_weights == "segnet":
        return list(SEGNET_CLASS_WEIGHTS)
    return None
