"""Does bf16 autocast cost accuracy? Short CamVid trainings in fp32 and in bf16, same seeds.

    python -m benchmarks.bf16_accuracy                        # tiny at 96x128, 64 images, 8 epochs, seeds 0 1
    python -m benchmarks.bf16_accuracy --seeds 0 1 2 --epochs 12 --out benchmarks/results/bf16_accuracy.json

Each run is ``tutorial_lib.train.train`` with everything equal except ``precision``, validated
on the whole val split at full label resolution (always evaluated in fp32, so only training
differs). The spread between seeds of the same precision is the noise the bf16-fp32 gap must
be compared with. On a CPU without native bf16 (no ``avx512_bf16``/``amx_bf16``) oneDNN
emulates it with the same arithmetic (bf16 operands, fp32 accumulation; the last bits may
differ), so the accuracy comparison carries over; only the speed does not. Not a test: it
takes minutes and its output is a measurement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.speed import loadavg, machine_info
from tutorial_lib.evaluate import EvalTransform, camvid_split, evaluate_model, metrics_report
from tutorial_lib.train import TrainConfig, load_checkpoint, train


def run(precision: str, seed: int, args, work: Path) -> dict:
    cfg = TrainConfig(
        config="tiny", img_size=tuple(args.img_size), epochs=args.epochs, batch_size=args.batch_size,
        max_images=args.max_images, max_val_images=0, cache=True, data=args.data, precision=precision,
        seed=seed, threads=args.threads, out=str(work / f"{precision}-{seed}"), progress=False,
    )
    start = time.perf_counter()
    result = train(cfg)
    seconds = time.perf_counter() - start
    model, _ = load_checkpoint(result.last_checkpoint)
    val = camvid_split(args.data, "val", transform=EvalTransform(model.config.img_size), progress=False)
    loader = torch.utils.data.DataLoader(val, batch_size=8)
    report = metrics_report(evaluate_model(model, loader, precision="fp32"))
    return {"precision": precision, "seed": seed, "miou": report["miou"], "pixel_accuracy": report["pixel_accuracy"],
            "final_train_loss": result.history[-1]["train_loss"], "train_seconds": round(seconds, 1),
            "per_class_iou": report["per_class_iou"]}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bf16_accuracy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="CamVid folder (default: tutorial_lib.data.camvid_dir())")
    p.add_argument("--img-size", type=int, nargs=2, default=(96, 128))
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--max-images", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    info = machine_info()
    print(f"machine: {info['cpu']}, {info['torch_threads']} threads, native bf16: {info['cpu_native_bf16']}, "
          f"GPU: {info['gpu']}, torch {info['torch']}; load {loadavg()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for precision in ("fp32", "bf16"):
                row = run(precision, seed, args, Path(tmp))
                rows.append(row)
                print(f"{precision} seed {seed}: val mIoU {100 * row['miou']:.2f}%, pixel accuracy "
                      f"{100 * row['pixel_accuracy']:.2f}%, final train loss {row['final_train_loss']:.4f}, "
                      f"{row['train_seconds']:.0f} s", flush=True)

    def mious(prec):
        return [100 * r["miou"] for r in rows if r["precision"] == prec]

    fp32, bf16 = mious("fp32"), mious("bf16")
    gaps = [b - f for f, b in zip(fp32, bf16)]
    print(f"\nval mIoU fp32 {statistics.mean(fp32):.2f}% (seeds {', '.join(f'{m:.2f}' for m in fp32)}), "
          f"bf16 {statistics.mean(bf16):.2f}% (seeds {', '.join(f'{m:.2f}' for m in bf16)})")
    print(f"bf16 - fp32 per seed: {', '.join(f'{g:+.2f}' for g in gaps)} points; "
          f"fp32 seed-to-seed range {max(fp32) - min(fp32):.2f} points")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"machine": info, "load": loadavg(), "args": vars(args),
                                              "runs": rows}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
