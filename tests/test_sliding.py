"""Sliding-window inference and flip test-time augmentation (``tutorial_lib.evaluate``), checked
against a full-frame pass of models whose outputs do not depend on where a window starts."""

import pytest
import torch
from torch import nn

from tutorial_lib.evaluate import EVAL_MODES, predict_logits, sliding_logits, window_starts
from tutorial_lib.transunet import get_config


class Pointwise(nn.Module):
    """A 1x1 convolution: each output pixel depends on its input pixel only, so windows of any
    placement reproduce the full-frame output exactly."""

    def __init__(self, window=(32, 48), classes=5):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, classes, 1)
        self.config = get_config("tiny", img_size=window, num_classes=classes)
        self.seen = []

    def forward(self, x):
        self.seen.append(tuple(x.shape[-2:]))
        return self.conv(x)


@pytest.mark.parametrize("length,window", [(360, 192), (480, 256), (192, 192), (100, 192), (1000, 64), (65, 64)])
def test_window_starts_cover_the_frame_with_the_fewest_evenly_spread_windows(length, window):
    starts = window_starts(length, window)
    covered = torch.zeros(max(length, window), dtype=torch.bool)
    for s in starts:
        covered[s:s + window] = True
    assert covered[:length].all() and starts[0] == 0
    assert starts[-1] + window == max(length, window)
    assert len(starts) == max(1, -(-(length - window) // window) + 1)  # ceil: no window fewer covers it
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(0 < g <= window for g in gaps) and (not gaps or max(gaps) - min(gaps) <= 1)


def test_window_starts_for_camvid():
    assert window_starts(360, 192) == [0, 168] and window_starts(480, 256) == [0, 224]


@pytest.mark.parametrize("hw", [(72, 100), (32, 48), (20, 30)])
def test_sliding_equals_the_full_frame_for_a_pointwise_model(hw):
    model = Pointwise()
    x = torch.randn(2, 3, *hw)
    out = sliding_logits(model, x, model.config.img_size)
    expected = model.conv(x)  # the same op on the whole frame (padding cut off when smaller)
    assert out.shape == (2, 5, *hw)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    assert set(model.seen) == {(32, 48)}  # only model-size windows


def test_sliding_averages_overlapping_windows():
    """A model that outputs its window's offset-free mean: overlapping pixels get the mean of the windows."""

    class WindowMean(Pointwise):
        def forward(self, x):
            return x.mean(dim=(1, 2, 3), keepdim=True).expand(x.shape[0], 5, *x.shape[-2:])

    model = WindowMean(window=(16, 16))
    x = torch.zeros(1, 3, 16, 24)
    x[..., 16:] = 6.0
    out = sliding_logits(model, x, (16, 16))  # windows at columns 0-15 (mean 0) and 8-23 (mean 3)
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([0.0] * 8 + [1.5] * 8 + [3.0] * 8))


def test_flip_is_the_mean_with_the_mirrored_prediction():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)  # not mirror-symmetric
    model = Pointwise(window=(16, 16), classes=4)
    model.conv = conv
    x = torch.randn(1, 3, 16, 16)
    plain = predict_logits(model, x)
    flipped = predict_logits(model, x, flip=True)
    torch.testing.assert_close(flipped, (conv(x) + conv(x.flip(-1)).flip(-1)) / 2)
    assert not torch.allclose(plain, flipped)
    with torch.no_grad():  # a mirror-symmetric kernel: flip changes nothing
        conv.weight.copy_((conv.weight + conv.weight.flip(-1)) / 2)
    torch.testing.assert_close(predict_logits(model, x, flip=True), predict_logits(model, x), atol=1e-6, rtol=1e-5)


def test_predict_logits_rejects_an_unknown_mode():
    assert EVAL_MODES == ("resize", "sliding")
    with pytest.raises(ValueError, match="resize"):
        predict_logits(Pointwise(), torch.zeros(1, 3, 32, 48), mode="tiles")


def test_eval_input_size_per_mode():
    from tutorial_lib.evaluate import eval_input_size

    assert eval_input_size("resize", [192, 256]) == (192, 256)
    assert eval_input_size("sliding", (192, 256)) is None  # the frame keeps its own size
    with pytest.raises(ValueError, match="sliding"):
        eval_input_size("tiles", (192, 256))
