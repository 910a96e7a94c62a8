"""tutorial_lib.predict: masks at the input's size, the evaluation protocol, image conversion, CLI."""

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from tutorial_lib.data import CAMVID_COLORS, IGNORE_INDEX, camvid_dir, make_synthetic_camvid
from tutorial_lib.evaluate import EvalTransform, camvid_split, evaluate_model
from tutorial_lib.export import OnnxModel, export_checkpoint_file, load_model
from tutorial_lib.train import read_checkpoint
from tutorial_lib.predict import (
    ImageError, TorchModel, load_predictor, main, overlay, predict, predict_batch, prepare, read_image, to_rgb,
)

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "camvid_tiny.pt"


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    """The CamVid folder (real when present, else a drawn one with the same layout)."""
    return camvid_dir() or make_synthetic_camvid(tmp_path_factory.mktemp("camvid"), n_train=0, n_val=2)


@pytest.fixture(scope="module")
def model():
    return load_model(CHECKPOINT)[0]


@pytest.fixture(scope="module")
def frame(camvid):
    path = sorted((camvid / "val").glob("*.png"))[0]
    return path, read_image(path), np.asarray(Image.open(camvid / "valannot" / path.name))


def test_predict_follows_the_evaluation_protocol(model, camvid, frame):
    """The mask equals what tutorial_lib.evaluate predicts for the frame, and is accurate."""
    path, image, label = frame
    mask = predict(model, image)
    assert mask.shape == label.shape == (360, 480) and mask.dtype == np.uint8
    dataset = camvid_split(camvid, "val", transform=EvalTransform(model.config.img_size), max_images=1,
                           progress=False)
    batch = [(dataset[0][0][None], dataset[0][1][None])]
    reference = []
    evaluate_model(model, batch, predictions=reference, channels_last=False)
    np.testing.assert_array_equal(mask, reference[0])
    if camvid_dir() is not None:  # the shipped model on a real frame: the model card says 84 %
        valid = label < 11
        assert (mask == label)[valid].mean() > 0.75


@pytest.mark.parametrize("size", [(100, 37), (480, 360), (17, 1000), (192, 256), (721, 961)])
@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_any_size_gives_a_mask_of_that_size(model, frame, size, resize):
    image = Image.fromarray(frame[1]).resize(size[::-1])
    mask = predict(model, image, resize=resize)
    assert mask.shape == size and mask.max() < 11


def test_letterbox_pads_with_the_mean_and_keeps_the_aspect_ratio(frame):
    image = np.ascontiguousarray(np.concatenate([frame[1], frame[1]], axis=1))  # 360x960, 3:8
    x, region = prepare(image, (192, 256), resize="letterbox")
    assert region == (96, 256) and x.shape == (3, 192, 256)
    expected = EvalTransform((96, 256))(image, np.zeros((0, 0), np.uint8))["image"]
    torch.testing.assert_close(x[:, :96], expected, atol=0, rtol=0)
    assert torch.count_nonzero(x[:, 96:]) == 0  # 0 after normalisation = the mean colour
    # a 4:3 image fills the whole grid: letterbox = stretch
    a, _ = prepare(frame[1], (192, 256), resize="letterbox")
    b, _ = prepare(frame[1], (192, 256), resize="stretch")
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_batch_of_mixed_sizes_equals_one_by_one(model, frame):
    images = [frame[1], frame[1][:200, :333], np.ascontiguousarray(frame[1][::-1])]
    masks = predict_batch(model, images)
    for image, mask in zip(images, masks):
        np.testing.assert_array_equal(mask, predict(model, image))


def test_overlay_blends_class_colours():
    image = np.full((2, 3, 3), 100, np.uint8)
    mask = np.array([[0, 1, 2], [3, IGNORE_INDEX, 10]], np.uint8)
    out = overlay(image, mask, alpha=0.5)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 1], np.round((100 + np.array(CAMVID_COLORS[1])) / 2))
    np.testing.assert_array_equal(out[1, 1], [100, 100, 100])  # not a class: the image shows
    np.testing.assert_array_equal(overlay(image, mask, alpha=1.0)[1, 2], CAMVID_COLORS[10])


# --- image conversion rule ----------------------------------------------------------------------


