"""TransUNet (Chen et al. 2021): a CNN-Transformer hybrid encoder and a cascaded upsampler.

``TransUNetConfig`` is the one place every size comes from; ``get_config`` returns a preset.
The module tree is weight-compatible with the official code through ``tutorial_lib.pretrained``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from .decoder import CascadedUpsampler, SegmentationHead
from .resnet import ResNet, ResNetV2
from .vit import PatchEmbedding, TransformerEncoder, resize_pos_embed


@dataclass(frozen=True)
class TransUNetConfig:
    """Every size of a TransUNet. Defaults are the official R50-ViT-B_16 at 224x224, 9 classes."""

    name: str = "R50-ViT-B_16"
    img_size: tuple[int, int] = (224, 224)
    in_channels: int = 3
    num_classes: int = 9
    # CNN part of the encoder: "resnetv2" (BiT hybrid), "resnet" (BatchNorm) or None (pure ViT)
    backbone: str | None = "resnetv2"
    resnet_layers: tuple[int, ...] = (3, 4, 9)
    resnet_width: int = 64  # stem channels
    resnet_planes: tuple[int, ...] = (64, 128, 256)  # bottleneck widths; stage out = 4 x planes
    resnet_strides: tuple[int, ...] = (1, 2, 2)
    resnet_stem: str = "bit"  # "bit" (ResNetV2), "torchvision" or "blog" (ResNet)
    resnet_dilation: int = 1
    # patches (on the CNN feature map for hybrids) and the transformer
    patch_size: int = 1
    patch_mode: str = "conv"  # "conv" or "linear"
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    head_dim: int = 64
    mlp_dim: int = 3072
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.0
    qkv_bias: bool = True
    class_token: bool = False
    encoder_norm: bool = True
    # False: the CNN-only baseline (the R50-U-Net row of Chen et al. 2021, Table 1). The 1x1 patch
    # projection of the CNN's deepest map feeds the decoder directly: no position embeddings, no
    # transformer; every other parameter keeps its TransUNet name and shape.
    use_transformer: bool = True
    # decoder (cascaded upsampler) and segmentation head
    decoder_head_channels: int = 512
    decoder_channels: tuple[int, ...] = (256, 128, 64, 16)
    n_skip: int = 3
    decoder_style: str = "cup"  # "cup" (official) or "blog"
    head_kernel_size: int = 3

    def __post_init__(self):
        if isinstance(self.img_size, int):
            object.__setattr__(self, "img_size", (self.img_size, self.img_size))
        object.__setattr__(self, "img_size", tuple(int(s) for s in self.img_size))
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {self.num_classes}")
        if self.backbone not in ("resnetv2", "resnet", None):
            raise ValueError(f"unknown backbone {self.backbone!r}; use 'resnetv2', 'resnet' or None")
        if not self.use_transformer and (self.backbone is None or self.class_token):
            raise ValueError(
                f"use_transformer=False (config {self.name!r}) needs a CNN backbone and no class "
                "token: start from a hybrid preset, e.g. get_config('tiny', use_transformer=False)"
            )
        h, w = self.img_size
        s = self.token_stride
        if h % s or w % s:
            raise ValueError(
                f"img_size {self.img_size} must be divisible by {s} (the pixels per token side "
                f"of {self.name!r}); try {(_round_to(h, s), _round_to(w, s))}"
            )
        if self.decoder_upsampling != 2 ** len(self.decoder_channels):
            raise ValueError(
                f"{len(self.decoder_channels)} decoder blocks upsample x"
                f"{2 ** len(self.decoder_channels)} but the tokens sit at 1/{self.decoder_upsampling}"
            )

    @property
    def cnn_stride(self) -> int:
        """Downsampling factor of the CNN part (1 when there is none)."""
        if self.backbone is None:
            return 1
        stem = {"bit": 4, "torchvision": 4, "blog": 1}[self.resnet_stem]
        return stem * math.prod(self.resnet_strides)

    @property
    def token_stride(self) -> int:
        """Image pixels per token side: 16 for the paper's model, 128 for the blog variant."""
        return self.cnn_stride * self.patch_size

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (h, w) = img_size / token_stride."""
        return self.img_size[0] // self.token_stride, self.img_size[1] // self.token_stride

    @property
    def decoder_upsampling(self) -> int:
        """Total upsampling of the decoder: from the 1/16 map to full resolution."""
        return min(self.token_stride, 16)

    @property
    def token_upsample(self) -> int:
        """Extra bilinear upsampling when the token grid is coarser than 1/16 (blog: x8)."""
        return max(self.token_stride // 16, 1)

    def replace(self, **overrides) -> "TransUNetConfig":
        return _replace(self, overrides)


def _round_to(x: int, s: int) -> int:
    return max(s, round(x / s) * s)


def _replace(config: TransUNetConfig, overrides: dict) -> TransUNetConfig:
    known = {f.name for f in dataclasses.fields(TransUNetConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; valid fields: {sorted(known)}")
    return dataclasses.replace(config, **overrides)


_PRESETS: dict[str, TransUNetConfig] = {
    "R50-ViT-B_16": TransUNetConfig(),
    "R50-ViT-L_16": TransUNetConfig(
        name="R50-ViT-L_16", hidden_size=1024, num_layers=24, num_heads=16, mlp_dim=4096,
    ),
    "ViT-B_16": TransUNetConfig(name="ViT-B_16", backbone=None, patch_size=16, n_skip=0),
    # The blog article's network (docs/reference.md section 8): its function and choices, without its never-called
    # layer4/fc and its conv biases in front of BatchNorm (section 8.3 reconciles the counts).
    "blog": TransUNetConfig(
        name="blog", img_size=(512, 512), num_classes=12,
        backbone="resnet", resnet_stem="blog", resnet_dilation=2, resnet_layers=(3, 4, 6),
        resnet_width=64, resnet_planes=(16, 32, 64), resnet_strides=(2, 2, 2),
        patch_size=16, patch_mode="linear", hidden_size=512, num_layers=12, num_heads=16,
        head_dim=64, mlp_dim=1024, dropout_rate=0.1, qkv_bias=False, class_token=True,
        encoder_norm=False, decoder_head_channels=512, n_skip=3, decoder_style="blog",
        head_kernel_size=1,
    ),
    # Small enough to train on CamVid on a 2-core CPU.
    "tiny": TransUNetConfig(
        name="tiny", img_size=(192, 256), num_classes=11,
        resnet_layers=(2, 2, 2), resnet_width=32, resnet_planes=(32, 64, 128),
        hidden_size=256, num_layers=4, num_heads=4, head_dim=64, mlp_dim=1024,
        decoder_head_channels=128, decoder_channels=(64, 32, 16, 16),
    ),
}

PRESETS = tuple(_PRESETS)

# CNN-only baselines: a TransUNet preset with ``use_transformer=False`` (same CNN, projection,
# decoder and head; no position embeddings, no transformer).
_BASELINES: dict[str, TransUNetConfig] = {
    "tiny-cnn": _PRESETS["tiny"].replace(name="tiny-cnn", use_transformer=False),
    "R50-UNet": _PRESETS["R50-ViT-B_16"].replace(name="R50-UNet", use_transformer=False),
}

BASELINE_PRESETS = tuple(_BASELINES)


def get_config(name: str = "R50-ViT-B_16", **overrides) -> TransUNetConfig:
    """A preset config, with any field overridden, e.g. ``get_config("tiny", num_classes=12)``.

    ``name`` is one of ``PRESETS`` or of the CNN-only ``BASELINE_PRESETS``.
    """
    presets = {**_PRESETS, **_BASELINES}
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; choose one of {list(presets)}")
    return _replace(presets[name], overrides)


def build_cnn(config: TransUNetConfig) -> nn.Module | None:
    """The CNN part of the hybrid encoder described by ``config`` (None for a pure ViT)."""
    if config.backbone == "resnetv2":
        return ResNetV2(config.resnet_layers, config.resnet_width, config.resnet_planes,
                        config.resnet_strides, config.in_channels)
    if config.backbone == "resnet":
        return ResNet(config.resnet_layers, config.resnet_planes, config.resnet_strides,
                      config.resnet_stem, config.resnet_width, config.resnet_dilation,
                      config.in_channels)
    return None


class TransUNet(nn.Module):
    """(B, C, H, W) -> logits (B, num_classes, H, W); a 1-channel input is repeated to 3.

    Encoder: CNN to 1/16 (``cnn``), patch embedding of its output (``patch_embed``), learned
    position embeddings (``pos_embed``), transformer (``transformer``). The tokens are reshaped
    back to a map and decoded by the cascaded upsampler (``decoder``) with the CNN skips, then
    ``head`` gives the logits.

    With ``config.use_transformer=False`` (presets ``tiny-cnn``, ``R50-UNet``) there is no
    ``pos_embed`` and no ``transformer`` (both None): the projected CNN map goes to the decoder,
    and any input size divisible by ``token_stride`` is accepted.
    """

    def __init__(self, config: TransUNetConfig | None = None):
        super().__init__()
        c = config or TransUNetConfig()
        self.config = c
        self.cnn = build_cnn(c)
        embed_in = self.cnn.out_channels if self.cnn is not None else c.in_channels
        skip_channels = self.cnn.skip_channels if self.cnn is not None else []
        n_tokens = c.grid[0] * c.grid[1] + int(c.class_token)
        if c.use_transformer:
            self.pos_embed = nn.Parameter(torch.zeros(1, n_tokens, c.hidden_size))
        else:
            self.register_parameter("pos_embed", None)
        if c.class_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, c.hidden_size))
            nn.init.normal_(self.pos_embed)  # the blog's randn position embedding
        else:
            self.cls_token = None
        self.patch_embed = PatchEmbedding(embed_in, c.hidden_size, c.patch_size, c.patch_mode)
        self.dropout = nn.Dropout(c.dropout_rate)
        self.transformer = TransformerEncoder(
            c.hidden_size, c.num_layers, c.num_heads, c.mlp_dim, c.head_dim, c.dropout_rate,
            c.attention_dropout_rate, c.qkv_bias, final_norm=c.encoder_norm,
        ) if c.use_transformer else None
        self.decoder = CascadedUpsampler(
            c.hidden_size, c.decoder_head_channels, c.decoder_channels, skip_channels, c.n_skip,
            c.decoder_style, c.token_upsample,
        )
        self.head = SegmentationHead(c.decoder_channels[-1], c.num_classes, c.head_kernel_size)
        self.grid = c.grid

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        """Validate (B, C, H, W) and repeat a single channel to ``in_channels``."""
        c = self.config
        if x.ndim != 4:
            raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(x.shape)}")
        if x.shape[1] == 1 and c.in_channels != 1:
            x = x.repeat(1, c.in_channels, 1, 1)
        if x.shape[1] != c.in_channels:
            raise ValueError(
                f"expected {c.in_channels} input channels (or 1, repeated), got {x.shape[1]}; "
                f"set in_channels={x.shape[1]} in the config for other inputs"
            )
        h, w = x.shape[-2:]
        s = c.token_stride
        if h % s or w % s:
            raise ValueError(
                f"input of size {(h, w)} is not divisible by {s}: resize or pad it to a "
                f"multiple of {s}, e.g. {(_round_to(h, s), _round_to(w, s))}"
            )
        if self.pos_embed is not None and (h // s, w // s) != self.grid:
            raise ValueError(
                f"input of size {(h, w)} gives a {h // s}x{w // s} token grid but the position "
                f"embeddings are for {self.grid[0]}x{self.grid[1]} (img_size "
                f"{self.grid[0] * s}x{self.grid[1] * s}); call model.resize_pos_embed({(h, w)}) "
                f"or build the model with img_size={(h, w)}"
            )
        return x

    def encode(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """(B, C, H, W) -> hidden map (B, D, h, w), CNN skips, per-layer attention weights."""
        features = []
        if self.cnn is not None:
            x, features = self.cnn(x)
        tokens = self.patch_embed(x)  # (B, N, D)
        if self.transformer is None:  # CNN-only baseline: the projected map is the hidden map
            h, w = (s // self.config.patch_size for s in x.shape[-2:])
            hidden = rearrange(tokens, "b (h w) d -> b d h w", h=h, w=w)
            return hidden, features, []
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        z, attention = self.transformer(self.dropout(tokens + self.pos_embed), return_attention)
        if self.cls_token is not None:
            z = z[:, 1:]  # the blog drops the class token after the encoder
        hidden = rearrange(z, "b (h w) d -> b d h w", h=self.grid[0], w=self.grid[1])
        return hidden, features, attention

    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.check_input(x)
        hidden, features, attention = self.encode(x, return_attention)
        logits = self.head(self.decoder(hidden, features))
        return (logits, attention) if return_attention else logits

    @torch.no_grad()
    def resize_pos_embed(self, img_size: int | tuple[int, int]) -> None:
        """Adapt the position embeddings to another input size (bilinear, align_corners=True)."""
        self.config = self.config.replace(img_size=img_size)
        new_grid = self.config.grid
        if self.pos_embed is None:  # CNN-only baseline: nothing depends on the grid
            self.grid = new_grid
            return
        pos = resize_pos_embed(self.pos_embed.data, self.grid, new_grid, int(self.config.class_token))
        self.pos_embed = nn.Parameter(pos)
        self.grid = new_grid

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute transformer blocks in the backward pass to save activation memory.

        A no-op for the CNN-only baseline (no transformer)."""
        if self.transformer is not None:
            self.transformer.gradient_checkpointing = enabled


def count_parameters(module: nn.Module) -> int:
    """Number of learnable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters())
