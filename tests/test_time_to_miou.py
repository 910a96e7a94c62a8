"""benchmarks.time_to_miou: its core loop on a small drawn CamVid, for a few seconds, and its JSON."""

import json

import pytest
import torch

from benchmarks import time_to_miou as ttm
from tutorial_lib.data import make_synthetic_camvid

SMALL = dict(  # a small TransUNet: milliseconds per step at 32x48
    resnet_layers=(1, 1, 1), resnet_width=32, resnet_planes=(32, 32, 32), hidden_size=32, num_layers=1,
    num_heads=2, head_dim=16, mlp_dim=64, decoder_head_channels=16, decoder_channels=(16, 8, 8, 8),
)
RECIPES = {
    "small": ("small model", dict(config="tiny", img_size=(32, 48), model_overrides=SMALL, batch_size=2,
                                  precision="fp32", warmup_epochs=0.5)),
    "small-weighted": ("small model, median weights",
                       dict(config="tiny", img_size=(32, 48), model_overrides=SMALL, batch_size=2,
                            precision="fp32", warmup_epochs=0.5, class_weights="median")),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_camvid(tmp_path_factory.mktemp("camvid"), n_train=6, n_val=5, size=(40, 60))


@pytest.fixture(scope="module")
def doc(data):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return ttm.benchmark(RECIPES, minutes=0.05, eval_every=0.01, data=str(data), max_val_images=3,
                             threads=1, progress=False, log=lambda line: None)
    finally:
        torch.set_num_threads(threads)


def test_points_rise_in_time_and_miou_is_a_fraction(doc):
    assert list(doc["results"]) == list(RECIPES)
    for name, res in doc["results"].items():
        points = res["points"]
        assert len(points) >= 3, (name, points)  # marks every 0.6 s of a 3 s budget, plus the end
        minutes = [p["minutes"] for p in points]
        assert all(a < b for a, b in zip(minutes, minutes[1:])), minutes
        steps = [p["global_step"] for p in points]
        assert all(a < b for a, b in zip(steps, steps[1:])), steps
        assert all(0.0 <= p["miou"] <= 1.0 and p["val_images"] == 3 for p in points)
        # the budget is training time: the engine stops at the first step past 3 s, evaluation excluded
        assert 3.0 <= res["train_seconds"] < 3.0 + 2.0, res["train_seconds"]
        assert points[-1]["train_seconds"] == res["train_seconds"]
        # eval_seconds and wall_seconds are stored rounded to 0.1 s, so their sum may be 0.1 s off
        assert res["eval_seconds"] > 0 and res["wall_seconds"] >= res["train_seconds"] + res["eval_seconds"] - 0.1
        assert res["throughput_img_s"] == pytest.approx(res["images"] / res["train_seconds"], rel=1e-3)
        final = res["final"]
        assert final["val_images"] == 5 and 0.0 <= final["miou"] <= 1.0
        assert len(final["per_class_iou"]) == 11 and "Pole" in final["per_class_iou"]


def test_json_names_the_machine_and_the_recipes(doc, tmp_path):
    path = tmp_path / "out.json"
    path.write_text(json.dumps(doc))
    back = json.loads(path.read_text())  # strict JSON, no NaN
    machine = back["machine"]
    for key in ("cpu", "logical_cpus", "torch_threads", "torch", "load_start", "load_end"):
        assert machine[key] is not None, key
    assert machine["torch_threads"] == 1 and len(machine["load_start"]) == 3
    assert back["recipes"]["small-weighted"]["overrides"]["class_weights"] == "median"
    assert back["results"]["small-weighted"]["train_config"]["class_weights"] == "median"
    assert back["results"]["small"]["train_config"]["time_limit"] == pytest.approx(3.0)
    ttm.plot(back, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_recipe_is_a_valid_train_config(tmp_path):
    for name, (_, overrides) in ttm.RECIPES.items():
        cfg = ttm.recipe_config(overrides, minutes=2, data=None, seed=0, threads=1, out=tmp_path, progress=False)
        assert cfg.time_limit == 120.0 and cfg.max_val_images == 0, name
        assert cfg.model_config().img_size[0] % 16 == 0 and cfg.model_config().img_size[1] % 16 == 0


def test_missing_camvid_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAMVID_DIR", str(tmp_path / "nowhere"))
    assert ttm.main(["--minutes", "2", "--out", str(tmp_path)]) == 2
    assert "CamVid not found" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.json"))


def test_a_weight_copy_rebuilds_the_same_model():
    """The curve's points evaluate models rebuilt from state_dict copies: they must compute what the
    trained model computes (same logits to fp32 rounding, NHWC on both sides)."""
    from tutorial_lib.runtime import prepare_model
    from tutorial_lib.transunet import TransUNet, get_config

    torch.manual_seed(0)
    cfg = get_config("tiny", img_size=(32, 48), **SMALL)
    model = prepare_model(TransUNet(cfg), "cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))  # not the initial weights: a copy of init would pass too
    copy = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rebuilt = ttm._model_from(copy, cfg, torch.device("cpu"))
    x = torch.randn(2, 3, 32, 48).contiguous(memory_format=torch.channels_last)
    model.eval(), rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=1e-5, atol=1e-5)
    fresh = prepare_model(TransUNet(cfg), "cpu").eval()
    with torch.no_grad():
        assert (fresh(x) - model(x)).abs().max() > 1e-3  # the comparison can fail
