"""python -m tutorial_lib.data.check: every fault reported with its file, exit status 2, no traceback."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tutorial_lib
from tutorial_lib.data import DatasetError, SegmentationFolder, camvid_dir, check_dataset
from tutorial_lib.data.check import main

H, W = 6, 8
TABLE = {
    "classes": [
        {"name": "background", "color": [0, 0, 0]},
        {"name": "cat", "color": [255, 0, 0]},
        {"name": "dog", "color": [0, 0, 255]},
    ],
    "void": {"value": 3, "color": [255, 255, 255]},  # 255 is not void here: 0/255 masks are a fault
}
VOID = 3
COLORS = np.array([c["color"] for c in TABLE["classes"]], np.uint8)


def label(seed: int) -> np.ndarray:
    """(H, W) labels with all three classes and a void pixel."""
    out = np.random.default_rng(seed).integers(0, 3, size=(H, W)).astype(np.uint8)
    out[0, :3] = (0, 1, 2)
    out[-1, -1] = VOID
    return out


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(50 + seed).integers(0, 256, size=(H, W, 3), dtype=np.uint8)


def save(path: Path, array_or_image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    img.save(path)
    return path


def palette(lab: np.ndarray) -> Image.Image:
    img = Image.fromarray(lab, mode="P")
    img.putpalette([7, 7, 7] * 256)  # every index drawn the same grey: only indices can be right
    return img


def colour(lab: np.ndarray) -> np.ndarray:
    out = np.full((*lab.shape, 3), 255, np.uint8)
    known = lab != VOID
    out[known] = COLORS[lab[known]]
    return out


def good_dataset(root: Path) -> Path:
    """train: an index, a palette and a colour mask; val: one index mask. Every class occurs in both."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps(TABLE))
    for i, mask in enumerate((label(0), palette(label(1)), colour(label(2)))):
        save(root / f"train/images/ok{i}.jpg" if i == 0 else root / f"train/images/ok{i}.png", image(i))
        save(root / f"train/masks/ok{i}.png", mask)
    save(root / "val/images/v.png", image(3))
    save(root / "val/masks/v.png", label(3))
    return root


# Each fault: (files to write under root, the kind reported, the file named, error or warning)
def _values(root):
    bad = label(4)
    bad[2, 2] = 7
    save(root / "train/images/values.png", image(4))
    save(root / "train/masks/values.png", bad)


def _binary(root):
    save(root / "train/images/binary.png", image(5))
    save(root / "train/masks/binary.png", np.where(label(5) == 1, 255, 0).astype(np.uint8))


def _unknown_colour(root):
    rgb = colour(label(6))
    rgb[1, 1] = (12, 34, 56)
    save(root / "train/images/odd_colour.png", image(6))
    save(root / "train/masks/odd_colour.png", rgb)


def _size(root):
    save(root / "train/images/size.png", image(7))
    save(root / "train/masks/size.png", np.zeros((H + 2, W), np.uint8))


def _no_mask(root):
    save(root / "train/images/lonely.png", image(8))


def _no_image(root):
    save(root / "train/masks/orphan.png", label(9))


def _corrupt_image(root):
    save(root / "train/masks/corrupt.png", label(10))
    (root / "train/images/corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")


