"""Check a segmentation data folder before training: every fault, file by file, in one pass.

    python -m tutorial_lib.data.check DIR [--classes FILE] [--split NAME ...] [--limit N] [--quiet]

Reads every image/mask pair once (progress bar) with the same decoding as
``SegmentationFolder`` and reports what would stop training, naming each file:

errors (exit status 2): mask values that are neither a class nor void, binary masks stored
as 0/255, colour masks without colours in the class table or with colours it lacks, image
and mask sizes that differ, images without a mask, unreadable or corrupt files, JPEG masks,
several files with one stem, a missing or malformed class table, a split without images.
warnings (exit status 0): masks without an image (unused), files that are neither images
nor masks, a class that never occurs in a split.

From Python (e.g. a training engine, on start)::

    report = check_dataset("DIR", classes=None)      # -> CheckReport
    if not report.ok:
        print(report.format()); raise SystemExit(2)
    num_classes = report.table.num_classes
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .class_table import ClassTable, ClassTableError
from .folder import (
    DatasetError,
    DatasetNotFoundError,
    SplitDirs,
    decode_mask,
    find_splits,
    image_to_rgb,
    mask_kind,
    open_image,
    pair_files,
    resolve_class_table,
)


@dataclass
class Issue:
    """One finding. ``path`` is relative to the data folder (None: about the whole data set)."""

    severity: str  # "error" or "warning"
    kind: str
    message: str
    path: str | None = None

    def format(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.severity.upper():7s} {where}{self.message}"


@dataclass
class CheckReport:
    """What ``check_dataset`` found. ``ok`` is False when training would fail."""

    root: Path
    table: ClassTable | None
    splits: dict[str, int] = field(default_factory=dict)              # split -> pairs read
    pixel_counts: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (num_classes,) pixels
    issues: list[Issue] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        """One line: pairs, classes, error and warning counts, verdict, time."""
        pairs = sum(self.splits.values())
        splits = ", ".join(f"{name} {n}" for name, n in self.splits.items())
        classes = f"{self.table.num_classes} classes" if self.table else "no class table"
        bad_files = len({i.path for i in self.errors if i.path})
        verdict = "ready to train" if self.ok else "training would fail; fix the errors above"
        return (
            f"{self.root}: {pairs} pairs ({splits or 'no splits'}), {classes}; "
            f"{len(self.errors)} error(s) in {bad_files} file(s), {len(self.warnings)} warning(s): "
            f"{verdict}. ({self.seconds:.1f} s)"
        )

    def format(self, limit: int | None = 20) -> str:
        """The report as text: class table, issues grouped by kind (``limit`` lines per kind,
        None: all), class pixel shares per split, and the summary line."""
        lines = [f"Data folder {self.root}"]
        lines.append(f"Class table: {self.table.source}: {self.table.describe()}" if self.table
                     else "Class table: none")
        by_kind: dict[tuple[str, str], list[Issue]] = {}
        for issue in sorted(self.issues, key=lambda i: i.severity != "error"):
            by_kind.setdefault((issue.severity, issue.kind), []).append(issue)
        for (_, kind), issues in by_kind.items():
            shown = issues if limit is None else issues[:limit]
            lines += [issue.format() for issue in shown]
            if len(issues) > len(shown):
                lines.append(f"        ... and {len(issues) - len(shown)} more of the same kind ({kind}); "
                             "--limit 0 lists all")
        if self.table and self.pixel_counts:
            lines.append(self._class_shares())
        lines.append(self.summary())
        return "\n".join(lines)

    def _class_shares(self) -> str:
        names = list(self.pixel_counts)
        width = max(len(n) for n in self.table.names)
        rows = ["Class pixel share (%) " + " ".join(f"{n:>8s}" for n in names)]
        shares = {s: c / max(c.sum(), 1) * 100 for s, c in self.pixel_counts.items()}
        for i, name in enumerate(self.table.names):
            rows.append(f"  {i:3d} {name:<{width}s} " + " ".join(f"{shares[s][i]:8.2f}" for s in names))
        return "\n".join(rows)


class _Checker:
    """Accumulates the issues of one run; file paths are shown relative to the root."""

    def __init__(self, root: Path):
        self.root = root
        self.issues: list[Issue] = []

    def rel(self, path: Path | None) -> str | None:
        if path is None:
            return None
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def add(self, severity: str, kind: str, message: str, path: Path | None = None) -> None:
        message = message.replace(f"{self.root}{os.sep}", "")  # relative names in messages too
        self.issues.append(Issue(severity, kind, message, self.rel(path)))

    def error_from(self, err: DatasetError, fallback: Path) -> None:
        path = err.path or fallback
        self.add("error", err.kind, str(err).replace(f" {path}", "", 1), path)  # the line names the file


def _check_pairing(check: _Checker, split: SplitDirs, mask_suffix: str) -> list[tuple[Path, Path]]:
    pairing = pair_files(split.images, split.masks, mask_suffix)
    for group in pairing.duplicates:
        check.add("error", "duplicate-stem",
                  f"{len(group)} files share this stem ({', '.join(p.name for p in group)}); pairs are "
                  "matched by stem: rename or remove all but one.", group[0])
    for image in pairing.images_without_mask:
        check.add("error", "missing-mask",
                  f"image without a mask (expected {check.rel(split.masks)}/{image.stem}{mask_suffix}.png). "
                  "Add the mask or remove the image.", image)
    for mask in pairing.masks_without_image:
        check.add("warning", "missing-image", "mask without an image: it is not used.", mask)
    for other in pairing.other_files:
        check.add("warning", "other-file", f"not an image or mask file ({other.suffix or 'no extension'}): ignored.",
                  other)
    if not pairing.pairs:
        check.add("error", "empty-split", f"split {split.label} has no image/mask pairs "
                  f"(images in {check.rel(split.images)}/, masks in {check.rel(split.masks)}/).")
    return pairing.pairs


def _check_pair(check: _Checker, image_path: Path, mask_path: Path, table: ClassTable | None,
                raw_values: set[int] | None) -> np.ndarray | None:
    """Read one pair; record its issues. Returns the pixel count per class (table given, mask valid).

    Without a table, the values of index masks are collected in ``raw_values`` (None: the
    table file is broken, so mask contents are not judged at all).
    """
    image = mask = None
    try:
        image = open_image(image_path)
        image_to_rgb(image, image_path)
    except DatasetError as err:
        check.error_from(err, image_path)
    except DatasetNotFoundError as err:  # deleted while we read
        check.add("error", "unreadable", str(err), image_path)
    try:
        mask = open_image(mask_path)
    except DatasetError as err:
        check.error_from(err, mask_path)
    except DatasetNotFoundError as err:
        check.add("error", "unreadable", str(err), mask_path)
    counts = None
    if mask is not None:
        if table is not None:
            try:
                label = decode_mask(mask, table, mask_path)
                counts = np.bincount(label.ravel(), minlength=256)[: table.num_classes]
            except DatasetError as err:
                check.error_from(err, mask_path)
        elif raw_values is None:
            pass
        elif mask_kind(mask.mode) == "color":
            check.add("error", "no-table",
                      "colour (RGB) mask but no class table to map its colours: write classes.json with a "
                      "\"color\" for every class (see data/README.md) or pass --classes FILE.", mask_path)
        elif mask_kind(mask.mode) == "index":
            values = np.asarray(mask)
            raw_values.update(np.unique(values if values.ndim == 2 else values[..., 0]).tolist())
        else:
            check.add("error", "mask-mode", f"mask mode {mask.mode} is not an index, palette or RGB image.",
                      mask_path)
    if image is not None and mask is not None and image.size != mask.size:
        check.add("error", "size",
                  f"image is {image.size[0]}x{image.size[1]} (WxH) but its mask "
                  f"{check.rel(mask_path)} is {mask.size[0]}x{mask.size[1]}: each mask must match its "
                  "image pixel for pixel.", mask_path)
    return counts


def _no_table_issue(check: _Checker, raw_values: set[int]) -> None:
    values = sorted(raw_values)
    if not values:
        found = ""
    elif set(values) <= {0, 255}:
        found = (f" The masks hold only {values}: binary masks stored as 0/255. Save them with values 0/1 "
                 "(mask // 255) and write a 2-class table.")
    else:
        found = (f" The index masks hold the values {values[:30]}{' ...' if len(values) > 30 else ''}: "
                 f"a table with {values[-1] + 1} classes would cover them (declare a value that means "
                 "'ignore' as \"void\").")
    check.add("error", "no-table",
              f"no class table: write {check.rel(check.root / 'classes.json') or 'classes.json'} "
              f"(name, colour, optional weight per class; see data/README.md) or pass --classes FILE.{found}")


def _find(check: _Checker, splits: list[str | None] | None) -> list[SplitDirs]:
    """The split folders to read; layout errors for requested splits that are not there."""
    found = find_splits(check.root)
    if splits is not None:
        for name in [s for s in splits if s not in {d.name for d in found}]:
            check.add("error", "layout", f"split {name!r} not found (splits found: "
                      f"{', '.join(d.label for d in found) or 'none'}).")
        return [d for d in found if d.name in splits]
    if not found:
        check.add("error", "layout",
                  "no images/ + masks/ folders found. Expected DIR/train/images + DIR/train/masks "
                  "(and DIR/val/...), or DIR/images + DIR/masks.")
    return found


def _read_all(check: _Checker, report: CheckReport, pairs: dict[str, list[tuple[Path, Path]]],
              raw_values: set[int] | None, progress: bool) -> None:
    """Read every pair once (one progress bar), filling the report's counts and the issues."""
    table = report.table
    total = sum(len(p) for p in pairs.values())
    with tqdm(total=total, desc=f"checking {check.root.name}", unit="pair", disable=not progress) as bar:
        for label, split_pairs in pairs.items():
            report.splits[label] = len(split_pairs)
            counts = np.zeros(table.num_classes if table else 0, np.int64)
            for image_path, mask_path in split_pairs:
                pair_counts = _check_pair(check, image_path, mask_path, table, raw_values)
                if pair_counts is not None:
                    counts += pair_counts
                bar.update()
            if table is not None:
                report.pixel_counts[label] = counts
                for i in np.flatnonzero(counts == 0):
                    check.add("warning", "class-absent", f"class {i} {table.names[i]!r} never occurs in "
                              f"split {label} ({len(split_pairs)} masks).")


