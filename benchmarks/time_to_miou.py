"""Time to accuracy: train named recipes for a wall-clock budget each, validate at fixed times.

    python -m benchmarks.time_to_miou                                 # baseline, fullres-crops; 2 min each
    python -m benchmarks.time_to_miou --recipes baseline hires unweighted --minutes 15 --eval-every 3
    python -m benchmarks.time_to_miou --list                          # the recipes and what they change

Each recipe is a set of ``TrainConfig`` overrides (the ``RECIPES`` table below) trained with
the project's engine, ``tutorial_lib.train.train``, under ``time_limit`` = ``--minutes``: the
learning-rate schedule follows the fraction of the budget used and training stops when it is
up, so every recipe gets the same training time and ends annealed (a budget shorter than the
one-epoch warmup ends inside the warmup). The engine's own per-epoch validation is off
(``max_val_images=0``): an epoch lasts minutes on a CPU, too coarse for a curve.

How the curve is measured (the design, in short): the engine's step callback is called after
every optimiser step; when the engine's training clock (``RunClock``: seconds since the first
epoch started, set-up and data caching excluded) has passed the next ``--eval-every`` mark,
the callback copies the model's weights (a ``state_dict`` clone, milliseconds) and training
goes on. The copies are evaluated after training, so **evaluation time never counts as
training time**; the copying time is reported (``snapshot_seconds``). Each point is
(training minutes at the copy, val mIoU): intermediate points on an evenly spaced subset of
``--max-val-images`` val images, and a last point on the same subset at the end of the budget;
the final model is also evaluated on the whole val split (``final``, unless ``--quick``).
Evaluation is ``tutorial_lib.evaluate``'s protocol (image resized to the model's input size,
logits back to the 360x480 label, void ignored), always in fp32.

The engine's step event carries the model, the training-clock reading and the precision, which
is all the callback needs.

Each recipe is evaluated with its own protocol (``eval_mode``, ``eval_flip`` of its config):
the ``sliding`` recipes train on model-size crops of frames near full resolution and evaluate
with model-size windows slid over the full-resolution frame (``tutorial_lib.evaluate``).
Levers not measured here (no engine support): OHEM or Lovasz-softmax losses, warmup as a
fraction of the time budget (warmup is in epochs), a wider or deeper ``tiny`` by name
(``model_overrides`` works from Python, but the checkpoint card would need the new preset).

Writes ``--out/<tag>.json`` (recipes, points, throughput, final per-class IoU, machine, load
average at the start and end) and ``--out/<tag>.png`` (val mIoU against training minutes, one
curve per recipe). Not a test: it takes minutes and its output is a measurement.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from benchmarks.speed import loadavg, machine_info
from tutorial_lib.data import EvalTransform, camvid_dir, open_split, resolve_data_dir
from tutorial_lib.evaluate import eval_input_size, evaluate_model, metrics_report
from tutorial_lib.runtime import prepare_model
from tutorial_lib.train import TrainConfig, train
from tutorial_lib.transunet import TransUNet

#: the recipe of the checkpoint shipped first; the other recipes are changes to it
_FIRST = dict(config="tiny", img_size=(192, 256), batch_size=8, class_weights="median", dice_weight=0.5)

#: name -> (what it changes, TrainConfig overrides). Only options the engine already has.
RECIPES: dict[str, tuple[str, dict]] = {
    "baseline": ("the recipe of the checkpoint shipped first (checkpoints/README.md, last section): tiny at "
                 "192x256, batch 8, median-frequency CE weights + 0.5 Dice, AdamW 1e-3, poly", _FIRST),
    "fullres-crops": ("baseline trained and evaluated at 352x480 (about full resolution): random-scale "
                      "(0.73-1.47x) 352x480 crops of the full-resolution frames", {**_FIRST, "img_size": (352, 480)}),
    "hires": ("baseline at 288x384 (0.8x full resolution)", {**_FIRST, "img_size": (288, 384)}),
    "unweighted": ("baseline without class weights (plain CE + 0.5 Dice)", {**_FIRST, "class_weights": "none"}),
    "ohem": ("unweighted with online hard example mining in the CE term: only pixels whose true-class "
             "probability is below 0.7 (at least 1/16 of them)", {**_FIRST, "class_weights": "none", "ohem": 0.7}),
    "shipped": ("the shipped checkpoint's recipe: unweighted, validated with flip test-time augmentation",
                {**_FIRST, "class_weights": "none", "eval_flip": True}),
    "sliding": ("baseline's model size on 192x256 crops of frames at 0.67-1.33x full resolution; evaluated "
                "with 192x256 windows slid over the full-resolution frame (4 per frame)",
                {**_FIRST, "eval_mode": "sliding", "scale": (0.67, 1.33)}),
    "sliding-flip": ("sliding, evaluated with flip test-time augmentation too (8 passes per frame)",
                     {**_FIRST, "eval_mode": "sliding", "scale": (0.67, 1.33), "eval_flip": True}),
}
DEFAULT_RECIPES = ("baseline", "fullres-crops")


# --------------------------------------------------------------------------------------
# training with weight copies at fixed times


class Snapshots:
    """The step callback: copies the weights each time the training clock passes a mark.

    ``marks``: training seconds (ascending, all below the budget). After training, ``copies``
    holds (seconds, global_step, state_dict) per mark, ``end`` the clock at the last step.
    """

    def __init__(self, marks: list[float]):
        self.marks, self.copies, self.end, self.steps = list(marks), [], 0.0, 0
        self.copy_seconds, self.model_config, self.first_step_at, self.precision = 0.0, None, None, None

    def __call__(self, event: dict) -> None:
        if event["event"] != "step":
            return
        model, now = event["model"], event["elapsed"]
        if self.first_step_at is None:
            self.first_step_at, self.model_config, self.precision = time.perf_counter(), model.config, event["precision"]
        self.end, self.steps = now, event["global_step"]
        if self.marks and now >= self.marks[0]:
            started = time.perf_counter()
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.copies.append((now, event["global_step"], state))
            while self.marks and now >= self.marks[0]:
                self.marks.pop(0)
            self.copy_seconds += time.perf_counter() - started


def recipe_config(overrides: dict, *, minutes: float, data: str | None, seed: int, threads: int | None,
                  out: Path, progress: bool) -> TrainConfig:
    """The TrainConfig of one recipe under the benchmark's budget (engine validation off)."""
    run_settings = dict(time_limit=60.0 * minutes, epochs=10_000, max_val_images=0, cache=True, data=data,
                        seed=seed, threads=threads, out=str(out), overwrite=True, progress=progress)
    return TrainConfig(**{**run_settings, **overrides})


