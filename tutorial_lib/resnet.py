"""ResNet bottleneck stages in two flavours, both returning skip features for a U-Net decoder.

* :class:`ResNet`: torchvision-style (BatchNorm, post-activation bottleneck, expansion 4). With
  ``stem="blog"`` and ``dilation=2`` it reproduces the blog variant's backbone.
* :class:`ResNetV2`: the TransUNet / BiT hybrid backbone: ``StdConv2d`` (weight standardisation) +
  GroupNorm, stride on the 3x3 conv, stem max-pool without padding and a zero-padded block1 skip.
  Module names follow the official code (``root.conv``, ``body.block1.unit1.conv1``, ...).

Both forward passes map (B, 3, H, W) -> (x, features) where ``features`` holds the skips at
1/8, 1/4 and 1/2 of the input size, deepest first (the order the decoder consumes them).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

EXPANSION = 4


# --------------------------------------------------------------------------------------------
# TransUNet / BiT hybrid flavour
# --------------------------------------------------------------------------------------------
class StdConv2d(nn.Conv2d):
    """Conv2d with weight standardisation: each output filter is normalised over (in, kh, kw).

    w_hat = (w - mean) / sqrt(var + 1e-5), recomputed from the raw weight on every training
    forward. That is exactly a LayerNorm without affine over each filter, so by default
    (``use_fused = True``) it runs as one fused ``F.layer_norm`` kernel, forward and backward;
    ``use_fused = False`` spells out the formula (var_mean, subtract, divide), which is several
    times slower on CPU. In eval mode under ``no_grad`` the standardised weight is cached until
    the raw weight changes (``cache_weight = False`` recomputes it every call).
    """

    eps = 1e-5

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.use_fused = True
        self.cache_weight = True
        self._cache: tuple[tuple, torch.Tensor] | None = None

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight
        if not self.use_fused:
            var, mean = torch.var_mean(w, dim=[1, 2, 3], keepdim=True, unbiased=False)
            return (w - mean) / torch.sqrt(var + self.eps)
        if not w.is_contiguous() and w.is_contiguous(memory_format=torch.channels_last):
            # A channels_last weight is (out, kh, kw, in) in memory: normalise the same
            # elements in that order, so neither the input nor the result needs a copy.
            w = w.permute(0, 2, 3, 1)
            return F.layer_norm(w, w.shape[1:], eps=self.eps).permute(0, 3, 1, 2)
        return F.layer_norm(w, w.shape[1:], eps=self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled() or not self.cache_weight:
            w = self.standardized_weight()
        else:
            key = (self.weight.data_ptr(), self.weight._version, self.weight.dtype,
                   self.weight.device, self.weight.stride(), self.use_fused)
            if self._cache is None or self._cache[0] != key:
                self._cache = (key, self.standardized_weight().detach())
            w = self._cache[1]
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def _apply(self, fn, *args, **kwargs):
        self._cache = None
        return super()._apply(fn, *args, **kwargs)


def _std_conv(cin: int, cout: int, kernel: int, stride: int = 1) -> StdConv2d:
    return StdConv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)


class BitBottleneck(nn.Module):
    """Hybrid bottleneck unit (official ``PreActBottleneck``; its forward is post-activation).

    (B, cin, H, W) -> (B, cout, H/stride, W/stride); cmid = cout / 4; stride on the 3x3 conv.
    """

    def __init__(self, cin: int, cout: int, cmid: int, stride: int = 1):
        super().__init__()
        self.gn1 = nn.GroupNorm(32, cmid, eps=1e-6)
        self.conv1 = _std_conv(cin, cmid, 1)
        self.gn2 = nn.GroupNorm(32, cmid, eps=1e-6)
        self.conv2 = _std_conv(cmid, cmid, 3, stride)
        self.gn3 = nn.GroupNorm(32, cout, eps=1e-6)
        self.conv3 = _std_conv(cmid, cout, 1)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or cin != cout:
            self.downsample = _std_conv(cin, cout, 1, stride)
            self.gn_proj = nn.GroupNorm(cout, cout)  # one group per channel, default eps 1e-5
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.gn_proj(self.downsample(x))
        y = self.relu(self.gn1(self.conv1(x)))
        y = self.relu(self.gn2(self.conv2(y)))
        y = self.gn3(self.conv3(y))
        return self.relu(residual + y)


def _pad_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zero-pad (B, C, h, w) at the bottom/right to (B, C, *size), as the official code does."""
    dh, dw = size[0] - x.shape[-2], size[1] - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    if not (0 <= dh < 3 and 0 <= dw < 3):
        raise ValueError(f"skip of size {tuple(x.shape[-2:])} cannot be padded to {size}")
    return F.pad(x, (0, dw, 0, dh))


