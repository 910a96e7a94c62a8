"""Several processes under ``torchrun`` (DistributedDataParallel).

Each process trains on its share of the data (``DistributedSampler``; gloo on the CPU, nccl on
GPUs); losses and the validation confusion matrix are summed over the processes; only rank 0
writes files and shows progress bars. Without ``torchrun`` (``WORLD_SIZE`` unset or 1)
everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, Subset

from ..runtime import pick_device


@dataclass
class Dist:
    """This process's place: ``rank`` of ``world`` processes (``local_rank`` on its machine)."""

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


def init_distributed(device_arg: str | None) -> tuple[Dist, torch.device]:
    """Join the process group that ``torchrun`` describes in the environment (if any) -> (Dist, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), pick_device(device_arg)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_arg)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    initialised_here = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        initialised_here = True
    return Dist(rank, world, local_rank, initialised_here), device


def shutdown(d: Dist) -> None:
    """Leave the process group if ``init_distributed`` joined it."""
    if d.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


def all_sum(tensor: torch.Tensor, d: Dist, device: torch.device) -> torch.Tensor:
    """``tensor`` summed over all processes (a copy on ``tensor``'s device)."""
    if not d.active:
        return tensor
    t = tensor.to(device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.to(tensor.device)


def mislabelled_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters contiguous in the standard layout whose strides are not the standard ones (a 1x1
    convolution weight after ``channels_last``): the ones DDP copies a gradient of every step."""
    return [p for p in model.parameters() if p.is_contiguous() and p.stride() != torch.empty(p.shape).stride()]


def standard_strides_where_layouts_agree(model: nn.Module) -> int:
    """Give every parameter that is contiguous in both layouts (a 1x1 convolution's
    (C_out, C_in, 1, 1) weight after ``channels_last``: strides (C_in, 1, C_in, C_in) vs
    (C_in, 1, 1, 1), the same bytes in the same order) the standard strides -> their count.

    DDP lays each gradient bucket view out with its parameter's strides, (C_in, 1, C_in, C_in);
    autograd's gradient layout contract ignores the strides of size-1 dimensions, so it keeps the
    weight gradient the convolution produced, with standard strides (C_in, 1, 1, 1). The reducer
    compares strides literally, warns "Grad strides do not match bucket view strides" and copies
    the gradient into the bucket every step. Same memory, same values: only the labels change.
    (What the copy costs: ``python -m benchmarks.ddp_strides``.)
    """
    mislabelled = mislabelled_parameters(model)
    for p in mislabelled:
        p.data = p.data.clone(memory_format=torch.contiguous_format)
    return len(mislabelled)


def wrap_model(model: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel when several processes train, else itself."""
    if not d.active:
        return model
    standard_strides_where_layouts_agree(model)
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def shard(dataset: Dataset, d: Dist) -> Dataset:
    """Every ``world``-th item from ``rank`` on: each item on exactly one process, no padding."""
    return Subset(dataset, range(d.rank, len(dataset), d.world)) if d.active else dataset
