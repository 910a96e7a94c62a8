import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from tutorial_lib.resnet import Bottleneck, ResNet, ResNetV2  # noqa: E402
from tutorial_lib.viz import features as vf  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _small_resnetv2():
    return ResNetV2(layers=(1, 1, 1), width=32, planes=(32, 64, 128))


# ---------------------------------------------------------------- receptive field formula


def test_effective_kernel_of_dilated_kernel():
    assert vf.effective_kernel(3, 1) == 3
    assert vf.effective_kernel(3, 2) == 5
    assert vf.effective_kernel(7, 3) == 19
    with pytest.raises(ValueError):
        vf.effective_kernel(0, 1)


def test_receptive_field_table_from_tuples():
    rows = vf.receptive_field_table([(3, 1), (3, 2), (3, 1, 2), (1, 1)])
    # r: 1 -> 3 -> 5 (j 1 -> 2) -> 5 + 4 * 2 = 13 -> 13; j: 1, 2, 2, 2
    assert [r.rf for r in rows] == [3, 5, 13, 13]
    assert [r.jump for r in rows] == [1, 2, 2, 2]
    assert [r.kernel for r in rows] == [3, 3, 5, 1]


def test_receptive_field_of_resnet50_is_427():
    # the standard value for torchvision's ResNet-50 (conv5_x output)
    rows = vf.receptive_field_table(vf.trace_layers(ResNet(), torch.zeros(1, 3, 64, 64)))
    assert rows[-1].rf == 427
    assert rows[-1].jump == 32
    assert len(rows) == 1 + 1 + 3 * (3 + 4 + 6 + 3)  # stem conv, max-pool, 3 convs per unit


def test_trace_layers_records_hybrid_stem_and_skips_projections():
    model = _small_resnetv2()
    layers = vf.trace_layers(model, torch.zeros(1, 3, 64, 64))
    assert layers[0] == vf.LayerInfo("root.conv", "conv", 7, 2, 1, 3, (32, 32, 32))
    assert layers[1].name == "pool" and layers[1].kind == "pool"
    assert layers[1].out_shape == (32, 15, 15)  # (32 - 3) // 2 + 1: the pad-0 max-pool
    assert not any("downsample" in layer.name for layer in layers)
    assert len(layers) == 2 + 3 * 3
    # stride on the 3x3 conv (conv2) in ResNetV2 units
    assert [layer.stride for layer in layers if layer.name.endswith("conv2")] == [1, 2, 2]


def test_trace_layers_keeps_projections_when_asked():
    layers = vf.trace_layers(_small_resnetv2(), torch.zeros(1, 3, 64, 64), skip=())
    assert sum("downsample" in layer.name for layer in layers) == 3


def test_trace_layers_sees_dilation():
    m = ResNet((1,), (8,), (2,), stem="blog", width=8, dilation=2)
    layers = vf.trace_layers(m, torch.zeros(1, 3, 32, 32))
    conv2 = next(layer for layer in layers if layer.name.endswith("conv2"))
    assert conv2.dilation == 2 and conv2.effective_kernel == 5
    assert conv2.out_shape == (8, 16, 16)  # padding = dilation keeps the shape


def test_trace_layers_restores_training_mode():
    m = _small_resnetv2().train()
    vf.trace_layers(m, torch.zeros(1, 3, 32, 32))
    assert m.training


def test_non_square_kernel_is_rejected():
    m = nn.Sequential(nn.Conv2d(1, 1, (3, 1)))
    with pytest.raises(ValueError, match="not square"):
        vf.trace_layers(m, torch.zeros(1, 1, 8, 8))


def _linear_net(dilation=1):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 4, 3, padding=dilation, dilation=dilation),
        nn.Conv2d(4, 2, 1),
    )


@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_gradient_footprint_matches_computed_receptive_field(dilation):
    net = _linear_net(dilation)
    rf = vf.receptive_field_table(vf.trace_layers(net, torch.zeros(1, 1, 64, 64)))[-1].rf
    fp = vf.gradient_footprint(net, 64)
    assert fp.shape == (64, 64)
    assert vf.footprint_extent(fp) == (rf, rf)


def test_gradient_footprint_of_dilated_stack_has_gaps():
    stack = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=2, dilation=2, bias=False) for _ in range(2)])
    with torch.no_grad():
        for c in stack:
            c.weight.fill_(1.0)
    fp = vf.gradient_footprint(stack, 21)
    assert vf.footprint_extent(fp) == (9, 9)
    centre = fp[6:15, 6:15]
    assert (centre[1::2, :] == 0).all() and (centre[:, 1::2] == 0).all()  # odd offsets unseen
    assert (centre[::2, ::2] > 0).all()