# --------------------------------------------------------------------------------------
# evaluation


def val_subset(data: str | None, size, n: int | None, mode: str = "resize"):
    """The val split at model size ``size`` (full resolution with ``mode`` "sliding"); with
    ``n``: ``n`` evenly spaced images of it."""
    val = open_split(data, "val", transform=EvalTransform(eval_input_size(mode, size)), progress=False)
    if n is None or n >= len(val):
        return val
    return Subset(val, np.linspace(0, len(val) - 1, n).round().astype(int).tolist())


def evaluate(model: torch.nn.Module, dataset, cfg: TrainConfig, batch_size: int = 8) -> dict:
    """``tutorial_lib.evaluate``'s metrics of ``model`` on ``dataset``, fp32, with the recipe's
    ``eval_mode`` and ``eval_flip`` -> report."""
    loader = DataLoader(dataset, batch_size=batch_size)
    return metrics_report(evaluate_model(model, loader, precision="fp32", mode=cfg.eval_mode, flip=cfg.eval_flip))


def _model_from(state: dict, model_cfg, device) -> torch.nn.Module:
    model = prepare_model(TransUNet(model_cfg), device)
    model.load_state_dict(state)
    return model


def _point(seconds: float, step: int, batch: int, report: dict, n: int) -> dict:
    return {"minutes": round(seconds / 60, 5), "train_seconds": round(seconds, 3), "global_step": step,
            "images_seen": step * batch, "miou": report["miou"], "val_images": n}


