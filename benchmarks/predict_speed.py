"""Predict throughput on the CPU: PyTorch eager against ONNX Runtime, side by side in one run.

    python -m benchmarks.predict_speed                      # 360x480 images, batch 1 and 8, 3 rounds
    python -m benchmarks.predict_speed --rounds 5 --out benchmarks/results/predict_speed.json

What is timed is the whole ``tutorial_lib.predict.predict_batch`` call on 360x480 RGB images
(CamVid val frames when the data is there, drawn street scenes otherwise): resize to the
model's 192x256 and normalise, the forward pass, bilinear resize of the logits to 360x480 and
argmax. ``torch`` is the checkpoint in PyTorch (fp32, channels_last, as ``predict --engine
torch`` runs it); ``onnx`` is the same checkpoint exported by ``tutorial_lib.export`` and run by
ONNX Runtime with as many intra-op threads as torch uses. Each round runs both engines, in
alternating order (one untimed warm-up batch, then ``--iters`` timed batches each), so they
share whatever load the machine has; img/s is the median over rounds and the speed-up the
median of the per-round ratios. The JSON file records the machine (CPU model, cores, threads)
and the versions. ``python -m tutorial_lib.predict --engine auto`` follows this measurement.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.speed import loadavg, machine_info

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ("torch", "onnx")


def test_images(n: int, size: tuple[int, int] = (360, 480)) -> tuple[list[np.ndarray], str]:
    """``n`` RGB uint8 images of ``size``: CamVid val frames if present, else drawn ones."""
    from tutorial_lib.data import camvid_dir, street_image, street_label
    from tutorial_lib.predict import read_image

    root = camvid_dir()
    files = sorted((root / "val").glob("*.png"))[:n] if root is not None else []
    images = [im for im in map(read_image, files) if im.shape[:2] == size]
    if len(images) == n:
        return images, f"CamVid val ({files[0].name} ...)"
    rng = np.random.default_rng(0)
    return [street_image(street_label(*size, rng), rng) for _ in range(n)], "drawn street scenes"


def time_engine(engine, images: list[np.ndarray], batch: int, iters: int) -> float:
    """img/s of ``predict_batch`` over ``iters`` batches (after one untimed batch)."""
    from tutorial_lib.predict import predict_batch

    n = len(images)
    chunks = [[images[(i * batch + j) % n] for j in range(batch)] for i in range(iters + 1)]
    predict_batch(engine, chunks[0])
    start = time.perf_counter()
    for chunk in chunks[1:]:
        predict_batch(engine, chunk)
    return iters * batch / (time.perf_counter() - start)


def agreement(engines: dict, images: list[np.ndarray]) -> float:
    """Fraction of pixels where both engines predict the same class."""
    from tutorial_lib.predict import predict_batch

    a, b = (predict_batch(engines[e], images) for e in ENGINES)
    return float(np.mean([np.mean(x == y) for x, y in zip(a, b)]))


def measure(engines: dict, images, batch_sizes, rounds: int, iters: dict) -> list[dict]:
    rows = []
    for batch in batch_sizes:
        per_round = {e: [] for e in ENGINES}
        for r in range(rounds):
            order = ENGINES if r % 2 == 0 else ENGINES[::-1]
            for e in order:
                per_round[e].append(time_engine(engines[e], images, batch, iters[batch]))
        ratios = [o / t for o, t in zip(per_round["onnx"], per_round["torch"])]
        rows.append({
            "batch_size": batch,
            "img_per_s": {e: round(statistics.median(v), 3) for e, v in per_round.items()},
            "img_per_s_rounds": {e: [round(x, 3) for x in v] for e, v in per_round.items()},
            "onnx_speedup": round(statistics.median(ratios), 3),
            "onnx_speedup_rounds": [round(x, 3) for x in ratios],
        })
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["| batch | PyTorch eager img/s | ONNX Runtime img/s | ONNX / PyTorch |", "|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['batch_size']} | {r['img_per_s']['torch']:.2f} | {r['img_per_s']['onnx']:.2f} "
                     f"| {r['onnx_speedup']:.2f}x |")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.predict_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "camvid_tiny.pt"))
    p.add_argument("--onnx", default=None, help="an exported ONNX file (default: export to a temporary folder)")
    p.add_argument("--batch-size", type=int, nargs="+", default=[1, 8])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--images", type=int, default=8, help="distinct 360x480 images cycled through")
    p.add_argument("--iters-b1", type=int, default=8, help="timed batches per round at batch 1")
    p.add_argument("--iters", type=int, default=2, help="timed batches per round at other batch sizes")
    p.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads (default: torch's)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "predict_speed.json"))
    return p.parse_args(argv)


def main(argv=None) -> dict:
    import onnxruntime

    from tutorial_lib.export import export_checkpoint_file
    from tutorial_lib.predict import load_predictor

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = loadavg()
    images, source = test_images(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        onnx = args.onnx or export_checkpoint_file(args.checkpoint, "onnx", Path(tmp) / "model.onnx")
        engines = {e: load_predictor(args.checkpoint, e, "cpu", onnx) for e in ENGINES}
        same = agreement(engines, images)
        iters = {b: args.iters_b1 if b == 1 else args.iters for b in args.batch_size}
        rows = measure(engines, images, args.batch_size, args.rounds, iters)
    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": "python -m benchmarks.predict_speed " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {**machine_info(), "onnxruntime_threads": torch.get_num_threads(),
                    "onnxruntime": onnxruntime.__version__, "numpy": np.__version__},
        "load_start": load_start,
        "load_end": loadavg(),
        "checkpoint": Path(args.checkpoint).name,
        "images": f"{len(images)} x {images[0].shape[0]}x{images[0].shape[1]} RGB, {source}",
        "timed": "predict_batch: resize + normalise, forward, logits resized to 360x480, argmax",
        "rounds": args.rounds,
        "iters": {str(b): n for b, n in iters.items()},
        "pixel_agreement_torch_vs_onnx": round(same, 6),
        "results": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    m = result["machine"]
    print(f"{m['cpu']}, {m['logical_cpus']} logical CPUs, {m['torch_threads']} thread(s); torch {m['torch']}, "
          f"onnxruntime {m['onnxruntime']}; load {load_start} -> {result['load_end']}")
    print(f"{result['images']}; masks agree on {100 * same:.4f} % of pixels")
    print(format_table(rows))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
