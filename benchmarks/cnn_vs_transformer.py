"""Does the transformer help? ``tiny`` (TransUNet) against ``tiny-cnn`` (the same ResNet stages,
projection, decoder and head, no transformer) under the same wall-clock training budget.

    python -m benchmarks.cnn_vs_transformer --minutes 5 --out benchmarks/results/cnn_vs_transformer.json
    python -m benchmarks.cnn_vs_transformer --minutes 0.2 --max-images 16 --max-val-images 8   # smoke test

Both models are trained by ``tutorial_lib.train.train`` with the recipe of the shipped checkpoint
(``checkpoints/README.md``: AdamW, CE + Dice with median-frequency class weights, batch 8,
192x256, seed 0) and ``time_limit`` = the budget (training time only: no validation during
training, setup not counted). The two runs are interleaved epoch by epoch (each resumes from its
``last.pt``, which the engine makes exact), so that both see the same load on a shared machine;
``--no-interleave`` trains one to its limit, then the other (``--order`` chooses which first).
Each is then evaluated on the val split at full label resolution (``tutorial_lib.evaluate``'s
protocol, fp32). The JSON (``--out``) holds, per model: val mIoU, per-class IoU, pixel
accuracy, parameters, GFLOPs per image (forward, at the training size), training seconds and
CPU seconds, optimiser steps, images seen, and the 1-minute load average at every slice
boundary (min, max, mean); plus the machine. On a CPU shared with other jobs a wall-clock budget
buys a different amount of CPU time from run to run: compare ``train_cpu_seconds`` and
``images_seen`` too. Not a test: it takes minutes and its output is one measurement (one seed,
one budget).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from benchmarks.speed import loadavg, machine_info
from tutorial_lib.evaluate import EvalTransform, camvid_split, evaluate_model, metrics_report
from tutorial_lib.profile import summarize_config
from tutorial_lib.train import TrainConfig, load_checkpoint, train

MODELS = ("tiny", "tiny-cnn")


class _Pause(Exception):
    """Raised by the callback after an epoch: the other model trains next (this one resumes later)."""


def make_config(name: str, args, work: Path) -> TrainConfig:
    """The run of ``name``: the shipped checkpoint's recipe, ``args.minutes`` of training, no validation."""
    return TrainConfig(
        config=name, img_size=tuple(args.img_size), epochs=1000, time_limit=60.0 * args.minutes,
        batch_size=args.batch_size, class_weights="median", dice_weight=0.5, max_images=args.max_images,
        max_val_images=0, cache=True, check=False, data=args.data, precision="fp32", threads=args.threads,
        seed=args.seed, out=str(work / name), progress=args.progress,
    )


def train_interleaved(cfgs: dict[str, TrainConfig], interleave: bool) -> dict[str, dict]:
    """Train every config until its time limit; with ``interleave``, one epoch at a time in turn (each run
    resumes from its ``last.pt``, exactly), so that all models share the machine's load alike.

    Returns per model: the TrainResult, the CPU seconds of its training steps (process time between step
    events; the first step of each slice is not counted) and the load averages at every slice boundary."""
    runs = {name: {"result": None, "cpu": 0.0, "loads": [], "slices": 0} for name in cfgs}
    while any(r["result"] is None for r in runs.values()):
        for name, cfg in cfgs.items():
            run = runs[name]
            if run["result"] is not None:
                continue
            clock = {"last": None}

            def callback(event, run=run, clock=clock):
                now = time.process_time()
                if event["event"] == "step":
                    if clock["last"] is not None:
                        run["cpu"] += now - clock["last"]
                    clock["last"] = now
                elif interleave and not event.get("time_limit_reached"):
                    raise _Pause

            run["loads"].append(loadavg())
            try:
                run["result"] = train(dataclasses.replace(cfg, resume=run["slices"] > 0), callback=callback)
            except _Pause:
                pass
            run["slices"] += 1
            run["loads"].append(loadavg())
            print(f"  {name}: slice {run['slices']} done, load {run['loads'][-1]}", flush=True)
    return runs