def run_recipe(name: str, overrides: dict, *, minutes: float, eval_every: float, data: str | None,
               max_val_images: int | None, full_val: bool = True, seed: int = 0, threads: int | None = None,
               progress: bool = True) -> dict:
    """Train one recipe for ``minutes`` and evaluate its weight copies -> the recipe's results."""
    marks = [60.0 * eval_every * k for k in range(1, int(np.ceil(minutes / eval_every)) + 1)]
    snaps = Snapshots([m for m in marks if m < 60.0 * minutes * 0.999])
    load_start, started = loadavg(), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = recipe_config(overrides, minutes=minutes, data=data, seed=seed, threads=threads,
                            out=Path(tmp) / name, progress=progress)
        result = train(cfg, callback=snaps)
    trained = time.perf_counter()
    if snaps.copies and snaps.copies[-1][1] == snaps.steps:  # copied at the last step: the end point is it
        snaps.copies.pop()
    device = next(result.model.parameters()).device
    subset = val_subset(data, snaps.model_config.img_size, max_val_images, cfg.eval_mode)
    points = []
    for seconds, step, state in tqdm(snaps.copies, desc=f"{name}: val points", disable=not progress, leave=False):
        report = evaluate(_model_from(state, snaps.model_config, device), subset, cfg)
        points.append(_point(seconds, step, cfg.batch_size, report, len(subset)))
    points.append(_point(snaps.end, snaps.steps, cfg.batch_size, evaluate(result.model, subset, cfg), len(subset)))
    final_set = val_subset(data, snaps.model_config.img_size, None, cfg.eval_mode) if full_val else subset
    final = evaluate(result.model, final_set, cfg)
    return {
        "points": points,
        "final": {"minutes": points[-1]["minutes"], "val_images": len(final_set), "miou": final["miou"],
                  "pixel_accuracy": final["pixel_accuracy"], "mean_dice": final["mean_dice"],
                  "per_class_iou": final["per_class_iou"]},
        "train_seconds": round(snaps.end, 3), "steps": snaps.steps, "images": snaps.steps * cfg.batch_size,
        "throughput_img_s": round(snaps.steps * cfg.batch_size / max(snaps.end, 1e-9), 3),
        "epochs_started": len(result.history), "final_lr": result.history[-1]["lr"],
        "setup_seconds": round(snaps.first_step_at - started, 1) if snaps.first_step_at else None,
        "snapshot_seconds": round(snaps.copy_seconds, 3), "eval_seconds": round(time.perf_counter() - trained, 1),
        "wall_seconds": round(time.perf_counter() - started, 1), "device": str(device),
        "precision": snaps.precision, "load_start": load_start, "load_end": loadavg(),
        "train_config": _jsonable(dataclasses.asdict(cfg), drop=("out", "progress", "overwrite")),
    }


def _jsonable(d: dict, drop=()) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items() if k not in drop}