def test_footprint_extent():
    fp = torch.zeros(10, 10)
    assert vf.footprint_extent(fp) == (0, 0)
    fp[2, 3] = 1.0
    fp[6, 4] = 0.01
    assert vf.footprint_extent(fp) == (5, 2)
    assert vf.footprint_extent(fp, rel_tol=0.1) == (1, 1)


def test_stage_of():
    assert vf.stage_of("body.block2.unit1.conv1") == "block2"
    assert vf.stage_of("stages.0.1.conv2") == "stage1"
    assert vf.stage_of("root.conv") == "stem"
    assert vf.stage_of("pool") == "stem"
    assert vf.stage_of("stem.0") == "stem"


def test_plot_receptive_fields_draws_one_line_per_table():
    rows = vf.receptive_field_table([(3, 1), (3, 2), (3, 1)])
    ax = vf.plot_receptive_fields({"a": rows, "b": rows[:2]}, image_size=224)
    assert ax.get_yscale() == "log"
    assert len(ax.get_legend().get_texts()) == 2


# ---------------------------------------------------------------- shapes


def test_stage_names():
    assert vf.stage_names(_small_resnetv2()) == {
        "stem": "root", "pool": "pool", "block1": "body.block1", "block2": "body.block2",
        "block3": "body.block3",
    }
    assert "pool" not in vf.stage_names(_small_resnetv2(), include_pool=False)
    names = vf.stage_names(ResNet((1, 1), (8, 16), (1, 2), width=8))
    assert names == {"stem": "stem", "stage1": "stages.0", "stage2": "stages.1"}
    assert vf.stage_names(nn.Sequential(nn.ReLU())) == {"0": "0"}


def test_shape_table_of_the_hybrid_at_224_matches_the_reference():
    rows = vf.shape_table(ResNetV2(), torch.zeros(1, 3, 224, 224))
    assert [(label, shape) for label, _, shape in rows] == [
        ("stem", (1, 64, 112, 112)),
        ("pool", (1, 64, 55, 55)),
        ("block1", (1, 256, 55, 55)),
        ("block2", (1, 512, 28, 28)),
        ("block3", (1, 1024, 14, 14)),
    ]


def test_capture_outputs_clones_before_inplace_ops():
    m = nn.Sequential(nn.Conv2d(1, 1, 1), nn.ReLU(inplace=True))
    with torch.no_grad():
        m[0].weight.fill_(-1.0)
        m[0].bias.zero_()
    out = vf.capture_outputs(m, torch.ones(1, 1, 2, 2), {"conv": "0"})
    assert (out["conv"] == -1).all()  # the in-place ReLU ran after the hook


def test_capture_outputs_reports_modules_never_called():
    class Skipper(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Identity(), nn.Identity()

        def forward(self, x):
            return self.used(x)

    with pytest.raises(RuntimeError, match="never called"):
        vf.capture_outputs(Skipper(), torch.zeros(1), ["used", "unused"])


def test_format_table():
    text = vf.format_table([("stem", (1, 64, 112, 112), 0.12345)], ["stage", "shape", "x"])
    lines = text.splitlines()
    assert lines[0].split() == ["stage", "shape", "x"]
    assert "1 x 64 x 112 x 112" in lines[2] and "0.123" in lines[2]
    assert len(lines) == 3


def test_leaf_output_bytes_counts_inplace_relu_once():
    m = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(inplace=True), nn.Conv2d(2, 2, 1), nn.ReLU())
    # conv 2x4x4, in-place relu (shared), conv 2x4x4, relu 2x4x4: 3 tensors of 32 floats
    assert vf.leaf_output_bytes(m, torch.zeros(1, 1, 4, 4)) == 3 * 32 * 4


# ---------------------------------------------------------------- feature maps


def test_example_image_falls_back_to_grace_hopper(monkeypatch):
    monkeypatch.setenv("CAMVID_DIR", "/nonexistent/camvid")
    img, source = vf.example_image((48, 64))
    assert img.shape == (3, 48, 64)
    assert 0 <= img.min() and img.max() <= 1
    assert "grace_hopper" in source


def test_example_image_without_camvid_lookup():
    img, source = vf.example_image((32, 32), use_camvid=False)
    assert img.shape == (3, 32, 32) and "grace_hopper" in source


def test_channel_order_and_normalisation():
    maps = torch.zeros(3, 4, 4)
    maps[1] = torch.arange(16.0).view(4, 4)  # most varied
    maps[2, 0, 0] = 1.0
    maps[0] += 5.0  # constant
    assert vf.channel_order(maps).tolist() == [1, 2, 0]
    assert vf.channel_order(maps, "index").tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        vf.channel_order(maps, "random")
    with pytest.raises(ValueError):
        vf.channel_order(maps[0])
    norm = vf.normalize_maps(maps)
    assert norm[0].abs().max() == 0  # a constant map becomes 0
    assert norm[1].min() == 0 and norm[1].max() == 1
    assert torch.allclose(norm[1], maps[1] / 15)