def check_dataset(
    root: str | os.PathLike,
    classes: ClassTable | str | os.PathLike | None = None,
    splits: list[str | None] | None = None,
    progress: bool = True,
) -> CheckReport:
    """Read every pair of the data folder ``root`` once and report every fault (see the module docstring).

    ``classes``: a ClassTable or a classes.json/.csv file; None: ``root/classes.json`` or
    ``.csv`` (CamVid's table for the SegNet layout). ``splits``: the split names to check
    (None for the flat layout); default all found. Never raises for bad data: look at
    ``report.ok``, ``report.errors`` and ``report.format()``.
    """
    start = time.perf_counter()
    root = Path(root).expanduser()
    check = _Checker(root)
    report = CheckReport(root=root, table=None, issues=check.issues)
    if not root.is_dir():
        check.add("error", "layout", f"data folder {root} does not exist.")
        return report
    found = _find(check, splits)
    table_broken = False
    try:
        report.table = resolve_class_table(root, classes)
    except ClassTableError as err:
        check.add("error", "class-table", str(err))
        table_broken = True
    pairs = {d.label: _check_pairing(check, d, "") for d in found}
    raw_values: set[int] | None = None if table_broken else set()
    _read_all(check, report, pairs, raw_values, progress)
    if report.table is None and not table_broken and found:
        _no_table_issue(check, raw_values)
    report.seconds = time.perf_counter() - start
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tutorial_lib.data.check",
        description="Check a segmentation data folder (images/ + masks/ per split, and its class table) "
                    "before training. Exit status 2 when training would fail, 0 otherwise.",
    )
    parser.add_argument("dir", type=Path, help="the data folder")
    parser.add_argument("--classes", type=Path, default=None,
                        help="class table (.json or .csv); default DIR/classes.json or DIR/classes.csv")
    parser.add_argument("--split", action="append", default=None,
                        help="check only this split (repeatable); default: all found")
    parser.add_argument("--limit", type=int, default=20, help="lines per kind of fault (0: all; default 20)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        report = check_dataset(args.dir, args.classes, args.split, progress=not args.quiet)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(report.format(limit=args.limit or None))
    return 0 if report.ok else 2


if __name__ == "__main__":
    sys.exit(main())
