"""``--pretrained NPZ``: the engine fine-tunes from Google's ImageNet-21k npz (offline: a
synthetic npz with the real key names and Flax layouts, ``tests/test_pretrained.py``)."""

import numpy as np
import pytest
import torch
from test_pretrained import _synthetic_npz
from train_helpers import MODEL_HW

from tutorial_lib.pretrained import npz_position_embedding
from tutorial_lib.train import TrainConfig, main, read_checkpoint, train


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    """R50+ViT-B_16.npz of one transformer layer (the CNN in full), without the unused ImageNet head."""
    arrays = _synthetic_npz(num_layers=1, rng=np.random.default_rng(3))
    for key in ("head/kernel", "head/bias", "pre_logits/kernel", "pre_logits/bias"):
        del arrays[key]
    path = tmp_path_factory.mktemp("npz") / "R50+ViT-B_16.npz"
    np.savez(path, **arrays)
    return path, arrays


def _config(camvid, out, **kw) -> TrainConfig:
    # lr 0: the optimiser steps leave every weight as it was at step 0 (AdamW's decay is lr * wd),
    # so the checkpoint after one epoch holds what the engine loaded before training
    base = dict(config="R50-ViT-B_16", img_size=MODEL_HW, model_overrides={"num_layers": 1}, data=str(camvid),
                out=str(out), epochs=1, batch_size=2, max_images=2, max_val_images=0, lr=0.0,
                progress=False, precision="fp32", check=False)
    return TrainConfig(**{**base, **kw})


def test_the_model_starts_from_the_npz_weights(camvid, npz, tmp_path):
    path, a = npz
    result = train(_config(camvid, tmp_path / "ft", pretrained=str(path)))
    sd = read_checkpoint(result.last_checkpoint)["model"]
    assert read_checkpoint(result.last_checkpoint)["train_config"]["pretrained"] == str(path)
    torch.testing.assert_close(sd["cnn.root.conv.weight"],
                               torch.from_numpy(a["conv_root/kernel"].transpose(3, 2, 0, 1)), atol=0, rtol=0)
    torch.testing.assert_close(sd["cnn.body.block3.unit9.gn2.bias"],
                               torch.from_numpy(a["block3/unit9/gn2/bias"]), atol=0, rtol=0)
    q = a["Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel"]  # (D, heads, head_dim)
    torch.testing.assert_close(sd["transformer.layers.0.attn.query.weight"],
                               torch.from_numpy(q.reshape(768, -1).T.copy()), atol=0, rtol=0)
    torch.testing.assert_close(sd["transformer.norm.weight"],
                               torch.from_numpy(a["Transformer/encoder_norm/scale"]), atol=0, rtol=0)
    grid = (MODEL_HW[0] // 16, MODEL_HW[1] // 16)  # 14x14 ImageNet grid resized to the run's 2x3
    torch.testing.assert_close(sd["pos_embed"],
                               npz_position_embedding(a["Transformer/posembed_input/pos_embedding"], grid))

    # without --pretrained the same seeded run starts elsewhere (the comparison above can fail)
    scratch = read_checkpoint(train(_config(camvid, tmp_path / "scratch")).last_checkpoint)["model"]
    assert not torch.equal(scratch["cnn.root.conv.weight"], sd["cnn.root.conv.weight"])
    assert torch.equal(scratch["head.0.weight"], sd["head.0.weight"])  # decoder and head: seeded init in both


def test_pretrained_is_refused_for_presets_without_the_npz_layout(camvid, npz, tmp_path, capsys):
    path, _ = npz
    for preset in ("tiny", "tiny-cnn", "blog"):
        with pytest.raises(ValueError, match="R50-ViT-B_16"):
            TrainConfig(config=preset, pretrained=str(path))
    out = tmp_path / "cli"
    assert main(["--config", "tiny", "--pretrained", str(path), "--data", str(camvid), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --pretrained") and "Traceback" not in err and not out.exists()
    # a missing file and a file of another architecture: one line each, exit 2, nothing written
    assert main(["--config", "R50-ViT-B_16", "--pretrained", str(tmp_path / "none.npz"), "--data", str(camvid),
                 "--out", str(out), "--no-check"]) == 2
    assert "not found" in capsys.readouterr().err and not out.exists()
    assert main(["--config", "ViT-B_16", "--img-size", "32", "48", "--pretrained", str(path), "--data",
                 str(camvid), "--out", str(out), "--no-check"]) == 2
    assert "lacks" in capsys.readouterr().err and not out.exists()