def benchmark(recipes: dict[str, tuple[str, dict]], *, minutes: float, eval_every: float, data: str | None,
              max_val_images: int | None, quick: bool = False, seed: int = 0, threads: int | None = None,
              progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run every recipe of ``recipes`` (name -> (description, overrides)) -> the JSON document."""
    if threads:
        torch.set_num_threads(threads)
    doc = {"benchmark": "time_to_miou", "created": datetime.datetime.now().isoformat(timespec="seconds"),
           "machine": {**machine_info(), "load_start": loadavg()},
           "settings": {"minutes": minutes, "eval_every_minutes": eval_every, "max_val_images": max_val_images,
                        "quick": quick, "seed": seed, "threads": threads,
                        "data": str(resolve_data_dir(data))},
           "recipes": {n: {"description": d, "overrides": _jsonable(o)} for n, (d, o) in recipes.items()},
           "results": {}}
    for name, (_, overrides) in recipes.items():
        res = run_recipe(name, overrides, minutes=minutes, eval_every=eval_every, data=data,
                         max_val_images=max_val_images, full_val=not quick, seed=seed, threads=threads,
                         progress=progress)
        doc["results"][name] = res
        log(f"{name}: " + ", ".join(f"{p['minutes']:.2f} min {100 * p['miou']:.1f}%" for p in res["points"])
            + f"; final {100 * res['final']['miou']:.2f}% on {res['final']['val_images']} val images, "
            f"{res['throughput_img_s']:.2f} img/s, {res['steps']} steps, load {res['load_start']} -> {res['load_end']}")
    doc["machine"]["load_end"] = loadavg()
    return doc


# --------------------------------------------------------------------------------------
# the plot and the command line


def plot(doc: dict, path: Path) -> None:
    """val mIoU (%) against training minutes, one curve per recipe; the full-val final as a star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=90)
    for name, res in doc["results"].items():
        xs = [p["minutes"] for p in res["points"]]
        line, = ax.plot(xs, [100 * p["miou"] for p in res["points"]], "o-", ms=4,
                        label=f"{name} ({res['throughput_img_s']:.1f} img/s)")
        if res["final"]["val_images"] != res["points"][-1]["val_images"]:
            ax.plot([res["final"]["minutes"]], [100 * res["final"]["miou"]], "*", ms=11, color=line.get_color())
    m, s = doc["machine"], doc["settings"]
    n = next(iter(doc["results"].values()))["points"][0]["val_images"] if doc["results"] else 0
    end = max([s["minutes"]] + [p["minutes"] for r in doc["results"].values() for p in r["points"]])
    ax.axvline(s["minutes"], color="0.5", ls="--", lw=1)  # the budget; the engine stops after the step past it
    ax.set(xlabel="training minutes (evaluation not counted; dashed: budget)",
           ylabel=f"val mIoU % (circles: {n} images, star: all)", xlim=(0, end * 1.04), ylim=(0, None),
           title=f"{m['cpu'][:40]}, {m['torch_threads']} thread(s), load {m['load_start'][0]}-{m['load_end'][0]}")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.time_to_miou", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=list(DEFAULT_RECIPES), choices=list(RECIPES), metavar="NAME",
                   help=f"recipes to train, one after the other (default: {' '.join(DEFAULT_RECIPES)}; "
                        f"choices: {', '.join(RECIPES)})")
    p.add_argument("--minutes", type=float, default=2.0, help="training budget per recipe (default 2)")
    p.add_argument("--eval-every", type=float, default=None, metavar="MIN",
                   help="minutes between weight copies (default: a fifth of --minutes)")
    p.add_argument("--max-val-images", type=int, default=24, metavar="N",
                   help="evenly spaced val images for the curve's points (default 24; 0: all)")
    p.add_argument("--quick", action="store_true", help="final model on the subset too, not the whole val split")
    p.add_argument("--data", default=None, help="CamVid folder (default: $CAMVID_DIR, else ../shared/camvid)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default="benchmarks/results/time_to_miou", help="output folder")
    p.add_argument("--tag", default=None, help="file name stem (default: RECIPES_Mmin)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--list", action="store_true", help="print the recipes and exit")
    p.add_argument("--replot", metavar="JSON", help="redraw the PNG beside a JSON this benchmark wrote, and exit")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        for name, (desc, over) in RECIPES.items():
            print(f"{name}: {desc}\n    {over}")
        return 0
    if args.replot:
        plot(json.loads(Path(args.replot).read_text()), Path(args.replot).with_suffix(".png"))
        return 0
    if args.minutes <= 0 or (args.eval_every is not None and args.eval_every <= 0) or args.max_val_images < 0:
        print("error: --minutes and --eval-every must be > 0, --max-val-images >= 0", file=sys.stderr)
        return 2
    if args.data is None and camvid_dir() is None:
        print("error: CamVid not found: set CAMVID_DIR or pass --data DIR (it is looked for at $CAMVID_DIR, "
              "else ../shared/camvid beside the repository); download it with "
              "`python -m tutorial_lib.data.download camvid DEST`.", file=sys.stderr)
        return 2
    if args.data is not None and not Path(args.data).expanduser().is_dir():
        print(f"error: --data {args.data}: no such folder (CamVid's train/, trainannot/, val/, valannot/)",
              file=sys.stderr)
        return 2
    eval_every = args.eval_every or args.minutes / 5
    doc = benchmark({n: RECIPES[n] for n in args.recipes}, minutes=args.minutes, eval_every=eval_every,
                    data=args.data, max_val_images=args.max_val_images or None, quick=args.quick,
                    seed=args.seed, threads=args.threads, progress=args.progress)
    doc["command"] = "python -m benchmarks.time_to_miou " + " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = args.tag or f"{'+'.join(args.recipes)}_{args.minutes:g}min"
    (out / f"{tag}.json").write_text(json.dumps(doc, indent=1) + "\n")
    plot(doc, out / f"{tag}.png")
    print(f"wrote {out / f'{tag}.json'} and {out / f'{tag}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