def test_select_maps_clamps_start():
    maps = torch.randn(10, 3, 3)
    idx, shown = vf.select_maps(maps, start=8, count=4, order="index")
    assert idx.tolist() == [6, 7, 8, 9]
    assert shown.shape == (4, 3, 3)
    assert shown.amin(dim=(1, 2)).eq(0).all() and shown.amax(dim=(1, 2)).eq(1).all()


def test_plot_feature_grid_panels():
    maps = torch.rand(8, 6, 8)
    fig = vf.plot_feature_grid(maps, list(range(8)), image=torch.rand(3, 6, 8), ncols=5)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0] == "input" and titles[1:] == [f"channel {c}" for c in range(8)]
    assert len(fig.axes) == 10


def test_feature_map_widget_controls_follow_the_stage():
    acts = {"stem": torch.rand(16, 8, 8), "block1": torch.rand(64, 4, 4)}
    box = vf.feature_map_widget(acts, image=torch.rand(3, 8, 8), count=8)
    assert "tu-feature-widget" in box._dom_classes
    stage, start, order = box.controls["stage"], box.controls["start"], box.controls["order"]
    assert stage.value == "block1" and start.max == 64 - 8
    first = bytes(box.image.value)
    assert first.startswith(b"\x89PNG")
    start.value = 40
    assert bytes(box.image.value) != first
    stage.value = "stem"
    assert start.max == 8 and start.value == 8
    before = bytes(box.image.value)
    order.value = "index"
    assert bytes(box.image.value) != before
    fig = box.render("stem", 3, "index")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title().startswith("channel")]
    assert titles == [f"channel {c}" for c in range(3, 11)]
    assert "16 channels at 8 x 8" in fig._suptitle.get_text()


def test_figure_png_closes_the_figure():
    fig = plt.figure()
    png = vf.figure_png(fig)
    assert png.startswith(b"\x89PNG")
    assert not plt.fignum_exists(fig.number)


# ---------------------------------------------------------------- decoder helpers


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("in_size,out_size", [(4, 8), (5, 10), (3, 7), (8, 4)])
def test_bilinear_source_coords_match_pytorch(align_corners, in_size, out_size):
    ramp = torch.arange(in_size, dtype=torch.float64).view(1, 1, in_size)
    up = F.interpolate(ramp, size=out_size, mode="linear", align_corners=align_corners)
    coords = vf.bilinear_source_coords(out_size, in_size, align_corners)
    np.testing.assert_allclose(up.flatten().numpy(), coords, atol=1e-12)


def test_bilinear_source_coords_align_corners_hits_the_corners():
    c = vf.bilinear_source_coords(8, 4, True)
    assert c[0] == 0 and c[-1] == 3
    c = vf.bilinear_source_coords(8, 4, False)
    assert np.allclose(c[:3], [0, 0.25, 0.75])


def test_plot_sampling_positions_and_unet_diagram():
    ax = vf.plot_sampling_positions(4, 2)
    assert ax.get_xlabel()
    enc = [("input", 3, 64), ("e1", 16, 32), ("e2", 32, 16)]
    dec = [("d1", 16, 32), ("d0", 8, 64)]
    ax = vf.plot_unet_diagram(enc, dec, skips=[(1, 0)])
    texts = [t.get_text() for t in ax.texts]
    assert "e2" in texts and "d0" in texts and "16 x 32²" in texts
    assert len([p for p in ax.patches if isinstance(p, matplotlib.patches.Rectangle)]) == 5


def test_bottleneck_layers_traced_in_order():
    layers = vf.trace_layers(Bottleneck(8, 4, stride=2), torch.zeros(1, 8, 16, 16))
    assert [layer.name for layer in layers] == ["conv1", "conv2", "conv3"]
    assert [layer.stride for layer in layers] == [1, 2, 1]


def test_leaf_output_bytes_on_meta_device():
    with torch.device("meta"):
        m = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(inplace=True), nn.Conv2d(2, 2, 1))
        x = torch.zeros(1, 1, 4, 4)
    assert vf.leaf_output_bytes(m, x) == 2 * 32 * 4


def test_gradient_footprint_all_channels():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[1, 0, 0, 0] = 1.0  # channel 1 sees only its top-left neighbour
    assert vf.footprint_extent(vf.gradient_footprint(net, 7, channel=0)) == (0, 0)
    fp = vf.gradient_footprint(net, 7, channel=None)
    assert fp[2, 2] == 1 and fp.sum() == 1
