"""SETR (Zheng et al. 2021, arXiv:2012.15840): a pure ViT encoder with three decoders.

The encoder is the library's ViT exactly as TransUNet's ``ViT-B_16`` preset builds it, under the
same names (``patch_embed``, ``pos_embed``, ``transformer``), so one state_dict loads into both.
Each model maps (B, C, H, W) -> logits (B, num_classes, H, W); with patch size p the tokens form
an (H/p, W/p) map of D channels, and the decoders differ in how they bring it back to H x W:

* :class:`SETRNaive`: 1x1 conv-BN-ReLU, 1x1 conv to classes, one bilinear upsampling x p.
* :class:`SETRPUP` (progressive upsampling): log2(p) stages of 3x3 conv-BN-ReLU then bilinear
  x2 (4 stages for p = 16), then a 1x1 conv to classes at full resolution.
* :class:`SETRMLA` (multi-level feature aggregation): the outputs of 4 evenly spaced layers
  (L/4, L/2, 3L/4, L), each LayerNorm -> 1x1 conv-BN-ReLU; top-down addition (deepest first);
  per level 3x3 conv-BN-ReLU, two more 3x3 conv-BN-ReLU to ``mla_head_channels`` and bilinear
  x4; concatenation, a 3x3 conv to classes and bilinear x p/4.

Decoder widths follow the reference implementation (OpenMMLab's SETR heads: 256 channels,
128 per MLA level, BatchNorm, ``align_corners=False``); the paper's encoder is ViT-L
(24 layers, D = 1024): ``get_setr_config(hidden_size=1024, num_layers=24, num_heads=16,
mlp_dim=4096)``. :func:`compare_pup_with_cup` sets SETR-PUP beside TransUNet's cascaded upsampler.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .decoder import Conv2dReLU
from .transunet import TransUNet, TransUNetConfig, get_config
from .vit import PatchEmbedding, TransformerEncoder


@dataclass(frozen=True)
class SETRConfig:
    """Sizes of a SETR model: the ViT encoder's come from ``vit`` (a pure-ViT TransUNetConfig)."""

    vit: TransUNetConfig = field(default_factory=lambda: get_config("ViT-B_16"))
    channels: int = 256  # naive and PUP decoder width; MLA width after each level's 1x1 conv
    mla_head_channels: int = 128  # MLA: channels of each level's output (4 are concatenated)
    mla_layers: tuple[int, ...] | None = None  # MLA: 1-based layers; None = L/4, L/2, 3L/4, L
    align_corners: bool = False  # bilinear upsampling as in SETR's reference implementation

    def __post_init__(self):
        v = self.vit
        if v.backbone is not None or v.class_token or not v.use_transformer:
            raise ValueError(
                f"SETR's encoder is a pure ViT without class token, but vit config {v.name!r} has "
                f"backbone={v.backbone!r}, class_token={v.class_token}; start from "
                "get_config('ViT-B_16')"
            )
        if self.channels < 1 or self.mla_head_channels < 1:
            raise ValueError("channels and mla_head_channels must be at least 1")

    @property
    def levels(self) -> tuple[int, ...]:
        """The 1-based transformer layers MLA aggregates."""
        if self.mla_layers is not None:
            return tuple(self.mla_layers)
        n = self.vit.num_layers
        return tuple(round(n * (i + 1) / 4) for i in range(4))

    def replace(self, **overrides) -> "SETRConfig":
        return get_setr_config(self, **overrides)


def get_setr_config(
    vit: str | TransUNetConfig | SETRConfig = "ViT-B_16", **overrides
) -> SETRConfig:
    """A SETRConfig on the preset ``vit``; each override goes to SETRConfig or to the ViT config.

    e.g. ``get_setr_config(num_classes=11, img_size=(192, 256), num_layers=4, channels=64)``.
    """
    base = vit if isinstance(vit, SETRConfig) else SETRConfig(
        vit=get_config(vit) if isinstance(vit, str) else vit)
    own = {f.name for f in dataclasses.fields(SETRConfig)}
    setr = {k: v for k, v in overrides.items() if k in own}
    vit_overrides = {k: v for k, v in overrides.items() if k not in own}
    if vit_overrides:
        setr["vit"] = setr.get("vit", base.vit).replace(**vit_overrides)
    return dataclasses.replace(base, **setr)


