"""What the DDP gradient-stride fix buys: a channels_last TransUNet trained by two processes.

    python -m benchmarks.ddp_strides                        # tiny, 192x256, batch 4 per process, 2 processes
    python -m benchmarks.ddp_strides --rounds 5 --steps 10 --out benchmarks/results/ddp_strides.json

``torchrun --nproc_per_node 2`` with a ``channels_last`` model used to print PyTorch's "Grad strides
do not match bucket view strides" warning: a 1x1 convolution's (C_out, C_in, 1, 1) weight in
channels_last has strides (C_in, 1, C_in, C_in); DDP lays its bucket view out with those strides,
while autograd (whose gradient layout contract ignores the strides of size-1 dimensions) keeps the
convolution's weight gradient with the standard strides (C_in, 1, 1, 1). The reducer compares them
literally and copies the gradient into the bucket every step.
``tutorial_lib.train.distributed.standard_strides_where_layouts_agree`` relabels those weights
(same bytes) before the engine wraps the model.

This benchmark trains two copies of one model side by side in the same two processes (gloo, one
CPU thread each): ``as-is`` (channels_last, not relabelled: the warning path) and ``relabelled``
(the engine's path). Each round times ``--steps`` optimiser steps of each, after ``--warmup``
untimed ones, in alternating order, so both share the machine's load. It reports the median
milliseconds per step, the median of the per-round ratios, whether each path raised the warning,
and how many bytes of gradient the relabelling spares a copy of.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from benchmarks.speed import loadavg, machine_info
from tutorial_lib.runtime import autocast_context, resolve_precision
from tutorial_lib.train.distributed import mislabelled_parameters, standard_strides_where_layouts_agree
from tutorial_lib.transunet import TransUNet, get_config

PATHS = ("as-is", "relabelled")
WARNING = "Grad strides do not match bucket view strides"


def build_model(args, relabel: bool) -> tuple[nn.Module, int, int]:
    """The channels_last model of one path -> (model, relabelled parameters, their bytes)."""
    torch.manual_seed(0)
    model = TransUNet(get_config(args.preset, img_size=tuple(args.img_size), num_classes=11))
    model = model.to(memory_format=torch.channels_last)
    odd = mislabelled_parameters(model)
    count, nbytes = len(odd), sum(p.numel() * p.element_size() for p in odd)
    if relabel:
        standard_strides_where_layouts_agree(model)
    return model, count, nbytes


def _steps(ddp, opt, batch, n: int, precision: str) -> list[float]:
    """``n`` timed optimiser steps (both processes start each step together) -> seconds each."""
    images, labels = batch
    times = []
    for _ in range(n):
        dist.barrier()
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast_context("cpu", precision):
            loss = F.cross_entropy(ddp(images).float(), labels)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return times


@contextlib.contextmanager
def stderr_text():
    """Capture what this process writes to file descriptor 2 (C++ warnings included) -> a reader."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as f:
        os.dup2(f.fileno(), 2)
        captured = []
        try:
            yield lambda: captured[0] if captured else ""
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            captured.append(f.read().decode(errors="replace"))
            sys.stderr.write(captured[0])


def worker(rank: int, world: int, tmp: str, args) -> None:
    torch.set_num_threads(args.threads)  # the processes meet through a file: no network port to pick
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world)
    precision = resolve_precision(args.precision, "cpu")
    gen = torch.Generator().manual_seed(rank)
    h, w = args.img_size
    batch = (torch.randn(args.batch_size, 3, h, w, generator=gen).contiguous(memory_format=torch.channels_last),
             torch.randint(0, 11, (args.batch_size, h, w), generator=gen))
    runs, relabelled, warned = {}, {}, {}
    for path in PATHS:
        model, count, nbytes = build_model(args, relabel=path == "relabelled")
        ddp = nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        with stderr_text() as text:  # the reducer warns from C++ (once per process), not through `warnings`
            _steps(ddp, opt, batch, args.warmup, precision)
        warned[path] = ([line.strip() for line in text().splitlines() if "sizes() =" in line]
                        if WARNING in text() else None)  # the strides PyTorch reports, or None: no warning
        runs[path], relabelled[path] = (ddp, opt), (count, nbytes)
    per_round = {p: [] for p in PATHS}
    for r in range(args.rounds):
        order = PATHS if r % 2 == 0 else PATHS[::-1]
        for path in order:
            ddp, opt = runs[path]
            _steps(ddp, opt, batch, args.warmup, precision)
            times = _steps(ddp, opt, batch, args.steps, precision)
            per_round[path].append(statistics.median(times))
    if rank == 0:
        (Path(tmp) / "rank0.json").write_text(json.dumps({"per_round_s": per_round, "warned": warned,
                                                 "relabelled": relabelled, "precision": precision}))
    dist.destroy_process_group()


def summarise(raw: dict) -> dict:
    per_round = raw["per_round_s"]
    ratios = [a / b for a, b in zip(per_round["as-is"], per_round["relabelled"])]
    count, nbytes = raw["relabelled"]["as-is"]
    return {
        "paths": {p: {"ms_per_step": 1e3 * statistics.median(per_round[p]),
                      "per_round_ms": [round(1e3 * t, 2) for t in per_round[p]],
                      "grad_strides_warning": raw["warned"][p] is not None,
                      "warning_detail": raw["warned"][p]} for p in PATHS},
        "as_is_over_relabelled": statistics.median(ratios),
        "per_round_ratio": [round(x, 4) for x in ratios],
        "relabelled_parameters": count,
        "relabelled_mb": nbytes / 2**20,
        "precision": raw["precision"],
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--img-size", type=int, nargs=2, default=[192, 256], metavar=("H", "W"))
    p.add_argument("--batch-size", type=int, default=4, help="images per process per step (default 4)")
    p.add_argument("--world", type=int, default=2, help="processes (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=10, help="timed steps per path per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before each timed block")
    p.add_argument("--out", default=None, help="JSON file to write")
    args = p.parse_args(argv)
    if min(args.batch_size, args.world, args.threads, args.rounds, args.steps) < 1 or args.warmup < 1:
        p.error("--batch-size, --world, --threads, --rounds, --steps and --warmup must be at least 1")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    load_start = loadavg()
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(worker, args=(args.world, tmp, args), nprocs=args.world, join=True)
        raw = json.loads((Path(tmp) / "rank0.json").read_text())
    doc = {"benchmark": "ddp_strides", "created": datetime.datetime.now().isoformat(timespec="seconds"),
           "machine": {**machine_info(), "torch_threads": args.threads, "load_start": load_start,
                       "load_end": loadavg()},
           "settings": {k: getattr(args, k) for k in ("preset", "img_size", "batch_size", "world", "threads",
                                                      "precision", "rounds", "steps", "warmup")},
           "results": summarise(raw),
           "command": "python -m benchmarks.ddp_strides " + " ".join(sys.argv[1:] if argv is None else argv)}
    res = doc["results"]
    for p in PATHS:
        r = res["paths"][p]
        print(f"{p:>10}: {r['ms_per_step']:8.1f} ms/step (median of rounds {r['per_round_ms']}), "
              f"warning: {'yes' if r['grad_strides_warning'] else 'no'}")
    print(f"as-is / relabelled: x{res['as_is_over_relabelled']:.3f} (per round {res['per_round_ratio']}); "
          f"{res['relabelled_parameters']} parameters relabelled, {res['relabelled_mb']:.2f} MB of gradient "
          f"no longer copied per step; {args.world} processes x {args.threads} thread(s), {res['precision']}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.out}")
    return doc


if __name__ == "__main__":
    main()