class ResNetV2(nn.Module):
    """TransUNet hybrid backbone: stem, then stages of :class:`BitBottleneck` units.

    (B, 3, H, W) -> x (B, C_last, H/16, W/16) for three stages with strides (1, 2, 2), and
    features [stage2 (1/8), stage1 padded (1/4), stem (1/2)].
    """

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 9),
        width: int = 64,
        planes: Sequence[int] | None = None,
        strides: Sequence[int] = (1, 2, 2),
        in_channels: int = 3,
    ):
        super().__init__()
        planes = list(planes) if planes is not None else [width * 2**i for i in range(len(layers))]
        self.root = nn.Sequential(OrderedDict(
            conv=StdConv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
            gn=nn.GroupNorm(32, width, eps=1e-6),
            relu=nn.ReLU(inplace=True),
        ))
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0)
        blocks, cin = OrderedDict(), width
        for b, (n, cmid, stride) in enumerate(zip(layers, planes, strides), start=1):
            cout = cmid * EXPANSION
            units = OrderedDict()
            for u in range(1, n + 1):
                units[f"unit{u}"] = BitBottleneck(cin, cout, cmid, stride if u == 1 else 1)
                cin = cout
            blocks[f"block{b}"] = nn.Sequential(units)
        self.body = nn.Sequential(blocks)
        self.out_channels = cin
        self.skip_channels = [planes[-2] * EXPANSION, planes[-3] * EXPANSION, width]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h, w = x.shape[-2:]
        x = self.root(x)
        features = [x]
        x = self.pool(x)
        blocks = list(self.body)
        for i, block in enumerate(blocks[:-1]):
            x = block(x)
            features.append(_pad_to(x, (h // 4 // (i + 1), w // 4 // (i + 1))))
        x = blocks[-1](x)
        return x, features[::-1]


# --------------------------------------------------------------------------------------------
# torchvision flavour (BatchNorm)
# --------------------------------------------------------------------------------------------
class Bottleneck(nn.Module):
    """torchvision bottleneck: 1x1 reduce, 3x3 (stride, dilation), 1x1 expand (x4), BatchNorm.

    (B, cin, H, W) -> (B, 4 * planes, H/stride, W/stride).
    """

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        cout = planes * EXPANSION
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


class ResNet(nn.Module):
    """torchvision-style ResNet trunk (no classifier) that returns skip features.

    ``stem="torchvision"``: 7x7/2 conv, BN, ReLU, 3x3/2 max-pool (padding 1), output at 1/4.
    ``stem="blog"``: the blog variant's 3x3/1 conv, BN, ReLU and no pool (full resolution).
    ``dilation`` is applied to every 3x3 conv in the stages (the blog variant has 2).

    (B, 3, H, W) -> x (last stage output), features: the outputs at 1/8, 1/4 and 1/2 of the
    input, deepest first (whichever of stem and stage outputs sits at those scales).
    """

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 3),
        planes: Sequence[int] = (64, 128, 256, 512),
        strides: Sequence[int] = (1, 2, 2, 2),
        stem: str = "torchvision",
        width: int = 64,
        dilation: int = 1,
        in_channels: int = 3,
    ):
        super().__init__()
        if stem == "torchvision":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
            self.stem_stride = 4
        elif stem == "blog":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False),
                nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            )
            self.stem_stride = 1
        else:
            raise ValueError(f"unknown stem {stem!r}; use 'torchvision' or 'blog'")
        stages, cin = [], width
        for n, p, s in zip(layers, planes, strides):
            blocks = []
            for i in range(n):
                blocks.append(Bottleneck(cin, p, s if i == 0 else 1, dilation))
                cin = p * EXPANSION
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.strides = tuple(strides)
        self.out_channels = cin
        stride, channels = self.stem_stride, {}
        if stride in (2, 4, 8):
            channels[stride] = width
        for p, s in zip(planes, strides):
            stride *= s
            channels[stride] = p * EXPANSION
        self.skip_channels = [channels.get(s, 0) for s in (8, 4, 2)]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = x.shape[-2]
        by_scale = {}
        x = self.stem(x)
        by_scale[h // x.shape[-2]] = x
        for stage in self.stages:
            x = stage(x)
            by_scale[h // x.shape[-2]] = x
        return x, [by_scale[s] for s in (8, 4, 2) if s in by_scale]