def evaluate(name: str, run: dict, args) -> dict:
    """Val metrics of a trained run (full label resolution, fp32) and its size, time and load."""
    result = run["result"]
    history = result.history
    steps = history[-1]["global_step"]
    cfg = result.model.config
    size = summarize_config(cfg)
    model, _ = load_checkpoint(result.last_checkpoint)
    val = camvid_split(args.data, "val", transform=EvalTransform(model.config.img_size),
                       max_images=args.max_val_images, progress=False)
    start = time.perf_counter()
    report = metrics_report(evaluate_model(model, DataLoader(val, batch_size=8), precision="fp32"))
    loads = [load[0] for load in run["loads"] if load]
    return {
        "model": name, "use_transformer": cfg.use_transformer, "img_size": list(cfg.img_size),
        "params": size["params"], "gflops": round(size["gflops"], 3),
        "budget_seconds": 60.0 * args.minutes, "train_seconds": round(history[-1]["elapsed"], 1),
        "train_cpu_seconds": round(run["cpu"], 1), "slices": run["slices"], "epochs_started": history[-1]["epoch"],
        "steps": steps, "images_seen": steps * args.batch_size, "final_train_loss": history[-1]["train_loss"],
        "load_1min": {"min": min(loads), "max": max(loads), "mean": round(sum(loads) / len(loads), 2)} if loads else None,
        "val_images": len(val), "eval_seconds": round(time.perf_counter() - start, 1),
        "miou": report["miou"], "pixel_accuracy": report["pixel_accuracy"], "mean_dice": report["mean_dice"],
        "per_class_iou": report["per_class_iou"],
    }


def format_table(rows: list[dict]) -> str:
    """Per-class IoU (%) side by side, then mIoU, pixel accuracy, size and training figures."""
    names = list(rows[0]["per_class_iou"])
    width = max(len(n) for n in names + ["images seen"]) + 2
    lines = [f"{'':<{width}}" + "".join(f"{r['model']:>10}" for r in rows)]
    for n in names:
        lines.append(f"{n:<{width}}" + "".join(f"{100 * r['per_class_iou'][n]:10.1f}" for r in rows))
    lines.append(f"{'mIoU':<{width}}" + "".join(f"{100 * r['miou']:10.1f}" for r in rows))
    lines.append(f"{'pixel acc.':<{width}}" + "".join(f"{100 * r['pixel_accuracy']:10.1f}" for r in rows))
    lines.append(f"{'params (M)':<{width}}" + "".join(f"{r['params'] / 1e6:10.2f}" for r in rows))
    lines.append(f"{'GFLOPs':<{width}}" + "".join(f"{r['gflops']:10.2f}" for r in rows))
    lines.append(f"{'train s':<{width}}" + "".join(f"{r['train_seconds']:10.0f}" for r in rows))
    lines.append(f"{'train s (CPU)':<{width}}" + "".join(f"{r['train_cpu_seconds']:10.0f}" for r in rows))
    lines.append(f"{'images seen':<{width}}" + "".join(f"{r['images_seen']:10d}" for r in rows))
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cnn_vs_transformer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0, help="training budget per model (wall clock)")
    p.add_argument("--data", default=None, help="CamVid folder (default: tutorial_lib.data.camvid_dir())")
    p.add_argument("--img-size", type=int, nargs=2, default=(192, 256), metavar=("H", "W"))
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-images", type=int, default=None, help="only the first N training images")
    p.add_argument("--max-val-images", type=int, default=None, help="only the first N val images")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--order", nargs=2, default=MODELS, choices=MODELS, help="which model trains first")
    p.add_argument("--no-interleave", action="store_true",
                   help="train one model to its time limit, then the other (default: one epoch each in turn)")
    p.add_argument("--progress", action="store_true", help="progress bars while training")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if sorted(args.order) != sorted(MODELS):
        p.error(f"--order must name both models once: {' '.join(MODELS)}")

    info = machine_info()
    print(f"machine: {info['cpu']}, {info['logical_cpus']} logical CPUs, {info['torch_threads']} torch threads, "
          f"GPU: {info['gpu']}, torch {info['torch']}; load {loadavg()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cfgs = {name: make_config(name, args, Path(tmp)) for name in args.order}
        runs = train_interleaved(cfgs, interleave=not args.no_interleave)
        for name in args.order:
            row = evaluate(name, runs[name], args)
            rows.append(row)
            print(f"{name}: {row['steps']} steps in {row['train_seconds']:.0f} s ({row['train_cpu_seconds']:.0f} s "
                  f"CPU), val mIoU {100 * row['miou']:.2f}%, load {row['load_1min']}", flush=True)
    rows.sort(key=lambda r: MODELS.index(r["model"]))
    print(format_table(rows))
    result = {"machine": info, "args": {k: v for k, v in vars(args).items() if k != "progress"}, "runs": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
