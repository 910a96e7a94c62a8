"""The U-Net side of TransUNet: decoder blocks, the cascaded upsampler (CUP) and the head."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Conv2dReLU(nn.Sequential):
    """3x3 conv (no bias) -> BatchNorm -> ReLU, named ``0``, ``1``, ``2`` as in the official code."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                      bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 with align_corners=True (``nn.UpsamplingBilinear2d``), (B, C, H, W) -> (B, C, 2H, 2W)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class DecoderBlock(nn.Module):
    """Upsample x2, concatenate the skip, two Conv2dReLU: (B, Cin, H, W) -> (B, Cout, 2H, 2W).

    ``style="cup"`` (official): up -> cat[up, skip] -> conv1 -> conv2.
    ``style="blog"``: up -> conv1 -> cat[x, skip] -> conv2 (the blog variant's order).
    A block built with ``skip_channels=0`` takes no skip.
    """

    def __init__(self, in_channels: int, out_channels: int, skip_channels: int = 0,
                 style: str = "cup"):
        super().__init__()
        if style not in ("cup", "blog"):
            raise ValueError(f"unknown decoder style {style!r}; use 'cup' or 'blog'")
        self.style = style
        self.skip_channels = skip_channels
        if style == "cup":
            self.conv1 = Conv2dReLU(in_channels + skip_channels, out_channels)
            self.conv2 = Conv2dReLU(out_channels, out_channels)
        else:
            self.conv1 = Conv2dReLU(in_channels, out_channels)
            self.conv2 = Conv2dReLU(out_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if (skip is not None) != (self.skip_channels > 0):
            raise ValueError(
                f"this block was built for {self.skip_channels} skip channels but got "
                f"{'no skip' if skip is None else f'a skip with {skip.shape[1]} channels'}"
            )
        x = upsample2x(x)
        if self.style == "cup":
            if skip is not None:
                x = torch.cat([x, skip], dim=1)
            return self.conv2(self.conv1(x))
        x = self.conv1(x)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(x)


class CascadedUpsampler(nn.Module):
    """CUP: hidden map at 1/16 -> ``conv_more`` -> decoder blocks (x2 each) -> (B, C_last, H, W).

    ``skip_channels`` lists the encoder skips deepest first; block i uses skip i when
    i < n_skip (the official rule), the rest get none. ``token_upsample`` > 1 first upsamples a
    coarser token grid to 1/16 (the blog variant's 4x4 grid, x8).
    """

    def __init__(
        self,
        hidden_size: int,
        head_channels: int,
        decoder_channels: Sequence[int],
        skip_channels: Sequence[int] = (),
        n_skip: int = 0,
        style: str = "cup",
        token_upsample: int = 1,
    ):
        super().__init__()
        if n_skip > len(skip_channels):
            raise ValueError(
                f"n_skip={n_skip} but the encoder provides only {len(skip_channels)} skips "
                f"({list(skip_channels)}); use n_skip <= {len(skip_channels)}"
            )
        self.n_skip = n_skip
        self.token_upsample = token_upsample
        self.conv_more = Conv2dReLU(hidden_size, head_channels)
        ins = [head_channels, *decoder_channels[:-1]]
        skips = [skip_channels[i] if i < n_skip else 0 for i in range(len(decoder_channels))]
        self.blocks = nn.ModuleList(
            DecoderBlock(i, o, s, style) for i, o, s in zip(ins, decoder_channels, skips)
        )

    def forward(self, x: torch.Tensor, features: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        if self.token_upsample > 1:
            x = F.interpolate(x, scale_factor=self.token_upsample, mode="bilinear",
                              align_corners=True)
        x = self.conv_more(x)
        for i, block in enumerate(self.blocks):
            x = block(x, features[i] if i < self.n_skip else None)
        return x


class SegmentationHead(nn.Sequential):
    """Conv (3x3 in the official model) to class logits: (B, C, H, W) -> (B, num_classes, H, W)."""

    def __init__(self, in_channels: int, num_classes: int, kernel_size: int = 3):
        super().__init__(
            nn.Conv2d(in_channels, num_classes, kernel_size, padding=kernel_size // 2)
        )
