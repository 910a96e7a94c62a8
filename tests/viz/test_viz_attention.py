import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from tutorial_lib.attention import NonLocalBlock, scaled_dot_product_attention  # noqa: E402
from tutorial_lib.viz import attention as va  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------- receptive field


@pytest.mark.parametrize("depth", [1, 2, 5, 10])
def test_receptive_field_of_3x3_stack_grows_by_two_per_layer(depth):
    assert va.receptive_field([3] * depth) == 2 * depth + 1


def test_receptive_field_with_strides_and_dilation():
    # ResNet-style stem: 7x7/2 conv then 3x3/2 max-pool: 7 + (3 - 1) * 2 = 11
    assert va.receptive_field([(7, 2), (3, 2)]) == 11
    # after the two strides the jump is 4, so another 3x3 conv adds 8
    assert va.receptive_field([(7, 2), (3, 2), 3]) == 19
    assert va.receptive_field([(3, 1, 2)]) == 5  # dilated 3x3 covers 5 pixels
    assert va.receptive_field([]) == 1
    with pytest.raises(ValueError):
        va.receptive_field([(3, 0)])


def test_receptive_field_matches_gradient_support():
    torch.manual_seed(0)
    layers = [(3, 1), (3, 2), (3, 1)]
    net = torch.nn.Sequential(*[torch.nn.Conv2d(1, 1, k, s, padding=k // 2) for k, s in layers])
    x = torch.zeros(1, 1, 33, 33, requires_grad=True)
    y = net(x)
    y[0, 0, y.shape[-2] // 2, y.shape[-1] // 2].backward()
    rows = (x.grad[0, 0].abs() > 0).any(dim=1).nonzero()
    assert int(rows.max() - rows.min() + 1) == va.receptive_field(layers)


def test_sample_image_shape_and_range():
    img = va.sample_image((30, 32))
    assert img.shape == (30, 32, 3) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    assert va.sample_image(None).shape == (600, 512, 3)


# ---------------------------------------------------------------- softmax saturation


def test_unscaled_entropy_falls_as_d_k_grows_scaled_stays():
    curve = va.saturation_curve([2, 16, 128, 1024], n_keys=64, n_queries=256, seed=0)
    unscaled, scaled = curve["entropy_unscaled"], curve["entropy_scaled"]
    assert np.all(np.diff(unscaled) < 0)
    assert unscaled[-1] < 0.25 * curve["max_entropy"]
    # scaled: the score distribution does not depend on d_k, so neither does the entropy
    assert scaled.max() - scaled.min() < 0.15
    assert np.all(scaled > 0.8 * curve["max_entropy"])
    # saturation starves the gradient
    assert curve["jacobian_unscaled"][-1] < 0.2 * curve["jacobian_scaled"][-1]
    assert np.ptp(curve["jacobian_scaled"]) < 0.05


def test_softmax_saturation_values():
    r = va.softmax_saturation(64, scaled=True, n_keys=10, n_queries=300, seed=1)
    assert r["weights"].shape == (300, 10)
    np.testing.assert_allclose(r["weights"].sum(-1), 1.0, atol=1e-12)
    assert r["max_entropy"] == pytest.approx(math.log(10))
    assert 0 < r["entropy"] < r["max_entropy"]
    assert r["score_std"] == pytest.approx(1.0, abs=0.1)
    r_u = va.softmax_saturation(64, scaled=False, n_keys=10, n_queries=300, seed=1)
    assert r_u["score_std"] == pytest.approx(8.0, rel=0.1)  # sqrt(64)
    assert r_u["max_weight"] > r["max_weight"]
    assert r_u["saturated_fraction"] > r["saturated_fraction"] == 0.0
    # deterministic for a seed
    again = va.softmax_saturation(64, scaled=True, n_keys=10, n_queries=300, seed=1)
    np.testing.assert_array_equal(again["weights"], r["weights"])


def test_jacobian_norm_matches_autograd():
    r = va.softmax_saturation(8, scaled=False, n_keys=5, n_queries=4, seed=3)
    a = torch.tensor(r["weights"])
    norms = []
    for row in a:
        jac = torch.diag(row) - torch.outer(row, row)
        norms.append(torch.linalg.matrix_norm(jac).item())
    assert r["jacobian_norm"] == pytest.approx(float(np.median(norms)), rel=1e-9)


def test_plots_return_figures():
    fig = va.plot_softmax_saturation(32, scaled=False, n_keys=16)
    assert len(fig.axes) == 2
    axes = va.plot_saturation_curve(va.saturation_curve([2, 8], n_keys=8, n_queries=16))
    assert len(axes) == 2
    ax = va.plot_weights_matrix(torch.full((3, 4), 0.25), ["a", "b", "c"], list("wxyz"))
    assert len(ax.texts) == 12
    with pytest.raises(ValueError):
        va.plot_weights_matrix(np.ones(3))
    ax = va.plot_receptive_fields(np.zeros((20, 20, 3)), {"5 convs": 11})
    assert len(ax.patches) == 1


# ---------------------------------------------------------------- Non-local attention map


def _two_colour_image():
    img = np.zeros((8, 10, 3), dtype=np.float32)
    img[:, :5] = [0.9, 0.1, 0.1]  # red left half
    img[:, 5:] = [0.1, 0.2, 0.9]  # blue right half
    return img


def test_nonlocal_map_attends_to_similar_colour():
    img = _two_colour_image()
    attn = va.nonlocal_attention_map(img, (1, 3), temperature=0.1)
    assert attn.shape == (8, 10)
    assert attn.sum() == pytest.approx(1.0)
    assert attn[:, :5].sum() > 0.99  # a red query attends to red pixels, wherever they are
    np.testing.assert_allclose(attn[:, :5], attn[0, 0])  # equally to all of them: non-local
    # sigma brings locality back: nearer pixels of the same colour get more
    local = va.nonlocal_attention_map(img, (1, 3), temperature=0.1, sigma=1.5)
    assert local[3, 1] > local[3, 4] > local[0, 4]
    assert local.sum() == pytest.approx(1.0)


def test_nonlocal_map_temperature_and_errors():
    img = va.sample_image((24, 20))
    sharp = va.nonlocal_attention_map(img, (10, 8), temperature=0.02)
    soft = va.nonlocal_attention_map(img, (10, 8), temperature=1.0)
    assert sharp.max() > soft.max()
    with pytest.raises(ValueError):
        va.nonlocal_attention_map(img, (20, 0))
    with pytest.raises(ValueError):
        va.nonlocal_attention_map(img, (0, 0), temperature=0.0)


def test_nonlocal_map_is_a_row_of_the_tutorial_lib_block():
    img = va.sample_image((12, 10))
    t = 0.2
    feats = torch.tensor(va.colour_features(img), dtype=torch.float64).permute(2, 0, 1)[None]
    block = NonLocalBlock(3, 3).double()
    with torch.no_grad():
        block.theta.weight.copy_(torch.eye(3).view(3, 3, 1, 1) / t)
        block.phi.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        block.theta.bias.zero_()
        block.phi.bias.zero_()
    _, weights = block(feats, return_weights=True)
    x, y = 7, 4
    expected = weights[0, y * 10 + x].reshape(12, 10).detach().numpy()
    np.testing.assert_allclose(va.nonlocal_attention_map(img, (x, y), temperature=t), expected, atol=1e-10)


def test_colour_features_are_unit_vectors():
    u = va.colour_features(va.sample_image((16, 16)))
    np.testing.assert_allclose(np.linalg.norm(u, axis=-1), 1.0, atol=1e-4)


def test_overlay_draws():
    img = _two_colour_image()
    ax = va.plot_attention_overlay(img, va.nonlocal_attention_map(img, (2, 2)), (2, 2), title="t")
    assert len(ax.images) == 2 and len(ax.lines) == 1


# ---------------------------------------------------------------- heads


def test_relative_offset_maps_finds_a_shift():
    h, w = 4, 5
    n = h * w
    idx = np.arange(n).reshape(h, w)
    left = np.roll(idx, 1, axis=1).reshape(-1)  # token to the left (wrapping)
    below = np.roll(idx, -1, axis=0).reshape(-1)  # token one row below
    weights = np.zeros((2, n, n))
    weights[0, np.arange(n), left] = 1.0
    weights[1, np.arange(n), below] = 1.0
    maps = va.relative_offset_maps(torch.tensor(weights), (h, w))
    assert maps.shape == (2, h, w)
    assert maps[0, h // 2, w // 2 - 1] == pytest.approx(1.0)
    assert maps[1, h // 2 + 1, w // 2] == pytest.approx(1.0)
    np.testing.assert_allclose(maps.sum(axis=(-2, -1)), 1.0)
    uniform = va.relative_offset_maps(np.full((n, n), 1.0 / n), (h, w))
    np.testing.assert_allclose(uniform, 1.0 / n)
    with pytest.raises(ValueError):
        va.relative_offset_maps(weights, (3, 3))


def test_plot_head_maps():
    axes = va.plot_head_maps(np.random.default_rng(0).random((3, 4, 4)), ["a", "b", "c"], (1, 1), row_label="r")
    assert len(axes) == 3


# ---------------------------------------------------------------- cost


def test_attention_matrix_bytes():
    assert va.attention_matrix_bytes(196, num_heads=12) == 196 * 196 * 12 * 4
    assert va.attention_matrix_bytes(1024, 8, 2, 2) == 2 * 8 * 1024 * 1024 * 2
    # quadratic: doubling N quadruples the memory
    assert va.attention_matrix_bytes(2 * 300) == 4 * va.attention_matrix_bytes(300)


def test_saved_tensor_bytes_explicit_is_quadratic_fused_is_linear():
    b, h, n, d = 1, 2, 128, 8

    def qkv(length=n):
        return [torch.randn(b, h, length, d, requires_grad=True) for _ in range(3)]

    out, explicit = va.saved_tensor_bytes(lambda *t: scaled_dot_product_attention(*t)[0], *qkv())
    weights = va.attention_matrix_bytes(n, h, b)
    assert out.shape == (b, h, n, d)
    assert explicit >= weights  # the softmax output is kept for backward
    assert explicit < 3 * weights  # ...once, not once per op that uses it
    _, fused = va.saved_tensor_bytes(F.scaled_dot_product_attention, *qkv())
    assert fused < weights / 2
    _, fused_long = va.saved_tensor_bytes(F.scaled_dot_product_attention, *qkv(4 * n))
    assert fused_long < 5 * fused  # linear in N (x4), not quadratic (x16)
    with torch.no_grad():
        _, nothing = va.saved_tensor_bytes(F.scaled_dot_product_attention, *qkv())
    assert nothing == 0


def test_saved_tensor_bytes_counts_each_storage_once():
    x = torch.randn(4, 8, requires_grad=True)

    def fn(t):
        a = t.exp()  # exp saves its output a
        b = a.view(-1)  # a view: same storage
        return b * b  # mul saves b twice

    _, nbytes = va.saved_tensor_bytes(fn, x)
    assert nbytes == x.numel() * 4


def test_plot_loglog_reference_line():
    ns = [64, 128, 256]
    ax = va.plot_loglog(ns, {"a": [1.0, 4.0, 16.0]}, "seconds", title="x")
    ref = ax.lines[-1].get_ydata()
    np.testing.assert_allclose(ref, [1.0, 4.0, 16.0])
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