def test_conversions_of_non_rgb_images(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb(Image.fromarray(gray)), np.stack([gray] * 3, -1))
    rgba = np.concatenate([rgb, np.zeros((5, 7, 1), np.uint8)], -1)  # fully transparent
    np.testing.assert_array_equal(to_rgb(Image.fromarray(rgba)), rgb)  # alpha dropped
    np.testing.assert_array_equal(to_rgb(rgba), rgb)
    pal = Image.fromarray(gray).convert("P")  # palette image: the colours, not the indices
    np.testing.assert_array_equal(to_rgb(pal), np.asarray(pal.convert("RGB")))
    # 16-bit grayscale PNG, as a file: the high byte, as Pillow reads 16-bit RGB files
    g16 = rng.integers(0, 65536, (5, 7)).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    expected = (g16 // 256).astype(np.uint8)
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png"), np.stack([expected] * 3, -1))
    np.testing.assert_array_equal(to_rgb(np.stack([g16] * 3, -1)), np.stack([expected] * 3, -1))
    rgb16 = rng.integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[..., ::-1])  # a 16-bit RGB file (OpenCV writes BGR)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb16.png"), to_rgb(rgb16))
    assert to_rgb(np.full((1, 1), 65535, np.uint16)).tolist() == [[[255, 255, 255]]]


@pytest.mark.parametrize("bad, match", [
    (np.zeros((4, 4, 3), np.float32), "float32 pixels; pass uint8"),
    (np.zeros((4, 4, 2), np.uint8), r"expected an \(H, W\) or \(H, W, 3\) image"),
    (np.full((4, 4), 70000, np.int32), "outside 0..65535"),
    (Image.fromarray(np.zeros((4, 4), np.float32)), "floating-point image"),
])
def test_unsupported_images_are_refused(bad, match):
    with pytest.raises(ImageError, match=match):
        to_rgb(bad, "x.tif")


# --- command line ------------------------------------------------------------------------------


