"""ONNX and TorchScript export of the shipped checkpoint, checked against PyTorch's own logits.

The ONNX file is run by ONNX Runtime (the reference runtime), on a real CamVid val frame when
the data is present (a drawn frame from ``make_synthetic_camvid`` otherwise).
"""

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tutorial_lib.data import camvid_dir, make_synthetic_camvid
from tutorial_lib.data.download import sha256_file
from tutorial_lib.export import (
    MissingExtraError, OnnxModel, export_checkpoint_file, load_model, main, read_onnx_metadata, require,
)
from tutorial_lib.predict import prepare, read_image

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "camvid_tiny.pt"


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Three 360x480 val frames: real CamVid when the folder exists (then it must be used)."""
    root = camvid_dir()
    if root is None:
        root = make_synthetic_camvid(tmp_path_factory.mktemp("camvid"), n_train=0, n_val=3)
    files = sorted((root / "val").glob("*.png"))[:3]
    assert len(files) == 3, f"no val frames in {root}"
    return files


@pytest.fixture(scope="module")
def model_and_batch(frames):
    model, meta = load_model(CHECKPOINT)
    batch = torch.stack([prepare(read_image(f), model.config.img_size, meta["mean"], meta["std"])[0]
                         for f in frames])
    with torch.no_grad():
        logits = model(batch)
    return model, batch, logits


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    return export_checkpoint_file(CHECKPOINT, "onnx", tmp_path_factory.mktemp("onnx") / "camvid_tiny.onnx")


@pytest.mark.parametrize("batch_size", [1, 3])
def test_onnx_runtime_matches_pytorch_on_camvid_frames(onnx_file, model_and_batch, batch_size):
    import onnxruntime as ort

    _, batch, reference = model_and_batch
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    out = session.run(["logits"], {"image": batch[:batch_size].numpy()})[0]
    assert out.shape == (batch_size, 11, 192, 256)
    diff = np.abs(out - reference[:batch_size].numpy()).max()
    print(f"ONNX Runtime vs PyTorch, batch {batch_size}: max |difference| = {diff:.3g}")
    assert diff <= 1e-4
    assert reference.std() > 1.0  # real logits, so 1e-4 is a meaningful bound


def test_onnx_graph_has_a_dynamic_batch_and_the_training_size(onnx_file):
    import onnx

    graph = onnx.load(str(onnx_file)).graph
    for value in (graph.input[0], graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch" and not dims[0].dim_value
        assert [d.dim_value for d in dims[1:]] in ([3, 192, 256], [11, 192, 256])


def test_onnx_metadata_describes_the_checkpoint(onnx_file):
    meta = read_onnx_metadata(onnx_file)
    assert meta["img_size"] == [192, 256]
    assert meta["class_names"][:2] == ["Sky", "Building"] and len(meta["class_names"]) == 11
    assert meta["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert meta["checkpoint_sha256"] == sha256_file(CHECKPOINT)
    engine = OnnxModel(onnx_file)
    assert engine.img_size == (192, 256)


def test_torchscript_matches_pytorch(model_and_batch, tmp_path):
    _, batch, reference = model_and_batch
    path = export_checkpoint_file(CHECKPOINT, "torchscript", tmp_path / "camvid_tiny.ts.pt")
    extra = {"tutorial_lib.json": ""}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated")  # torch 2.13
        loaded = torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra["tutorial_lib.json"])["img_size"] == [192, 256]
    with torch.no_grad():
        for b in (1, 3):
            torch.testing.assert_close(loaded(batch[:b]), reference[:b], atol=1e-5, rtol=0)


def test_cli_writes_the_file(tmp_path, capsys):
    out = tmp_path / "sub" / "m.ts.pt"
    assert main(["--checkpoint", str(CHECKPOINT), "--format", "torchscript", "--out", str(out)]) == 0
    assert out.is_file() and "wrote" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["m.ts.pt"]  # no temporary file left


def test_cli_out_under_a_regular_file_is_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert main(["--format", "onnx", "--out", str(blocker / "model.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is a regular file" in err and "Traceback" not in err
    assert blocker.read_text() == "x"


def test_cli_missing_checkpoint_is_exit_2(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "none.pt not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_failed_export_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        Path(args[2]).write_bytes(b"half")  # the exporter wrote part of the file, then failed
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(RuntimeError, match="exporter failed"):
        export_checkpoint_file(CHECKPOINT, "onnx", tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_missing_extra_names_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(MissingExtraError, match=r'pip install -e "\.\[export\]"'):
        require("onnx")
    assert main(["--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert 'pip install -e ".[export]"' in err and "Traceback" not in err
