"""Tests of tutorial_lib.viz.patches: the numbers behind notebook 03's widgets and figures."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from tutorial_lib import metrics  # noqa: E402
from tutorial_lib.vit import VisionTransformer, attention_rollout, patchify  # noqa: E402
from tutorial_lib.viz import patches as vp  # noqa: E402

IGN = 255


# ---------------------------------------------------------------- token counts and cost


def test_vit_b16_at_224_has_196_tokens():
    s = vp.patch_token_stats((224, 224), 16)
    assert s["grid"] == (14, 14)
    assert s["tokens"] == 196
    assert s["attn_shape"] == (12, 196, 196)
    assert s["attn_flops_per_layer"] == 2 * 2 * 196**2 * 768
    assert s["attn_flops"] == 12 * 2 * 2 * 196**2 * 768
    assert s["attn_bytes_per_layer"] == 12 * 196**2 * 4
    assert s["attn_bytes"] == 12 * 12 * 196**2 * 4


def test_blog_variant_has_16_tokens_at_512():
    s = vp.patch_token_stats((512, 512), vp.BLOG_PATCH)
    assert s["grid"] == (4, 4) and s["tokens"] == 16 and s["pixels_per_token"] == 128 * 128
    assert vp.patch_token_stats((512, 512), vp.PAPER_PATCH)["tokens"] == 1024


def test_attention_flops_match_the_reference_at_224():
    # docs/reference.md section 4: the Q K^T and A V matmuls of R50-ViT-B_16 at 224 take 0.71 GMACs
    s = vp.patch_token_stats((224, 224), 16)
    assert round(s["attn_flops"] / 2 / 1e9, 2) == 0.71


def test_stats_non_square_and_class_token():
    s = vp.patch_token_stats((64, 96), 32, dim=8, heads=2, layers=3, num_prefix_tokens=1)
    assert s["grid"] == (2, 3) and s["tokens"] == 7
    assert s["attn_flops"] == 3 * 4 * 49 * 8
    assert s["attn_bytes_per_layer"] == 2 * 49 * 4


def test_patch_grid_rejects_indivisible_sizes():
    with pytest.raises(ValueError, match="multiple of 128"):
        vp.patch_grid((360, 480), 128)
    with pytest.raises(ValueError):
        vp.patch_grid((8, 8), 0)


def test_formatting():
    assert vp.format_bytes(512) == "512 B"
    assert vp.format_bytes(1536) == "1.5 KB"
    assert vp.format_bytes(48 * 2**20) == "48.0 MB"
    assert vp.format_flops(3.2e9) == "3.2 GFLOPs"
    assert vp.format_flops(12) == "12 FLOPs"


# ---------------------------------------------------------------- majority labels and IoU


def test_majority_label_hand_computed():
    label = np.array([
        [0, 0, 1, 1],
        [0, 2, 1, 3],
        [2, 2, 3, 3],
        [2, IGN, IGN, IGN],
    ])
    got = vp.majority_label_per_patch(label, 2, ignore_index=IGN)
    np.testing.assert_array_equal(got, [[0, 1], [2, 3]])
    # ties go to the smaller index; an all-void patch stays void
    label2 = np.array([[1, 0], [IGN, IGN]])
    assert vp.majority_label_per_patch(label2, 2, IGN).tolist() == [[0]]
    assert vp.majority_label_per_patch(np.full((2, 2), IGN), 2, IGN, num_classes=3).tolist() == [[IGN]]


def test_majority_with_patch_one_is_identity():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 5, (6, 8))
    np.testing.assert_array_equal(vp.majority_label_per_patch(label, 1, num_classes=5), label)


def test_majority_rejects_bad_values():
    with pytest.raises(ValueError, match="outside"):
        vp.majority_label_per_patch(np.array([[0, 7], [1, 1]]), 2, num_classes=3)


def test_upsample_and_oracle():
    g = np.array([[1, 2], [3, 4]])
    up = vp.upsample_nearest(g, 3)
    assert up.shape == (6, 6) and up[2, 2] == 1 and up[3, 5] == 4
    label = np.zeros((4, 4), dtype=np.uint8)
    label[:, 0] = 1  # a one-pixel-wide "pole"
    oracle = vp.oracle_segmentation(label, 2)
    assert (oracle == 0).all()  # the pole loses every 2x2 vote (tie -> 0)
    ious = vp.iou_per_class(oracle, label, 2)
    assert ious[0] == pytest.approx(12 / 16) and ious[1] == 0.0
    assert vp.miou(oracle, label, 2) == pytest.approx((0.75 + 0.0) / 2)


def test_iou_hand_computed_and_ignore():
    target = np.array([0, 0, 1, 1, IGN, 2])
    pred = np.array([0, 1, 1, 1, 0, IGN])
    ious = vp.iou_per_class(pred, target, 4, IGN)
    # class 0: TP 1, FN 1 -> 1/2; class 1: TP 2, FP 1 -> 2/3; class 2: missed -> 0; class 3 absent -> nan
    assert ious[0] == pytest.approx(0.5)
    assert ious[1] == pytest.approx(2 / 3)
    assert ious[2] == 0.0
    assert math.isnan(ious[3])
    assert vp.miou(pred, target, 4, IGN) == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)


def test_miou_agrees_with_tutorial_lib_metrics():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 6, (20, 30))
    target[rng.random((20, 30)) < 0.1] = IGN
    pred = rng.integers(0, 5, (20, 30))
    cm = metrics.confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), 6, IGN)
    ours = vp.iou_per_class(pred, target, 6, IGN)
    np.testing.assert_allclose(ours, metrics.iou_per_class(cm).numpy(), equal_nan=True)
    assert vp.miou(pred, target, 6, IGN) == pytest.approx(metrics.mean_iou(cm))


def test_miou_perfect_and_empty():
    label = np.array([[0, 1], [2, IGN]])
    assert vp.miou(label, label, 3, IGN) == 1.0
    assert math.isnan(vp.miou(np.full((2, 2), IGN), np.full((2, 2), IGN), 3, IGN))


def test_patch_size_table_gets_worse_with_larger_patches():
    label = vp.synthetic_street_label(128, 128)
    rows = vp.patch_size_table(label, (1, 4, 16, 64))
    assert [r["tokens"] for r in rows] == [16384, 1024, 64, 4]
    assert rows[0]["miou"] == 1.0
    mious = [r["miou"] for r in rows]
    assert mious == sorted(mious, reverse=True)
    text = vp.format_patch_table(vp.patch_size_table(vp.synthetic_street_label(512, 512)))
    assert "TransUNet (paper)" in text and "blog variant" in text
    assert len(text.splitlines()) == 2 + len(vp.PATCH_SIZES)


def test_thin_classes_vanish_at_the_blog_patch_size():
    label = vp.synthetic_street_label(512, 512)
    small, blog = vp.patch_size_table(label, (4, vp.BLOG_PATCH))
    for c in vp.THIN_CLASSES:
        assert small["iou"][c] > 0.5
        assert blog["iou"][c] == 0.0


def test_synthetic_label_has_every_class():
    label = vp.synthetic_street_label(256, 384)
    assert label.shape == (256, 384) and label.dtype == np.uint8
    assert set(np.unique(label).tolist()) == set(range(11))


def test_stats_html_marks_paper_and_blog():
    html16 = vp.patch_stats_html(vp.patch_token_stats((512, 512), 16), 0.5, {"Pole": 0.25}, (512, 512))
    assert "1,024 tokens" in html16 and "TransUNet" in html16 and "50.0%" in html16 and "Pole 25.0%" in html16
    html128 = vp.patch_stats_html(vp.patch_token_stats((512, 512), 128))
    assert "16 tokens" in html128 and "blog" in html128


# ---------------------------------------------------------------- scenes


def test_street_scene_without_camvid_is_grace_hopper_and_drawn_label(tmp_path):
    for root in (None, tmp_path / "missing"):
        img, lab, src = vp.street_scene((64, 96), root)
        assert img.shape == (64, 96, 3) and img.dtype == np.float32
        assert 0.0 <= img.min() and img.max() <= 1.0
        assert lab.shape == (64, 96) and "grace_hopper" in src


def test_street_scene_reads_camvid_layout(tmp_path):
    (tmp_path / "val").mkdir()
    (tmp_path / "valannot").mkdir()
    rgb = np.zeros((36, 48, 3), np.uint8)
    rgb[:, :24] = 255
    lab = np.full((36, 48), 3, np.uint8)
    lab[:18] = 11  # void
    Image.fromarray(rgb).save(tmp_path / "val" / "a.png")
    Image.fromarray(lab).save(tmp_path / "valannot" / "a.png")
    img, label, src = vp.street_scene((72, 96), tmp_path, name="not-there.png")  # falls back to a.png
    assert src == "CamVid val/a.png"
    assert img.shape == (72, 96, 3) and img[0, 0, 0] == 1.0 and img[0, -1, 0] == 0.0
    assert set(np.unique(label).tolist()) == {3, IGN}
    assert (label[:36] == IGN).all() and (label[36:] == 3).all()


# ---------------------------------------------------------------- drawing patches


def test_patch_mosaic_lays_out_patchify_output():
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 6)
    tokens = patchify(x, 2)[0]  # (6, 2*2*2)
    patches = tokens.reshape(6, 2, 2, 2).numpy()  # (p1 p2 c)
    m = vp.patch_mosaic(patches, (2, 3), gap=1, fill=-1.0)
    assert m.shape == (5, 8, 2)
    assert (m[2] == -1).all() and (m[:, 2] == -1).all()
    img = x[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(m[3:5, 6:8], img[2:4, 4:6])  # patch (row 1, col 2)
    with pytest.raises(ValueError):
        vp.patch_mosaic(patches, (2, 2))


def test_drawing_functions_run():
    img = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    label = vp.synthetic_street_label(64, 64)
    fig, ax = plt.subplots()
    vp.draw_patch_grid(ax, img, 16, title="t")
    assert len(ax.collections) == 2 and len(ax.collections[0].get_segments()) == 3
    plt.close(fig)
    fig = vp.plot_patch_size_figure(img, label, 16)
    assert len(fig.axes) == 3 and "mIoU" in fig.axes[2].get_title()
    plt.close(fig)
    fig = vp.plot_patch_size_comparison(img, label, (4, 16, 32))
    assert len(fig.axes) == 5 and "P = 16 (TransUNet (paper))" in fig.axes[3].get_title()
    plt.close(fig)


# ---------------------------------------------------------------- attention maps


def _toy_weights():
    # 2 layers, batch 1, 2 heads, 1 class token + 2x2 grid
    torch.manual_seed(0)
    return [torch.randn(1, 2, 5, 5).softmax(-1) for _ in range(2)]


def test_attention_map_for_query_picks_row_and_drops_prefix():
    w = _toy_weights()
    m = vp.attention_map_for_query(w, 1, 0, 3, (2, 2), num_prefix_tokens=1)
    np.testing.assert_allclose(m, w[1][0, 0, 3, 1:].reshape(2, 2).numpy(), rtol=1e-6)
    mean = vp.attention_map_for_query(w, 0, "mean", 0, (2, 2))
    np.testing.assert_allclose(mean, w[0][0].mean(0)[0, 1:].reshape(2, 2).numpy(), rtol=1e-6)
    assert np.allclose(vp.attention_map_for_query(w, 0, None, 0, (2, 2)), mean)
    # (h, N, N) per layer is accepted too
    m2 = vp.attention_map_for_query([x[0] for x in w], 1, 0, 3, (2, 2))
    np.testing.assert_allclose(m, m2)
    with pytest.raises(ValueError):
        vp.attention_map_for_query(w, 0, 0, 5, (2, 2))
    with pytest.raises(ValueError):
        vp.attention_map_for_query(w, 0, 0, 0, (3, 3))


def test_attention_map_without_prefix_sums_to_one():
    w = [torch.randn(3, 4, 4).softmax(-1)]
    m = vp.attention_map_for_query(w, 0, 2, 1, (2, 2), num_prefix_tokens=0)
    assert m.sum() == pytest.approx(1.0)


def test_rollout_map_for_query_matches_attention_rollout():
    w = _toy_weights()
    got = vp.rollout_map_for_query(w, 1, "mean", 0, (2, 2))
    want = attention_rollout(w)[0, 0, 1:].reshape(2, 2).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # through layer 0 only = (A0 + I) / 2, renormalised
    a0 = (w[0][0].mean(0) + torch.eye(5)) / 2
    a0 = a0 / a0.sum(-1, keepdim=True)
    np.testing.assert_allclose(vp.rollout_map_for_query(w, 0, None, 2, (2, 2)),
                               a0[2, 1:].reshape(2, 2).numpy(), rtol=1e-6)
    one_head = vp.rollout_map_for_query(w, 1, 1, 0, (2, 2))
    np.testing.assert_allclose(one_head, attention_rollout(w, head=1)[0, 0, 1:].reshape(2, 2).numpy(), rtol=1e-6)


def test_query_options_and_cells():
    opts = vp.query_options((2, 3), num_prefix_tokens=1)
    assert opts[0] == ("[class] token", 0)
    assert opts[-1] == ("patch 5 (row 1, col 2)", 6)
    assert len(opts) == 7
    assert vp.query_cell(0, (2, 3)) is None
    assert vp.query_cell(6, (2, 3)) == (1, 2)
    assert vp.query_cell(4, (2, 3), num_prefix_tokens=0) == (1, 1)


def test_attention_views_with_a_real_vit():
    model = VisionTransformer(16, 4, 3, dim=16, depth=2, num_heads=2, mlp_dim=32).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        _, weights = model(x, return_weights=True)
    assert len(weights) == 2 and weights[0].shape == (1, 2, 17, 17)
    m = vp.attention_map_for_query(weights, 1, "mean", 0, model.grid)
    assert m.shape == (4, 4) and 0 < m.sum() <= 1 + 1e-6
    fig = vp.plot_attention_views(x[0].permute(1, 2, 0).numpy(), weights, 1, 0, 6, model.grid)
    assert len(fig.axes) == 2 and "rollout" in fig.axes[1].get_title()
    plt.close(fig)


def test_position_embedding_similarity():
    pos = torch.randn(1, 1 + 6, 8)
    sim = vp.position_embedding_similarity(pos, (2, 3), num_prefix_tokens=1)
    assert sim.shape == (2, 3, 2, 3)
    np.testing.assert_allclose([sim[r, c, r, c] for r in range(2) for c in range(3)], 1.0, rtol=1e-6)
    np.testing.assert_allclose(sim.reshape(6, 6), sim.reshape(6, 6).T, rtol=1e-6)
    p = torch.nn.functional.normalize(pos[0, 1:], dim=-1)
    assert sim[0, 1, 1, 2] == pytest.approx(float(p[1] @ p[5]), rel=1e-5)
    with pytest.raises(ValueError):
        vp.position_embedding_similarity(pos, (2, 2), 1)
    fig = vp.plot_position_similarity(sim)
    assert len(fig.axes) == 6 + 1  # six maps and a colour bar
    plt.close(fig)