def test_cli_on_a_folder_writes_masks_and_overlays_at_each_size(model, frame, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(frame[1]).save(src / "a.png")
    Image.fromarray(frame[1][:150, :410]).save(src / "b.jpg")
    Image.fromarray(frame[1][..., 0]).save(src / "c_gray.png")
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main([str(src), "--out", str(out), "--engine", "torch", "--batch-size", "2"]) == 0
    captured = capsys.readouterr()
    assert "3/3" in captured.err  # the progress bar
    assert sorted(p.name for p in out.iterdir()) == [
        "a_mask.png", "a_overlay.png", "b_mask.png", "b_overlay.png", "c_gray_mask.png", "c_gray_overlay.png"]
    mask = Image.open(out / "a_mask.png")
    assert mask.mode == "L" and mask.size == (480, 360)
    # the command follows the checkpoint's protocol (flip test-time augmentation); the bare model needs flip=True
    assert read_checkpoint(CHECKPOINT)["train_config"]["eval_flip"] is True
    np.testing.assert_array_equal(np.asarray(mask), predict(model, frame[1], flip=True))
    assert Image.open(out / "b_mask.png").size == (410, 150)
    assert Image.open(out / "b_overlay.png").mode == "RGB"


def test_cli_refuses_bad_images_and_writes_the_rest(frame, tmp_path, capsys):
    Image.fromarray(frame[1]).save(tmp_path / "good.png")
    Image.fromarray(np.zeros((8, 8), np.float32)).save(tmp_path / "depth.tif")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    files = [str(tmp_path / n) for n in ("good.png", "depth.tif", "broken.png")]
    assert main(files + ["--out", str(out), "--engine", "torch", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "depth.tif: floating-point image" in err and "broken.png: not a readable image" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["good_mask.png", "good_overlay.png"]


def test_cli_out_under_a_regular_file_is_exit_2(frame, tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        assert main([str(frame[0]), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "is a regular file, not a folder" in err and "Traceback" not in err
    assert blocker.read_text() == "x"


def test_cli_input_errors_are_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.png: no such file or folder" in capsys.readouterr().err
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    for d in "xy":
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / d / "same.png")
    assert main([str(tmp_path / "x"), str(tmp_path / "y"), "--out", str(tmp_path / "o")]) == 2
    assert "would both be written as same_mask.png" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --- engines -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A copy of the shipped checkpoint with its ONNX export beside it (the --onnx default)."""
    folder = tmp_path_factory.mktemp("exported")
    ck = folder / "camvid_tiny.pt"
    shutil.copy(CHECKPOINT, ck)
    export_checkpoint_file(ck, "onnx", folder / "camvid_tiny.onnx")
    return ck


def test_onnx_engine_gives_the_same_masks(exported, model, frame, tmp_path):
    engine = load_predictor(exported, "onnx", "cpu")
    assert isinstance(engine, OnnxModel)
    assert (engine.eval_mode, engine.eval_flip) == ("resize", True)  # the checkpoint's protocol, in the file
    a = predict(engine, frame[1])
    b = predict(model, frame[1], flip=True)
    assert (a != b).mean() < 1e-4  # logits agree to ~1e-5: only near-ties may flip
    assert main([str(frame[0]), "--checkpoint", str(exported), "--engine", "onnx", "--out", str(tmp_path)]) == 0
    assert (np.asarray(Image.open(tmp_path / f"{frame[0].stem}_mask.png")) != b).mean() < 1e-4
    # sliding windows and flip run on the exported model too (it takes model-size windows)
    a = predict(engine, frame[1], resize="sliding", flip=True)
    assert (a != predict(model, frame[1], resize="sliding", flip=True)).mean() < 1e-4


def test_auto_engine(exported, tmp_path, monkeypatch, capsys):
    assert isinstance(load_predictor(exported, "auto", "cpu"), OnnxModel)  # measured faster on CPU
    alone = tmp_path / "alone.pt"
    shutil.copy(CHECKPOINT, alone)
    assert isinstance(load_predictor(alone, "auto", "cpu"), TorchModel)  # no .onnx beside it
    # an ONNX file from another checkpoint is never used
    other = tmp_path / "other.pt"
    torch.save({**torch.load(CHECKPOINT, weights_only=True), "note": "retrained"}, other)
    shutil.copy(exported.with_suffix(".onnx"), other.with_suffix(".onnx"))
    assert isinstance(load_predictor(other, "auto", "cpu"), TorchModel)
    assert "exported from another checkpoint" in capsys.readouterr().err
    with pytest.raises(ValueError, match="exported from another checkpoint.*re-export"):
        load_predictor(other, "onnx", "cpu")
    # without onnxruntime: auto falls back, onnx names the extra
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    assert isinstance(load_predictor(exported, "auto", "cpu"), TorchModel)
    assert main([str(alone), "--checkpoint", str(exported), "--engine", "onnx", "--out", str(tmp_path / "o")]) == 2
    assert 'pip install -e ".[export]"' in capsys.readouterr().err


# --- sliding windows and flip (the policy a checkpoint validated with) ---------------------

def test_sliding_follows_the_sliding_evaluation_protocol(model, camvid, frame):
    """resize="sliding" predicts what tutorial_lib.evaluate predicts with mode="sliding" (+ flip)."""
    path, image, label = frame
    dataset = camvid_split(camvid, "val", transform=EvalTransform(None), max_images=1, progress=False)
    batch = [(dataset[0][0][None], dataset[0][1][None])]
    for flip in (False, True):
        reference = []
        evaluate_model(model, batch, predictions=reference, channels_last=False, mode="sliding", flip=flip)
        np.testing.assert_array_equal(predict(model, image, resize="sliding", flip=flip), reference[0])


@pytest.mark.parametrize("size", [(100, 37), (360, 480), (500, 700)])
def test_sliding_gives_a_mask_of_the_input_size(model, frame, size):
    image = Image.fromarray(frame[1]).resize(size[::-1])
    mask = predict(model, image, resize="sliding")
    assert mask.shape == size and mask.max() < 11


def test_the_default_policy_is_the_one_the_checkpoint_validated_with(model, frame):
    from tutorial_lib.predict import policy

    plain = TorchModel(model)
    assert policy(plain) == ("stretch", False)
    sliding = TorchModel(model, eval_mode="sliding", eval_flip=True)
    assert policy(sliding) == ("sliding", True)
    assert policy(sliding, "letterbox", False) == ("letterbox", False)  # what the caller asks wins
    np.testing.assert_array_equal(predict(sliding, frame[1]), predict(model, frame[1], resize="sliding", flip=True))
    with pytest.raises(ValueError, match="sliding"):
        policy(plain, "tiles")
