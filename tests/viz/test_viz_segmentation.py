"""Tests of tutorial_lib.viz.segmentation: the numbers and widgets behind notebook 07."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from tutorial_lib.data import CAMVID_CLASSES, CAMVID_COLORS, IGNORE_INDEX, class_frequencies  # noqa: E402
from tutorial_lib.data import make_synthetic_camvid  # noqa: E402
from tutorial_lib.train import TrainConfig, train  # noqa: E402
from tutorial_lib.transunet import TransUNet, get_config  # noqa: E402
from tutorial_lib.viz import segmentation as vs  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------- the red-channel bug


def test_red_channel_groups_merge_the_big_classes():
    groups = vs.red_channel_groups()
    assert groups[128] == ["Sky", "Building", "Road", "Tree"]
    assert sorted(sum(groups.values(), [])) == sorted(CAMVID_CLASSES)  # every class exactly once
    for red, names in groups.items():
        assert all(CAMVID_COLORS[CAMVID_CLASSES.index(n)][0] == red for n in names)


def test_red_channel_ambiguity():
    sky, pavement, bicyclist = (CAMVID_CLASSES.index(n) for n in ("Sky", "Pavement", "Bicyclist"))
    assert vs.red_channel_ambiguity(np.array([[pavement, bicyclist]])) == 0.0  # unique red values
    assert vs.red_channel_ambiguity(np.array([[sky, sky]])) == 1.0
    label = np.array([[sky, pavement, IGNORE_INDEX, IGNORE_INDEX]])
    assert vs.red_channel_ambiguity(label) == 0.5  # void pixels do not count
    assert np.isnan(vs.red_channel_ambiguity(np.full((2, 2), IGNORE_INDEX)))


def test_red_channel_figure_reports_the_lost_share():
    label = np.array([[0, 4], [4, 4]])  # one Sky pixel (red shared), three Pavement (unique)
    fig = vs.plot_red_channel_bug(np.zeros((2, 2, 3), np.uint8), label)
    assert "25%" in fig.axes[3].get_title()


# ---------------------------------------------------------------- per-image scores and overlays


def test_image_scores_worked_by_hand():
    label = np.array([[0, 0], [1, IGNORE_INDEX]])
    pred = np.array([[0, 1], [1, 1]])
    s = vs.image_scores(label, pred)
    # 3 labelled pixels, 2 right; IoU(0) = 1 / 2, IoU(1) = 1 / 2 (pred 1 at two labelled pixels)
    assert s["pixel_accuracy"] == pytest.approx(2 / 3)
    assert s["miou"] == pytest.approx(0.5)
    assert s["classes"] == 2


def test_image_scores_count_predicted_only_classes_and_skip_absent_ones():
    label = np.array([[0, 0, 2, 2]])
    pred = np.array([[0, 2, 2, 1]])
    s = vs.image_scores(label, pred)
    # IoU: class 0 = 1 / 2, class 1 (predicted, never true) = 0 / 1, class 2 = 1 / 3; classes 3..10 absent
    assert s["miou"] == pytest.approx((1 / 2 + 0 + 1 / 3) / 3)
    assert s["pixel_accuracy"] == pytest.approx(0.5)
    assert s["classes"] == 3
    empty = vs.image_scores(np.full((2, 2), IGNORE_INDEX), np.zeros((2, 2), int))
    assert np.isnan(empty["miou"]) and empty["classes"] == 0


def test_error_mask_ignores_void_and_checks_shapes():
    label = np.array([[1, 2, IGNORE_INDEX]])
    pred = np.array([[1, 3, 4]])
    assert vs.error_mask(label, pred).tolist() == [[False, True, False]]
    with pytest.raises(ValueError, match="same size"):
        vs.error_mask(label, pred[:, :2])


def test_blend():
    image = np.full((1, 3, 3), 0.5)
    classes = np.array([[0, 3, IGNORE_INDEX]])
    colours = np.asarray(CAMVID_COLORS, float) / 255
    assert np.allclose(vs.blend(image, classes, 0.0), image)
    full = vs.blend(image, classes, 1.0)
    assert np.allclose(full[0, 0], colours[0]) and np.allclose(full[0, 1], colours[3])
    assert np.allclose(full[0, 2], 0.5)  # void is never painted
    half = vs.blend(image, classes, 0.5, where=np.array([[False, True, False]]))
    assert np.allclose(half[0, 0], 0.5) and np.allclose(half[0, 1], 0.25 + 0.5 * colours[3])
    uint8 = vs.blend(np.full((1, 3, 3), 255, np.uint8), classes, 0.0)
    assert np.allclose(uint8, 1.0)
    with pytest.raises(ValueError, match="alpha"):
        vs.blend(image, classes, 1.5)
    with pytest.raises(ValueError, match="same size"):
        vs.blend(image, classes[:, :2], 0.5)


def test_prediction_figure_titles_follow_the_options():
    label = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, 1], [1, 1]])
    image = np.zeros((2, 2, 3))
    fig = vs.plot_prediction(image, label, pred, errors_only=False, title="x")
    assert fig.axes[1].get_title() == "prediction"
    assert "25.0%" in fig.axes[2].get_title()  # one of four pixels wrong
    assert "pixel accuracy 75.0%" in fig._suptitle.get_text()
    fig = vs.plot_prediction(image, label, pred, errors_only=True)
    assert "errors only" in fig.axes[1].get_title()


# ---------------------------------------------------------------- figures of the data and the evaluation


def test_data_and_evaluation_figures_draw():
    label = np.array([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, IGNORE_INDEX]])
    image = np.zeros((3, 4, 3), np.uint8)
    fig = vs.plot_samples([image, image], [label, label], ["a", "b"])
    legend = fig.axes[-1].get_legend()
    assert [t.get_text() for t in legend.get_texts()][:2] == ["0 Sky", "1 Building"]
    assert len(legend.get_texts()) == 12  # 11 classes + void
    with pytest.raises(ValueError, match="as many labels"):
        vs.plot_samples([image], [])
    stats = class_frequencies([label])
    fig = vs.plot_class_frequencies(stats, np.ones(11), np.ones(11))
    assert len(fig.axes) == 2
    per_class = {n: 0.1 * i for i, n in enumerate(CAMVID_CLASSES)}
    ax = vs.plot_per_class_iou(per_class)
    assert "mIoU 50.0%" in ax.get_title()
    cm = torch.diag(torch.arange(1, 12))
    cm[0, 1] = 1  # one Sky pixel called Building: row 0 is 50% / 50%
    ax = vs.plot_confusion_matrix(cm)
    texts = {t.get_text() for t in ax.texts}
    assert "50" in texts and "100" in texts


def test_training_curves_from_events():
    live = vs.LiveTrainingPlot(total_epochs=2, redraw=False)
    for step in range(1, 5):
        live({"event": "step", "global_step": step, "loss": 2.0 / step, "steps_per_epoch": 2, "epoch": 1})
    live({"event": "epoch", "epoch": 1, "val_miou": 0.25})
    live({"event": "epoch", "epoch": 2, "val_miou": None})  # an epoch without validation
    live({"event": "other"})
    assert live.steps == [1, 2, 3, 4] and live.losses == [2.0, 1.0, 2 / 3, 0.5]
    assert live.epochs == [1] and live.mious == [0.25]
    assert live._widget is None  # redraw=False never creates a widget
    fig = live.figure()
    assert len(fig.axes) == 2


def test_live_plot_redraws_its_widget_during_a_real_training_run(tmp_path):
    root = make_synthetic_camvid(tmp_path / "data", n_train=4, n_val=2, size=(64, 64))
    live = vs.LiveTrainingPlot(total_epochs=2, every=1)
    before = live.widget.value
    assert "tu-training-plot" in live.widget._dom_classes
    seen = []
    cfg = TrainConfig(config="tiny", img_size=(32, 32), epochs=2, batch_size=2, data=str(root),
                      out=str(tmp_path / "run"), precision="fp32", progress=False)
    result = train(cfg, callback=lambda e: (live(e), seen.append(live.widget.value)))
    assert len(live.steps) == 4 and live.steps == list(range(1, 5))
    assert live.epochs == [1, 2]
    assert live.mious == pytest.approx([r["val_miou"] for r in result.history])
    assert seen[-1] != before and len(set(seen)) > 2  # redrawn as training went on


# ---------------------------------------------------------------- attention on CamVid


def _uniform(n, heads=2):
    return torch.full((heads, n, n), 1.0 / n)


def test_attention_head_summary_on_known_patterns():
    n = 6
    uniform = _uniform(n, heads=1)
    identity = torch.eye(n)[None]
    sink = torch.zeros(1, n, n)
    sink[..., 0] = 1.0  # every query attends to token 0
    rows = vs.attention_head_summary([torch.cat([uniform, identity, sink])[None]])  # (B, h, N, N) accepted
    assert [(r["layer"], r["head"]) for r in rows] == [(0, 0), (0, 1), (0, 2)]
    assert rows[0]["tokens"] == pytest.approx(n) and rows[0]["query_dependence"] == pytest.approx(0)
    assert rows[1]["tokens"] == pytest.approx(1) and rows[1]["query_dependence"] == pytest.approx((n - 1) / n)
    assert rows[2]["tokens"] == pytest.approx(1) and rows[2]["query_dependence"] == pytest.approx(0)
    with pytest.raises(ValueError, match="layer 0"):
        vs.attention_head_summary([torch.zeros(2, 3, 4)])


def test_label_grid_and_attention_by_class():
    label = np.zeros((4, 6), np.uint8)
    label[:, 2:4] = 3
    label[:2, 4:] = IGNORE_INDEX
    label[2:, 4:] = IGNORE_INDEX
    label[3, 5] = 8  # one labelled pixel decides the last token
    grid = vs.label_grid(label, (2, 3))
    assert grid.tolist() == [[0, 3, IGNORE_INDEX], [0, 3, 8]]
    with pytest.raises(ValueError, match="square tokens"):
        vs.label_grid(label, (2, 2))
    amap = np.array([[0.1, 0.2, 0.5], [0.1, 0.0, 0.1]])
    share = vs.attention_by_class(amap, grid)
    assert share.shape == (11,)
    # the void token's 0.5 is left out: 0.2 to Sky, 0.2 to Road, 0.1 to Car, out of 0.5
    assert share[0] == pytest.approx(0.4) and share[3] == pytest.approx(0.4) and share[8] == pytest.approx(0.2)
    assert share.sum() == pytest.approx(1.0)


def _tiny_model():
    torch.manual_seed(0)
    cfg = get_config("tiny", img_size=(64, 96), hidden_size=32, num_heads=2, num_layers=2, mlp_dim=64)
    return TransUNet(cfg).train()


def test_transunet_attention_is_the_models_own():
    model = _tiny_model()
    x = torch.randn(3, 64, 96)
    weights = vs.transunet_attention(model, x)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        _, ref = model(x[None], return_attention=True)
    assert len(weights) == 2 and weights[0].shape == (2, 24, 24)
    for w, r in zip(weights, ref):
        torch.testing.assert_close(w, r[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 24), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="one image"):
        vs.transunet_attention(model, x[None])


def test_camvid_attention_figure_uses_the_query_and_mean_head_rollout():
    weights = [torch.softmax(torch.randn(2, 6, 6, generator=torch.Generator().manual_seed(i)), -1) for i in range(2)]
    image = np.zeros((32, 48, 3))
    classes = np.array([[0, 0, 3], [3, 3, 3]])
    fig = vs.plot_camvid_attention(image, weights, 0, 1, (1, 2), (2, 3), classes, rollout_through=1)
    assert fig.axes[0].get_title().startswith("layer 0, head 1")
    assert fig.axes[1].get_title().startswith("rollout, layers 0..1")
    with pytest.raises(ValueError, match="outside"):
        vs.plot_camvid_attention(image, weights, 0, 1, (2, 0), (2, 3))


# ---------------------------------------------------------------- the widgets


def test_prediction_widget_redraws_on_every_control():
    rng = np.random.default_rng(0)
    labels = [rng.integers(0, 11, size=(12, 16)) for _ in range(3)]
    preds = [np.where(rng.random((12, 16)) < 0.5 + 0.2 * i, lab, 0) for i, lab in enumerate(labels)]
    images = [rng.integers(0, 255, size=(12, 16, 3), dtype=np.uint8) for _ in range(3)]
    box = vs.prediction_widget(images, labels, preds, ["a", "b", "c"])
    assert "tu-prediction-widget" in box._dom_classes and "tu-prediction-stats" in box.stats._dom_classes
    assert [c._dom_classes for c in box.controls.values()] == [("tu-pred-image",), ("tu-pred-opacity",),
                                                                ("tu-pred-errors",)]
    seen = [box.image.value]
    stats = box.stats.value
    box.controls["image"].value = 2
    assert box.stats.value != stats and "<b>c</b>" in box.stats.value
    for name, value in (("opacity", 0.2), ("errors_only", True)):
        box.controls[name].value = value
        seen.append(box.image.value)
    seen.append(box.image.value)
    assert len(set(seen[:3])) == 3  # every control changed the picture
    wrong = int(vs.error_mask(labels[2], preds[2]).sum())
    assert f"{wrong:,} wrong pixels" in box.stats.value
    with pytest.raises(ValueError, match="as many"):
        vs.prediction_widget(images, labels, preds[:2], ["a", "b", "c"])


def test_camvid_attention_widget_computes_each_image_once_and_follows_the_query():
    model = _tiny_model().eval()
    inputs = [torch.randn(3, 64, 96, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    images = [np.zeros((64, 96, 3)) for _ in inputs]
    labels = [np.full((64, 96), i * 3, np.uint8) for i in range(2)]
    calls = []

    def attention(i):
        calls.append(i)
        return vs.transunet_attention(model, inputs[i])

    box = vs.camvid_attention_widget(model, inputs, images, labels, ["a", "b"], model.grid, cell=(0, 0),
                                     layer=0, head=1, attention=attention)
    assert "tu-camvid-attention-widget" in box._dom_classes
    assert {k: c._dom_classes for k, c in box.controls.items()} == {
        k: (f"tu-att-{k}",) for k in ("image", "row", "col", "layer", "head")}
    assert box.controls["head"].value == 1 and box.controls["layer"].value == 0
    first_image, first_stats = box.image.value, box.stats.value
    assert "(row 0, col 0)" in first_stats and "<b>Sky</b>" in first_stats
    box.controls["col"].value = 3
    assert "(row 0, col 3)" in box.stats.value and box.image.value != first_image
    box.controls["image"].value = 1
    assert "<b>Road</b>" in box.stats.value
    box.controls["image"].value = 0
    box.controls["head"].value = "mean"
    assert calls == [0, 1]  # cached per image
    with pytest.raises(ValueError, match="as many"):
        vs.camvid_attention_widget(model, inputs, images, labels[:1], ["a", "b"], model.grid)
