"""tutorial_lib.evaluate end to end on a synthetic CamVid folder, with predictions we control."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import tutorial_lib.evaluate as evaluate_module
from tutorial_lib.data import CAMVID_CLASSES, MEAN, STD, VOID_LABEL, CamVid, camvid_dir
from tutorial_lib.evaluate import (
    EvalTransform,
    available_splits,
    camvid_split,
    evaluate_checkpoint,
    evaluate_model,
    format_table,
    main,
    metrics_report,
)
from tutorial_lib.transunet import get_config

LABEL_HW = (10, 60)  # the label is never resized
MODEL_HW = (16, 48)


def make_split(root: Path, split: str, labels: list[np.ndarray]) -> None:
    (root / split).mkdir(parents=True)
    (root / f"{split}annot").mkdir()
    rng = np.random.default_rng(0)
    for i, label in enumerate(labels):
        image = rng.integers(0, 256, (*label.shape, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / split / f"{i:03d}.png")
        Image.fromarray(label.astype(np.uint8)).save(root / f"{split}annot" / f"{i:03d}.png")


def three_bands() -> np.ndarray:
    """Columns 0-19 class 0, 20-39 class 1, 40-59 class 2; the first two rows void."""
    label = np.zeros(LABEL_HW, np.uint8)
    label[:, 20:40] = 1
    label[:, 40:] = 2
    label[:2] = VOID_LABEL
    return label


class HalfAndHalf(nn.Module):
    """Predicts class 0 on the left half and class 1 on the right half of its input."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.config = get_config("tiny", img_size=MODEL_HW)
        self.seen_sizes = []

    def forward(self, x):
        self.seen_sizes.append(tuple(x.shape[-2:]))
        b, _, h, w = x.shape
        logits = torch.zeros(b, len(CAMVID_CLASSES), h, w)
        logits[:, 0, :, : w // 2] = 1.0
        logits[:, 1, :, w // 2:] = 1.0
        return logits + self.dummy


@pytest.fixture
def camvid(tmp_path):
    make_split(tmp_path, "train", [three_bands()])
    make_split(tmp_path, "val", [three_bands(), three_bands()])
    return tmp_path


@pytest.fixture
def fake_checkpoint(monkeypatch, tmp_path):
    """evaluate_checkpoint with a model whose predictions we know."""
    model = HalfAndHalf()
    meta = {"class_names": list(CAMVID_CLASSES), "mean": list(MEAN), "std": list(STD), "epoch": 3}
    monkeypatch.setattr(evaluate_module, "load_checkpoint", lambda path, device="cpu": (model, meta))
    path = tmp_path / "fake.pt"
    path.write_bytes(b"")
    return path, model


# By hand, per labelled row (8 rows, 60 columns; prediction 0 on columns 0-29, 1 on 30-59):
#   truth 0 (cols 0-19): predicted 0          -> TP0 = 20
#   truth 1 (cols 20-39): 0 on 20-29, 1 on 30-39 -> FP0 = 10, TP1 = 10, FN1 = 10
#   truth 2 (cols 40-59): predicted 1         -> FP1 = 20, FN2 = 20
# IoU0 = 20 / 30, IoU1 = 10 / (10 + 20 + 10), IoU2 = 0; every other class absent -> left out.
EXPECTED_IOU = [20 / 30, 10 / 40, 0.0]
EXPECTED_DICE = [40 / 50, 20 / 50, 0.0]


def test_evaluate_checkpoint_end_to_end_against_hand_worked_confusion(camvid, fake_checkpoint):
    path, model = fake_checkpoint
    report = evaluate_checkpoint(path, camvid, "val", batch_size=2, progress=False, precision="fp32")
    assert set(model.seen_sizes) == {MODEL_HW}  # images resized to the model's input size
    ious = list(report["per_class_iou"].values())
    assert ious[:3] == pytest.approx(EXPECTED_IOU)
    assert all(v is None for v in ious[3:])
    assert report["miou"] == pytest.approx(sum(EXPECTED_IOU) / 3)
    assert report["pixel_accuracy"] == pytest.approx(30 / 60)
    assert report["mean_dice"] == pytest.approx(sum(EXPECTED_DICE) / 3)
    assert report["num_images"] == 2 and report["img_size"] == list(MODEL_HW)


def test_cli_json_last_line_and_table(camvid, fake_checkpoint, capsys):
    path, _ = fake_checkpoint
    assert main(["--checkpoint", str(path), "--data", str(camvid), "--split", "val", "--json",
                 "--no-progress", "--batch-size", "1"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads(last)  # strict JSON: absent classes are null, not NaN
    assert report["miou"] == pytest.approx(sum(EXPECTED_IOU) / 3)
    assert report["per_class_iou"]["Building"] == pytest.approx(0.25)
    assert report["per_class_iou"]["Bicyclist"] is None

    assert main(["--checkpoint", str(path), "--data", str(camvid), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "Sky" in text and "66.67" in text and "mIoU" in text and "pixel accuracy 50.00" in text


def test_evaluate_model_upsamples_logits_to_the_label(camvid):
    data = CamVid(camvid, "val", transform=EvalTransform(MODEL_HW))
    image, label = data[0]
    assert image.shape == (3, *MODEL_HW) and label.shape == LABEL_HW
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    model = HalfAndHalf()
    metrics = evaluate_model(model, loader, len(CAMVID_CLASSES), "cpu")
    row = torch.zeros(len(CAMVID_CLASSES), len(CAMVID_CLASSES), dtype=torch.int64)
    row[0, 0], row[1, 0], row[1, 1], row[2, 1] = 20, 10, 10, 20
    assert torch.equal(metrics.cm, row * 8 * 2)  # 8 labelled rows, 2 images
    assert model.training  # mode restored

    predictions = []
    again = evaluate_model(model, loader, len(CAMVID_CLASSES), "cpu", predictions=predictions)
    assert torch.equal(again.cm, metrics.cm)
    assert len(predictions) == len(data) and predictions[0].dtype == np.uint8
    assert predictions[0].shape == LABEL_HW
    # HalfAndHalf predicts class 0 on the left half of the label's columns, class 1 on the right
    half = LABEL_HW[1] // 2
    assert (predictions[1][:, :half] == 0).all() and (predictions[1][:, half:] == 1).all()


def test_eval_transform_normalises_and_keeps_the_label():
    image = np.full((6, 8, 3), 255, np.uint8)
    label = np.arange(48, dtype=np.uint8).reshape(6, 8) % 12
    out = EvalTransform((4, 4))(image=image, mask=label)
    expected = (1.0 - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(out["image"], expected[:, None, None].expand(3, 4, 4))
    assert torch.equal(out["mask"], torch.from_numpy(label))


def test_metrics_report_and_table_handle_absent_classes():
    raw = {"miou": 0.5, "per_class_iou": [0.5, math.nan], "pixel_accuracy": 0.9,
           "mean_dice": 0.6, "per_class_dice": [0.6, math.nan]}
    report = metrics_report(raw, ["a", "b"])
    assert report["per_class_iou"] == {"a": 0.5, "b": None}
    assert "n/a" in format_table(report)


def test_clear_errors(camvid, tmp_path, fake_checkpoint, capsys):
    assert available_splits(camvid) == ["train", "val"]
    with pytest.raises(FileNotFoundError, match="holds out the test split"):
        camvid_split(camvid, "test")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        camvid_split(tmp_path / "nope", "val")
    path, _ = fake_checkpoint
    assert main(["--checkpoint", str(path), "--data", str(camvid), "--split", "test"]) == 2
    assert "test" in capsys.readouterr().err


def test_missing_or_foreign_checkpoint(camvid, tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "none.pt"), "--data", str(camvid)]) == 2
    assert "not found" in capsys.readouterr().err
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    assert main(["--checkpoint", str(tmp_path / "other.pt"), "--data", str(camvid)]) == 2
    assert "not a tutorial_lib.train checkpoint" in capsys.readouterr().err


# --- the shipped checkpoint ---------------------------------------------------------------

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "camvid_tiny.pt"
SHIPPED_VAL_MIOU = 0.6634  # checkpoints/README.md (flip test-time augmentation, the checkpoint's protocol)


def test_shipped_checkpoint_loads_with_its_metadata():
    from tutorial_lib.train import SHIPPED_CHECKPOINT, load_checkpoint

    assert SHIPPED_CHECKPOINT == SHIPPED  # what notebook 07 loads

    assert SHIPPED.stat().st_size <= 20 * 1024 * 1024
    raw = torch.load(SHIPPED, weights_only=True)
    assert "optimizer" not in raw and raw["weights_dtype"] == "fp16"
    model, meta = load_checkpoint(SHIPPED)
    assert model.config.name == "tiny" and model.config.img_size == (192, 256)
    assert meta["class_names"] == list(CAMVID_CLASSES) and meta["mean"] == list(MEAN)
    assert meta["metrics"]["miou"] == pytest.approx(SHIPPED_VAL_MIOU, abs=5e-4)
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 192, 256)).shape == (1, 11, 192, 256)


@pytest.mark.slow
@pytest.mark.skipif(camvid_dir() is None, reason="CamVid not available")
def test_shipped_checkpoint_on_the_first_val_images():
    """A regression guard for the evaluation protocol and the weights (the whole split is in
    the model card: `python -m tutorial_lib.evaluate --checkpoint checkpoints/camvid_tiny.pt`)."""
    report = evaluate_checkpoint(SHIPPED, None, "val", batch_size=8, max_images=24, progress=False,
                                 precision="fp32")
    assert report["num_images"] == 24 and report["flip"] is True  # the checkpoint's own protocol
    assert report["miou"] == pytest.approx(0.6727, abs=2e-3)
    assert report["pixel_accuracy"] == pytest.approx(0.9549, abs=2e-3)


def card_numbers() -> dict:
    """The headline and per-class val IoU the model card (checkpoints/README.md) states, as fractions."""
    card = (SHIPPED.parent / "README.md").read_text()
    headline = re.search(r"\| val mIoU \| \*\*([\d.]+) %\*\*", card)
    rows = dict(re.findall(r"^\| (\w+) \| \*\*([\d.]+)\*\* \|", card, flags=re.M))
    return {"miou": float(headline.group(1)) / 100, **{k: float(v) / 100 for k, v in rows.items()}}


@pytest.mark.slow
@pytest.mark.skipif(camvid_dir() is None, reason="CamVid not available")
def test_the_evaluation_command_reproduces_the_model_card(capsys):
    """`python -m tutorial_lib.evaluate --checkpoint checkpoints/camvid_tiny.pt --split val --json`, with no other
    option, gives the card's mIoU and per-class IoU (the checkpoint carries its protocol: resize + flip)."""
    stated = card_numbers()
    assert main(["--checkpoint", str(SHIPPED), "--split", "val", "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["num_images"] == 101 and report["flip"] is True
    assert report["miou"] == pytest.approx(stated["miou"], abs=5e-5)  # the card prints 2 decimals of a percent
    for name in CAMVID_CLASSES:
        assert report["per_class_iou"][name] == pytest.approx(stated[name], abs=5e-5), name
