import pytest
import torch

from tutorial_lib.resnet import BitBottleneck, Bottleneck, ResNet, ResNetV2, StdConv2d

TOL = dict(atol=1e-5, rtol=1e-5)


def test_std_conv_standardises_each_filter():
    conv = StdConv2d(4, 6, 3, padding=1, bias=False)
    w = conv.standardized_weight()
    torch.testing.assert_close(w.mean(dim=(1, 2, 3)), torch.zeros(6), atol=1e-6, rtol=0)
    var = w.var(dim=(1, 2, 3), unbiased=False)
    expected = conv.weight.var(dim=(1, 2, 3), unbiased=False)
    torch.testing.assert_close(var, expected / (expected + 1e-5), **TOL)


def test_std_conv_inference_cache_follows_weight_updates():
    conv = StdConv2d(3, 4, 3, padding=1, bias=False).eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        a = conv(x)
        torch.testing.assert_close(conv(x), a)
        conv.weight.mul_(-1.0).add_(0.3)
        b = conv(x)
    ref = torch.nn.functional.conv2d(x, conv.standardized_weight(), padding=1)
    torch.testing.assert_close(b, ref, **TOL)
    assert not torch.allclose(a, b)


def test_bit_bottleneck_projection_rules():
    assert BitBottleneck(64, 256, 64).downsample is not None  # channel change
    assert BitBottleneck(256, 256, 64).downsample is None
    unit = BitBottleneck(256, 512, 128, stride=2)
    assert unit.conv2.stride == (2, 2) and unit.conv1.stride == (1, 1)  # stride on the 3x3
    assert unit.gn_proj.num_groups == 512 and unit.gn_proj.eps == 1e-5
    assert unit.gn1.num_groups == 32 and unit.gn1.eps == 1e-6
    assert unit(torch.randn(1, 256, 9, 9)).shape == (1, 512, 5, 5)


def test_resnetv2_pads_the_block1_skip_only():
    net = ResNetV2().eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        top, (s1, s2, s3) = net(x)
        b1 = net.body.block1(net.pool(net.root(x)))
    assert top.shape == (1, 1024, 14, 14)
    assert b1.shape[-1] == 55 and s2.shape[-1] == 56
    torch.testing.assert_close(s2[..., :55, :55], b1)
    assert torch.all(s2[..., 55, :] == 0) and torch.all(s2[..., :, 55] == 0)
    assert net.skip_channels == [512, 256, 64]


def test_torchvision_resnet50_shapes():
    net = ResNet().eval()  # ResNet-50 trunk
    with torch.no_grad():
        top, features = net(torch.randn(1, 3, 224, 224))
    assert top.shape == (1, 2048, 7, 7)
    assert [tuple(f.shape) for f in features] == [(1, 512, 28, 28), (1, 256, 56, 56)]
    assert sum(p.numel() for p in net.parameters()) == 23_508_032  # torchvision resnet50 minus fc


def test_bottleneck_dilation_keeps_shape_and_grows_receptive_field():
    torch.manual_seed(0)
    plain, dilated = Bottleneck(32, 8, dilation=1).eval(), Bottleneck(32, 8, dilation=2).eval()
    x = torch.randn(1, 32, 15, 15, requires_grad=True)
    for block, reach in ((plain, 1), (dilated, 2)):
        y = block(x)
        assert y.shape == (1, 32, 15, 15)
        g, = torch.autograd.grad(y[0, :, 7, 7].sum(), x)
        rows = g.abs().sum(dim=(0, 1, 3)).nonzero().flatten()
        assert (rows.min().item(), rows.max().item()) == (7 - reach, 7 + reach)


def test_resnet_rejects_unknown_stem():
    with pytest.raises(ValueError, match="unknown stem"):
        ResNet(stem="vgg")