def _upsample(x: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


class _SETR(nn.Module):
    """The shared ViT encoder: (B, C, H, W) -> tokens (B, N, D) -> map (B, D, H/p, W/p)."""

    def __init__(self, config: SETRConfig | None, final_norm: bool = True):
        super().__init__()
        self.config = config = config or SETRConfig()
        c = config.vit
        self.grid = c.grid
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], c.hidden_size))
        self.patch_embed = PatchEmbedding(c.in_channels, c.hidden_size, c.patch_size, c.patch_mode)
        self.dropout = nn.Dropout(c.dropout_rate)
        self.transformer = TransformerEncoder(
            c.hidden_size, c.num_layers, c.num_heads, c.mlp_dim, c.head_dim, c.dropout_rate,
            c.attention_dropout_rate, c.qkv_bias, final_norm=c.encoder_norm and final_norm,
        )

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> position-embedded patch tokens (B, N, D), the transformer's input."""
        c = self.config.vit
        if x.ndim != 4 or x.shape[1] != c.in_channels:
            raise ValueError(f"expected a (B, {c.in_channels}, H, W) batch, got {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != tuple(c.patch_size * g for g in self.grid):
            raise ValueError(
                f"input of size {tuple(x.shape[-2:])} does not fit the {self.grid[0]}x"
                f"{self.grid[1]} position embeddings: feed {c.img_size} images or build the "
                f"model with get_setr_config(img_size={tuple(x.shape[-2:])})"
            )
        return self.dropout(self.patch_embed(x) + self.pos_embed)

    def to_map(self, z: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, D, H/p, W/p)."""
        return rearrange(z, "b (h w) d -> b d h w", h=self.grid[0], w=self.grid[1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> the last layer's map (B, D, H/p, W/p), after the final LayerNorm."""
        z, _ = self.transformer(self.tokens(x))
        return self.to_map(z)


class SETRNaive(_SETR):
    """SETR-Naive: (B, C, H, W) -> (B, K, H, W) with 1x1 conv-BN-ReLU, 1x1 conv, bilinear x p."""

    def __init__(self, config: SETRConfig | None = None):
        super().__init__(config)
        c = self.config
        self.decoder = Conv2dReLU(c.vit.hidden_size, c.channels, kernel_size=1)
        self.head = nn.Conv2d(c.channels, c.vit.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.decoder(self.encode(x)))
        return _upsample(logits, tuple(x.shape[-2:]), self.config.align_corners)


class SETRPUP(_SETR):
    """SETR-PUP: (B, C, H, W) -> (B, K, H, W); log2(p) x (3x3 conv-BN-ReLU, up x2), 1x1 conv."""

    def __init__(self, config: SETRConfig | None = None):
        super().__init__(config)
        c = self.config
        stages = int(math.log2(c.vit.patch_size))  # TransUNetConfig allows only powers of 2
        ins = [c.vit.hidden_size] + [c.channels] * (stages - 1)
        self.decoder = nn.ModuleList(Conv2dReLU(i, c.channels, kernel_size=3) for i in ins)
        self.head = nn.Conv2d(c.channels, c.vit.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.encode(x)
        for conv in self.decoder:
            y = conv(y)
            y = _upsample(y, (2 * y.shape[-2], 2 * y.shape[-1]), self.config.align_corners)
        return self.head(y)


class SETRMLA(_SETR):
    """SETR-MLA: (B, C, H, W) -> (B, K, H, W) from 4 evenly spaced transformer layers.

    Module tree: ``decoder.norms`` / ``decoder.proj`` / ``decoder.fuse`` / ``decoder.levels``
    (one per level, shallowest first) and ``head``. The encoder has no final LayerNorm: each
    level has its own (``decoder.norms``), as in the reference implementation.
    """

    def __init__(self, config: SETRConfig | None = None):
        super().__init__(config, final_norm=False)
        c = self.config
        d, ch, m, n = c.vit.hidden_size, c.channels, c.mla_head_channels, c.vit.num_layers
        levels = c.levels
        if (len(levels) != 4 or list(levels) != sorted(set(levels)) or levels[0] < 1
                or levels[-1] != n):
            raise ValueError(f"MLA aggregates 4 increasing layers ending with the last ({n}); "
                             f"got mla_layers={levels}")
        if c.vit.patch_size % 4:
            raise ValueError(f"MLA upsamples each level x4: the patch size must be a multiple of "
                             f"4, got {c.vit.patch_size}")
        self.decoder = nn.ModuleDict(dict(
            norms=nn.ModuleList(nn.LayerNorm(d, eps=1e-6) for _ in levels),
            proj=nn.ModuleList(Conv2dReLU(d, ch, kernel_size=1) for _ in levels),
            fuse=nn.ModuleList(Conv2dReLU(ch, ch, kernel_size=3) for _ in levels),
            levels=nn.ModuleList(
                nn.Sequential(Conv2dReLU(ch, m), Conv2dReLU(m, m)) for _ in levels),
        ))
        self.head = nn.Conv2d(len(levels) * m, c.vit.num_classes, 3, padding=1)

    def level_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, H, W) -> the 4 chosen layers' outputs, each LayerNorm-ed, as (B, D, H/p, W/p)."""
        z, outs = self.tokens(x), []
        levels = self.config.levels
        for i, layer in enumerate(self.transformer.layers, start=1):
            z, _ = layer(z)
            if i in levels:
                outs.append(self.to_map(self.decoder.norms[len(outs)](z)))
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dec, ac = self.decoder, self.config.align_corners
        projected = [proj(f) for proj, f in zip(dec.proj, self.level_maps(x))]
        aggregated, running = [], None
        for f in reversed(projected):  # top-down: the deepest level is added to every other
            running = f if running is None else running + f
            aggregated.insert(0, running)
        outs = []
        for fuse, level, f in zip(dec.fuse, dec.levels, aggregated):
            y = level(fuse(f))
            outs.append(_upsample(y, (4 * y.shape[-2], 4 * y.shape[-1]), ac))
        return _upsample(self.head(torch.cat(outs, dim=1)), tuple(x.shape[-2:]), ac)


SETR_DECODERS = {"naive": SETRNaive, "pup": SETRPUP, "mla": SETRMLA}


# --------------------------------------------------------------------------------------------
# SETR-PUP next to TransUNet's cascaded upsampler
# --------------------------------------------------------------------------------------------
def decoder_convs(model: nn.Module, x: torch.Tensor) -> list[tuple[int, int, int, int]]:
    """Every conv of ``model.decoder`` and ``model.head`` in the order they run during
    ``model(x)``: (kernel, in channels, out channels, output stride = input H / output H).

    Use meta tensors (``torch.device("meta")``) to get the list without computing anything.
    """
    rows, hooks = [], []
    height = x.shape[-2]

    def record(module, inputs, output):
        rows.append((module.kernel_size[0], module.in_channels, module.out_channels,
                     height // output.shape[-2]))

    for part in (model.decoder, model.head):
        hooks += [m.register_forward_hook(record) for m in part.modules()
                  if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return rows


def compare_pup_with_cup(config: SETRConfig | None = None) -> dict:
    """SETR-PUP and TransUNet with the same pure-ViT config (preset ``ViT-B_16``: no CNN, no skips).

    Both are built on the meta device. Returns ``same_encoder`` (identical encoder parameter
    names and shapes), ``encoder_params``, and for ``"pup"`` and ``"cup"``: ``convs`` (see
    :func:`decoder_convs`; the last row is the class head), ``params`` (decoder + head) and
    ``align_corners``.

    For ViT-B_16 at 224 x 224 with 9 classes: the same 85,797,120-parameter encoder; both
    decoders start from the encoder's final LayerNorm output at 1/16, use 3x3 conv-BN-ReLU and
    four bilinear x2 steps, and no skips. They differ in that PUP (3,543,305 parameters)
    convolves then upsamples, once per scale (4 convs at 1/16, 1/8, 1/4, 1/2), at a constant 256
    channels, with a 1x1 class conv and ``align_corners=False``; the CUP (5,877,081) has
    ``conv_more`` (768 -> 512 at 1/16), then per stage upsamples then convolves twice (8 convs
    at 1/8 ... 1/1), halving channels 256, 128, 64, 16, with a 3x3 class conv and
    ``align_corners=True``. What TransUNet adds on top is the CNN before the patch embedding
    (1x1 patches of its 1/16 map) and its skips at 1/8, 1/4, 1/2 concatenated into the first
    three stages.
    """
    config = config or SETRConfig()
    with torch.device("meta"):
        pup, cup = SETRPUP(config), TransUNet(config.vit)
        x = torch.empty(1, config.vit.in_channels, *config.vit.img_size)
    encoder = ("pos_embed", "patch_embed.", "transformer.")

    def split(model):
        sd = model.state_dict()
        enc = {k: tuple(v.shape) for k, v in sd.items() if k.startswith(encoder)}
        dec = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(encoder))
        return enc, dec

    (pup_enc, pup_dec), (cup_enc, cup_dec) = split(pup), split(cup)
    return {
        "same_encoder": pup_enc == cup_enc,
        "encoder_params": sum(p.numel() for n, p in pup.named_parameters()) - pup_dec,
        "pup": {"convs": decoder_convs(pup, x), "params": pup_dec,
                "align_corners": config.align_corners},
        "cup": {"convs": decoder_convs(cup, x), "params": cup_dec, "align_corners": True},
    }
