"""Training and evaluating on a folder data set (``--data DIR --classes FILE``), and the data
check that stops a run on faulty files; the CNN-only baseline trains through the same engine."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from train_helpers import SMALL, MODEL_HW

from tutorial_lib.data import SegmentationFolder, load_class_table
from tutorial_lib.evaluate import evaluate_checkpoint
from tutorial_lib.evaluate import main as evaluate_main
from tutorial_lib.train import (
    TrainConfig,
    build_parser,
    config_from_args,
    load_checkpoint,
    main,
    read_checkpoint,
    train,
)

NAMES = ["background", "road", "car"]
COLORS = [(0, 0, 0), (128, 64, 128), (0, 0, 142)]
WEIGHTS = [0.5, 1.0, 3.0]
VOID = 255
HW = MODEL_HW  # 32 x 48: images at the model's size


def _label(i: int, rng) -> np.ndarray:
    label = np.zeros(HW, np.uint8)
    label[HW[0] // 2:] = 1                      # road below the middle
    x = 4 + 6 * i
    label[10:22, x:x + 14] = 2                  # a car that moves from image to image
    label[0, :] = VOID                          # a void row
    return label


def write_folder_dataset(root: Path, splits=(("train", 6), ("val", 3)), seed: int = 0) -> dict:
    """DIR/<split>/{images,masks}: index (L), palette (P) and colour (RGB) masks in turn, and
    classes.json. Returns {(split, stem): the label as written (void = 255)}."""
    rng = np.random.default_rng(seed)
    palette = np.array(COLORS, np.uint8)
    written = {}
    for split, n in splits:
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir()
        for i in range(n):
            label = _label(i, rng)
            stem = f"{split}_{i:02d}"
            image = palette[np.minimum(label, 2)] // 2 + rng.integers(0, 100, (*HW, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / split / "images" / f"{stem}.jpg" if i % 2 else
                                        root / split / "images" / f"{stem}.png")
            kind = i % 3
            if kind == 0:    # single-channel index PNG
                mask = Image.fromarray(label, mode="L")
            elif kind == 1:  # palette PNG: the indices are the classes
                mask = Image.fromarray(label, mode="P")
                mask.putpalette([v for c in COLORS for v in c] + [255, 255, 255] * 253)
            else:            # colour PNG mapped through the table (void colour white)
                rgb = np.full((*HW, 3), 255, np.uint8)
                rgb[label != VOID] = palette[label[label != VOID]]
                mask = Image.fromarray(rgb, mode="RGB")
            mask.save(root / split / "masks" / f"{stem}.png")
            written[(split, stem)] = label
    table = {"classes": [{"name": n, "color": list(c), "weight": w} for n, c, w in zip(NAMES, COLORS, WEIGHTS)],
             "void": {"value": VOID, "color": [255, 255, 255]}}
    (root / "classes.json").write_text(json.dumps(table))
    return written


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    return root, write_folder_dataset(root)


def _cli_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--config", "tiny", "--img-size", *map(str, MODEL_HW), "--data", str(root), "--classes",
            str(root / "classes.json"), "--epochs", "1", "--batch-size", "3", "--out", str(out),
            "--no-progress", "--precision", "fp32", "--seed", "1", *extra]


def _small(root: Path, out: Path, **kw) -> TrainConfig:
    base = dict(config="tiny", img_size=MODEL_HW, model_overrides=SMALL, data=str(root),
                classes=str(root / "classes.json"), out=str(out), epochs=1, batch_size=3, progress=False,
                precision="fp32", warmup_epochs=0.5)
    return TrainConfig(**{**base, **kw})


def test_the_folder_data_decodes_every_mask_kind_to_the_written_labels(folder):
    root, written = folder
    for split in ("train", "val"):
        data = SegmentationFolder(root, split, classes=root / "classes.json", progress=False)
        for i, (image, _) in enumerate(data.pairs):
            assert np.array_equal(data.load_label(i), written[(split, image.stem)])
    assert TrainConfig(data=str(root), classes=str(root / "classes.json")).model_config().num_classes == 3
    assert TrainConfig(data=str(root)).class_table().names == tuple(NAMES)  # DIR/classes.json by default


def test_cli_trains_one_epoch_on_a_folder_and_evaluates_it(folder, tmp_path, capsys):
    root, _ = folder
    out = tmp_path / "cli"
    # the command line has no model_overrides: the "tiny" preset itself, on 2 training images
    assert main(_cli_args(root, out, "--max-images", "2", "--max-val-images", "2")) == 0
    assert "best val mIoU" in capsys.readouterr().out
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["class_names"] == NAMES and ckpt["model_config"]["num_classes"] == 3
    assert ckpt["train_config"]["data"] == str(root)
    record = json.loads((out / "metrics.jsonl").read_text())
    assert list(record["val_per_class_iou"]) == NAMES

    code = evaluate_main(["--checkpoint", str(out / "last.pt"), "--data", str(root), "--classes",
                          str(root / "classes.json"), "--max-images", "2", "--json", "--no-progress",
                          "--precision", "fp32"])
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(report["per_class_iou"]) == NAMES and report["num_images"] == 2
    assert report["miou"] == pytest.approx(record["val_miou"], abs=1e-12)  # same protocol, same images


def test_python_api_trains_on_a_folder_with_table_weights_and_evaluates(folder, tmp_path):
    root, written = folder
    result = train(_small(root, tmp_path / "py", class_weights="table"))
    assert result.history[0]["val_per_class_iou"].keys() == set(NAMES)
    model, meta = load_checkpoint(result.last_checkpoint)
    assert meta["class_names"] == NAMES and model.config.num_classes == 3
    report = evaluate_checkpoint(result.last_checkpoint, root, "val", classes=root / "classes.json",
                                 progress=False, precision="fp32")
    assert report["miou"] == pytest.approx(result.history[0]["val_miou"], abs=1e-12)

    # the reference: torchmetrics' IoU of the model's argmax against the labels the test wrote
    from torchmetrics.classification import MulticlassJaccardIndex

    iou = MulticlassJaccardIndex(3, average="none", ignore_index=VOID)
    data = SegmentationFolder(root, "val", classes=root / "classes.json", progress=False)
    from tutorial_lib.data import EvalTransform

    transform = EvalTransform(MODEL_HW)
    with torch.no_grad():
        for i, (image_path, _) in enumerate(data.pairs):
            image, label = data.load_pair(i)
            x = transform(image=image, mask=label)["image"][None].float()
            pred = model(x).argmax(1)
            iou.update(pred, torch.from_numpy(written[("val", image_path.stem)]).long()[None])
    per_class = iou.compute()
    present = [n for n in NAMES if report["per_class_iou"][n] is not None]
    for i, name in enumerate(NAMES):
        if name in present:
            assert report["per_class_iou"][name] == pytest.approx(per_class[i].item(), abs=1e-6)

    # a table without weights refuses --class-weights table with a clear message
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"classes": [{"name": n, "color": list(c)} for n, c in zip(NAMES, COLORS)],
                                 "void": {"value": VOID, "color": [255, 255, 255]}}))
    with pytest.raises(ValueError, match="no \"weight\""):
        train(_small(root, tmp_path / "noweights", classes=str(plain), class_weights="table"))
    assert not (tmp_path / "noweights").exists()


def test_a_faulty_folder_stops_training_with_the_check_report_and_writes_nothing(tmp_path):
    root = tmp_path / "bad"
    write_folder_dataset(root, splits=(("train", 3), ("val", 2)))
    binary = np.zeros(HW, np.uint8)
    binary[8:20, 10:30] = 255  # a binary mask stored as 0/255 in a 3-class table (void is the value 255...)
    table = json.loads((root / "classes.json").read_text())
    table["void"] = {"color": [255, 255, 255]}  # ... unless void is a colour only: then 255 is a fault
    (root / "classes.json").write_text(json.dumps(table))
    Image.fromarray(binary, mode="L").save(root / "train" / "masks" / "train_01.png")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "tutorial_lib.train", *_cli_args(root, out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "train/masks/train_01.png" in proc.stderr and "binary mask stored as 0/255" in proc.stderr
    assert "--no-check" in proc.stderr
    assert not out.exists()

    # the Python API raises the same report
    from tutorial_lib.train import DataCheckError

    with pytest.raises(DataCheckError, match="binary mask stored as 0/255"):
        train(_small(root, out))
    assert not out.exists()


def test_the_cnn_only_baseline_trains_evaluates_and_reloads(folder, tmp_path):
    root, _ = folder
    cfg = _small(root, tmp_path / "cnn", config="tiny-cnn")
    assert cfg.model_config().use_transformer is False
    result = train(cfg)
    model, meta = load_checkpoint(result.last_checkpoint)
    assert model.transformer is None and model.config.name == "tiny-cnn"
    x = torch.randn(1, 3, *MODEL_HW)
    torch.testing.assert_close(model(x), result.model.eval()(x))
    report = evaluate_checkpoint(result.last_checkpoint, root, "val", progress=False, precision="fp32")
    assert report["miou"] == pytest.approx(result.history[0]["val_miou"], abs=1e-12)
    args = build_parser().parse_args(["--config", "R50-UNet"])  # the command line accepts both baselines
    assert config_from_args(args).model_config().use_transformer is False