def _corrupt_mask(root):
    save(root / "train/images/trunc.png", image(11))
    data = save(root / "train/masks/trunc.png", label(11)).read_bytes()
    (root / "train/masks/trunc.png").write_bytes(data[: len(data) // 2])


def _jpeg_mask(root):
    save(root / "train/images/lossy.png", image(12))
    save(root / "train/masks/lossy.jpg", colour(label(12)))


def _duplicate(root):
    save(root / "train/images/ok1.tif", image(13))  # ok1.png exists already


FAULTS = {
    "values": (_values, "values", "train/masks/values.png", "error"),
    "binary 0/255": (_binary, "binary-255", "train/masks/binary.png", "error"),
    "unknown colour": (_unknown_colour, "unknown-colors", "train/masks/odd_colour.png", "error"),
    "size mismatch": (_size, "size", "train/masks/size.png", "error"),
    "image without mask": (_no_mask, "missing-mask", "train/images/lonely.png", "error"),
    "mask without image": (_no_image, "missing-image", "train/masks/orphan.png", "warning"),
    "corrupt image": (_corrupt_image, "unreadable", "train/images/corrupt.png", "error"),
    "truncated mask": (_corrupt_mask, "unreadable", "train/masks/trunc.png", "error"),
    "jpeg mask": (_jpeg_mask, "lossy-mask", "train/masks/lossy.jpg", "error"),
    "duplicate stem": (_duplicate, "duplicate-stem", "train/images/ok1.png", "error"),
}


def issues_of(report):
    return {(i.severity, i.kind, i.path) for i in report.issues}


def test_a_clean_data_set_passes(tmp_path, capsys):
    root = good_dataset(tmp_path / "d")
    report = check_dataset(root, progress=False)
    assert report.ok and report.issues == [], report.format()
    assert report.splits == {"train": 3, "val": 1} and report.table.num_classes == 3
    # pixel counts come from the decoded labels: index, palette (indices, not colours) and colour masks
    expected = sum(np.bincount(label(i)[label(i) != VOID], minlength=3) for i in range(3))
    assert report.pixel_counts["train"].tolist() == expected.tolist()
    assert main([str(root), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "0 error(s)" in out and "ready to train" in out and "background" in out


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_is_reported_with_its_file(tmp_path, capsys, fault):
    write, kind, path, severity = FAULTS[fault]
    root = good_dataset(tmp_path / "d")
    write(root)
    report = check_dataset(root, progress=False)
    assert (severity, kind, path) in issues_of(report), report.format()
    assert all(i.path != "train/masks/ok0.png" for i in report.issues)  # good files are not blamed
    assert report.ok == (severity == "warning")
    assert main([str(root), "--quiet"]) == (0 if severity == "warning" else 2)
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if path in line)
    assert line.startswith(severity.upper())
    assert f"{len(report.errors)} error(s)" in out.splitlines()[-1]


@pytest.mark.parametrize("fault", [f for f in FAULTS if FAULTS[f][3] == "error" and FAULTS[f][1] != "missing-mask"
                                   and FAULTS[f][1] != "duplicate-stem"])
def test_what_the_check_calls_an_error_breaks_loading(tmp_path, fault):
    """The check and the data set agree: the faulty pair cannot be loaded."""
    write, _, path, _ = FAULTS[fault]
    root = good_dataset(tmp_path / "d")
    write(root)
    ds = SegmentationFolder(root, "train")
    index = next(i for i, pair in enumerate(ds.pairs) if Path(path).stem in {p.stem for p in pair})
    with pytest.raises(DatasetError, match=Path(path).name.replace(".", r"\.")):
        ds.load_pair(index)


def test_several_faults_in_one_run_and_the_limit(tmp_path, capsys):
    root = good_dataset(tmp_path / "d")
    for write, *_ in FAULTS.values():
        write(root)
    for i in range(4):
        save(root / f"train/images/extra{i}.png", image(20 + i))  # 5 images without a mask in all
    report = check_dataset(root, progress=False)
    for _, kind, path, severity in FAULTS.values():
        assert (severity, kind, path) in issues_of(report)
    assert main([str(root), "--quiet", "--limit", "2"]) == 2
    out = capsys.readouterr().out
    assert "... and 3 more of the same kind (missing-mask)" in out
    assert main([str(root), "--quiet", "--limit", "0"]) == 2
    assert "extra3.png" in capsys.readouterr().out


def test_colour_masks_without_a_table(tmp_path):
    root = tmp_path / "d"
    save(root / "train/images/a.png", image(0))
    save(root / "train/masks/a.png", colour(label(0)))
    report = check_dataset(root, progress=False)
    assert ("error", "no-table", "train/masks/a.png") in issues_of(report)
    assert main([str(root), "--quiet"]) == 2


def test_colours_not_in_the_table_given_with_classes(tmp_path):
    root = tmp_path / "d"
    save(root / "train/images/a.png", image(0))
    save(root / "train/masks/a.png", colour(label(0)))
    table = tmp_path / "other.csv"
    table.write_text("name,r,g,b\nbackground,0,0,0\ncat,255,0,0\n")  # no dog, no void colour
    report = check_dataset(root, classes=table, progress=False)
    (issue,) = report.errors
    assert (issue.kind, issue.path) == ("unknown-colors", "train/masks/a.png")
    assert "(0, 0, 255)" in issue.message and "(255, 255, 255)" in issue.message
    assert main([str(root), "--classes", str(table), "--quiet"]) == 2


@pytest.mark.parametrize("values,expected", [
    ([0, 1, 2], "a table with 3 classes"),
    ([0, 255], "binary masks stored as 0/255"),
])
def test_index_masks_without_a_table_say_what_table_is_needed(tmp_path, values, expected):
    root = tmp_path / "d"
    save(root / "images/a.png", image(0))  # the flat layout
    save(root / "masks/a.png", np.resize(np.array(values, np.uint8), (H, W)))
    report = check_dataset(root, progress=False)
    (issue,) = report.errors
    assert issue.kind == "no-table" and expected in issue.message and "classes.json" in issue.message


def test_a_class_that_never_occurs_is_a_warning(tmp_path):
    root = good_dataset(tmp_path / "d")
    (root / "val/masks/v.png").unlink()
    save(root / "val/masks/v.png", np.zeros((H, W), np.uint8))  # val: background only
    report = check_dataset(root, progress=False)
    assert report.ok
    assert {(i.kind, i.message.split(" never")[0]) for i in report.warnings} == {
        ("class-absent", "class 1 'cat'"), ("class-absent", "class 2 'dog'")}
    assert all("split val" in i.message for i in report.warnings)


def test_a_broken_table_is_the_only_error_reported(tmp_path):
    root = good_dataset(tmp_path / "d")
    (root / "classes.json").write_text('{"classes": [{"name": "a"}, {"name": "a"}]}')
    report = check_dataset(root, progress=False)
    assert [(i.kind, i.path) for i in report.errors] == [("class-table", None)]
    assert "classes.json" in report.errors[0].message and "repeated: a" in report.errors[0].message


def test_bad_folder_and_bad_table_exit_2_without_a_traceback(tmp_path):
    root = good_dataset(tmp_path / "d")
    (root / "classes.json").write_text('{"classes": [{"name": "a", "colour": [1, 2, 3]}]}')
    repo = Path(tutorial_lib.__file__).parents[1]
    for args, message in (([str(root)], "unknown key 'colour'"), ([str(tmp_path / "nowhere")], "does not exist")):
        run = subprocess.run([sys.executable, "-m", "tutorial_lib.data.check", *args, "--quiet"],
                             capture_output=True, text=True, cwd=repo)
        assert run.returncode == 2, run.stdout + run.stderr
        assert message in run.stdout and "Traceback" not in run.stdout + run.stderr
        assert "RuntimeWarning" not in run.stderr


def test_cli_shows_a_progress_bar_and_reports_file_names(tmp_path):
    root = good_dataset(tmp_path / "d")
    _values(root)
    repo = Path(tutorial_lib.__file__).parents[1]
    run = subprocess.run([sys.executable, "-m", "tutorial_lib.data.check", str(root)],
                         capture_output=True, text=True, cwd=repo)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "checking d" in run.stderr and "5/5" in run.stderr  # tqdm on stderr, one tick per pair
    assert "ERROR   train/masks/values.png: Mask has values [7] outside the class range 0..2" in run.stdout


def test_split_selection(tmp_path):
    root = good_dataset(tmp_path / "d")
    _values(root)
    assert check_dataset(root, splits=["val"], progress=False).ok
    report = check_dataset(root, splits=["test"], progress=False)
    assert [i.kind for i in report.errors] == ["layout"] and "splits found: train, val" in report.errors[0].message


REAL = camvid_dir()


@pytest.mark.skipif(REAL is None or not (REAL / "val").is_dir(), reason="CamVid data not available")
def test_real_camvid_val_split_is_clean():
    report = check_dataset(REAL, splits=["val"], progress=False)
    assert report.ok and not report.warnings, report.format()
    assert report.splits == {"val": 101} and report.table.source.startswith("CamVid")
