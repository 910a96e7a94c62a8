import pytest
import torch
import torch.nn.functional as F

from tutorial_lib.decoder import CascadedUpsampler, DecoderBlock, SegmentationHead, upsample2x


def test_upsample_is_align_corners_true():
    x = torch.randn(1, 2, 3, 4)
    torch.testing.assert_close(upsample2x(x), torch.nn.UpsamplingBilinear2d(scale_factor=2)(x))
    assert not torch.allclose(upsample2x(x), F.interpolate(x, scale_factor=2, mode="bilinear"))


def test_decoder_block_concatenates_upsampled_first():
    torch.manual_seed(0)
    block = DecoderBlock(4, 3, skip_channels=2).eval()
    x, skip = torch.randn(1, 4, 5, 5), torch.randn(1, 2, 10, 10)
    conv = block.conv1[0]
    expected = block.conv2(F.relu(block.conv1[1](conv(torch.cat([upsample2x(x), skip], 1)))))
    torch.testing.assert_close(block(x, skip), expected)
    assert conv.in_channels == 6 and conv.bias is None


def test_decoder_block_skip_errors():
    with pytest.raises(ValueError, match="no skip"):
        DecoderBlock(4, 3, skip_channels=2)(torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match="0 skip channels"):
        DecoderBlock(4, 3)(torch.randn(1, 4, 5, 5), torch.randn(1, 2, 10, 10))


@pytest.mark.parametrize("n_skip, expected_in", [
    (3, [1024, 512, 192, 64]), (1, [1024, 256, 128, 64]), (0, [512, 256, 128, 64])])
def test_cup_uses_the_official_skip_rule(n_skip, expected_in):
    cup = CascadedUpsampler(768, 512, (256, 128, 64, 16), [512, 256, 64], n_skip)
    assert [b.conv1[0].in_channels for b in cup.blocks] == expected_in
    with pytest.raises(ValueError, match="n_skip=4"):
        CascadedUpsampler(768, 512, (256, 128, 64, 16), [512, 256, 64], 4)


def test_cup_and_head_shapes():
    cup = CascadedUpsampler(32, 16, (16, 8, 8, 4), [24, 12, 6], 3).eval()
    feats = [torch.randn(2, 24, 8, 10), torch.randn(2, 12, 16, 20), torch.randn(2, 6, 32, 40)]
    y = cup(torch.randn(2, 32, 4, 5), feats)
    assert y.shape == (2, 4, 64, 80)
    head = SegmentationHead(4, 7)
    assert head(y).shape == (2, 7, 64, 80) and head[0].kernel_size == (3, 3)
