"""``python -m tutorial_lib.train``: the command line over ``train`` (options: ``config.py``).

Exit status 0 on success, 2 with one line ``error: ...`` (no traceback) for what the user can
fix: a missing data folder, a data check that found faulty files (its report), a
``--pretrained`` file that does not fit the preset, an ``--out`` that already holds a run or lies under a file, a
checkpoint that cannot be written (disk full), a loss that became nan.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..checkpoint import EXPORT_DTYPES, CheckpointSaveError, export_checkpoint, read_checkpoint
from .config import TrainConfig, add_arguments, config_from_args, explicit_fields
from .engine import TrainingDivergedError, train
from .loaders import DataCheckError

#: What ``main`` reports as ``error: ...`` with exit status 2 instead of a traceback.
USER_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError, ValueError,
               CheckpointSaveError, TrainingDivergedError, DataCheckError)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" where there is a default to show (not on switches, not for None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.nargs == 0 or action.default is None:
            return action.help or ""
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tutorial_lib.train",
        allow_abbrev=False,
        description="Train a TransUNet on CamVid or a folder data set (--data DIR --classes FILE), from "
                    "scratch or from Google's ImageNet weights (--pretrained), on CPU, GPU, or torchrun.",
        formatter_class=_HelpFormatter,
    )
    add_arguments(p)
    g = p.add_argument_group("export (instead of training)")
    g.add_argument("--export", nargs=2, metavar=("SRC", "DST"), default=None,
                   help="write a small inference checkpoint DST (weights + config, no optimiser) from SRC")
    g.add_argument("--export-dtype", default="fp16", choices=tuple(EXPORT_DTYPES), help="weights dtype of --export")
    return p


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
    try:
        if args.export:
            dst = export_checkpoint(args.export[0], args.export[1], args.export_dtype)
            print(f"wrote {dst} ({dst.stat().st_size / 1e6:.1f} MB)")
            return 0
        cfg = config_from_args(args)
        if cfg.resume and (Path(cfg.out) / "last.pt").is_file():
            cfg = resume_config(cfg, explicit_fields(parser, argv))
        result = train(cfg)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        best = "n/a" if result.best_miou is None else f"{100 * result.best_miou:.2f}% (epoch {result.best_epoch})"
        print(f"done in {result.seconds:.0f} s; best val mIoU {best}; checkpoints in {result.out_dir}")
    return 0
