"""Vision Transformer pieces (Dosovitskiy et al. 2021): patches, position embeddings, pre-LN blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from einops import rearrange
from einops.layers.torch import Rearrange
from torch import nn

from .attention import MultiHeadSelfAttention


def _pair(x: int | tuple[int, int]) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p*p*C) with N = (H/p)(W/p), patches in row-major order."""
    return rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=patch_size, p2=patch_size)


class PatchEmbedding(nn.Module):
    """Split an image into p x p patches and project each to D dims: (B, C, H, W) -> (B, N, D).

    ``mode="conv"``: a Conv2d with kernel = stride = p. ``mode="linear"``: patchify with einops,
    then a Linear on the flattened (p1 p2 c) patch. The two are the same map
    (see :func:`conv_to_linear_weight`).
    """

    def __init__(self, in_channels: int, dim: int, patch_size: int, mode: str = "conv"):
        super().__init__()
        self.patch_size = patch_size
        self.mode = mode
        if mode == "conv":
            self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
            self.to_tokens = Rearrange("b d h w -> b (h w) d")
        elif mode == "linear":
            self.to_patches = Rearrange(
                "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=patch_size, p2=patch_size
            )
            self.proj = nn.Linear(patch_size * patch_size * in_channels, dim)
        else:
            raise ValueError(f"unknown patch embedding mode {mode!r}; use 'conv' or 'linear'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        if x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(
                f"input of size {tuple(x.shape[-2:])} is not divisible by the patch size {p}; "
                f"resize or crop it to a multiple of {p}"
            )
        if self.mode == "conv":
            return self.to_tokens(self.proj(x))
        return self.proj(self.to_patches(x))


def conv_to_linear_weight(weight: torch.Tensor) -> torch.Tensor:
    """Conv kernel (D, C, p, p) -> Linear weight (D, p*p*C) in the (p1 p2 c) order of patchify."""
    return rearrange(weight, "d c p1 p2 -> d (p1 p2 c)")


def resize_pos_embed(
    pos: torch.Tensor,
    old_grid: tuple[int, int],
    new_grid: tuple[int, int],
    num_prefix_tokens: int = 0,
) -> torch.Tensor:
    """Resize learned position embeddings (1, P + h*w, D) to another grid (1, P + h'*w', D).

    The grid part is interpolated bilinearly with align_corners=True (what TransUNet's
    ``scipy.ndimage.zoom(order=1)`` computes); the P prefix tokens (class token) are kept.
    """
    prefix, grid = pos[:, :num_prefix_tokens], pos[:, num_prefix_tokens:]
    if grid.shape[1] != old_grid[0] * old_grid[1]:
        raise ValueError(
            f"position embedding has {grid.shape[1]} grid tokens, expected "
            f"{old_grid[0]}x{old_grid[1]} = {old_grid[0] * old_grid[1]}"
        )
    if tuple(old_grid) == tuple(new_grid):
        return pos
    grid = rearrange(grid, "1 (h w) d -> 1 d h w", h=old_grid[0], w=old_grid[1])
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bilinear", align_corners=True)
    return torch.cat([prefix, rearrange(grid, "1 d h w -> 1 (h w) d")], dim=1)


class Mlp(nn.Module):
    """fc1 -> GELU (exact) -> dropout -> fc2 -> dropout: (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, mlp_dim: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, dim)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        for fc in (self.fc1, self.fc2):  # the official initialisation
            nn.init.xavier_uniform_(fc.weight)
            nn.init.normal_(fc.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class TransformerBlock(nn.Module):
    """Pre-LN block: x = x + MSA(LN(x)); x = x + MLP(LN(x)).  (B, N, D) -> (B, N, D)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        head_dim: int | None = None,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        qkv_bias: bool = True,
        eps: float = 1e-6,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = MultiHeadSelfAttention(
            dim, num_heads, head_dim, qkv_bias=qkv_bias,
            attn_dropout=attention_dropout, proj_dropout=attention_dropout,
        )
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_dim, dropout)

    def forward(
        self, x: torch.Tensor, return_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        weights = None
        if return_weights:
            h, weights = self.attn(self.norm1(x), return_weights=True)
        else:
            h = self.attn(self.norm1(x))
        x = x + h
        x = x + self.mlp(self.norm2(x))
        return x, weights


class TransformerEncoder(nn.Module):
    """A stack of pre-LN blocks and a final LayerNorm: (B, N, D) -> (B, N, D).

    ``forward(x, return_weights=True)`` also returns every layer's attention weights, a list of
    (B, h, N, N) tensors.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_dim: int,
        head_dim: int | None = None,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        qkv_bias: bool = True,
        final_norm: bool = True,
        eps: float = 1e-6,
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_dim, head_dim, dropout, attention_dropout,
                             qkv_bias, eps)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=eps) if final_norm else nn.Identity()
        self.gradient_checkpointing = False

    def forward(
        self, x: torch.Tensor, return_weights: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        all_weights = []
        for layer in self.layers:
            if self.gradient_checkpointing and self.training and not return_weights:
                x, _ = torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=False)
            else:
                x, w = layer(x, return_weights)
                if return_weights:
                    all_weights.append(w)
        return self.norm(x), all_weights


class VisionTransformer(nn.Module):
    """A small ViT classifier for the notebooks: (B, C, H, W) -> logits (B, num_classes).

    Patch embedding, optional class token, learned position embeddings, encoder, then the class
    token (or the mean of the patch tokens when there is none) through a linear head.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int],
        patch_size: int,
        num_classes: int,
        dim: int = 64,
        depth: int = 4,
        num_heads: int = 4,
        mlp_dim: int = 128,
        in_channels: int = 3,
        class_token: bool = True,
        dropout: float = 0.0,
        patch_mode: str = "conv",
    ):
        super().__init__()
        h, w = _pair(img_size)
        if h % patch_size or w % patch_size:
            raise ValueError(f"img_size {(h, w)} is not divisible by patch_size {patch_size}")
        self.grid = (h // patch_size, w // patch_size)
        self.patch_embed = PatchEmbedding(in_channels, dim, patch_size, patch_mode)
        self.num_prefix_tokens = 1 if class_token else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if class_token else None
        n = self.grid[0] * self.grid[1] + self.num_prefix_tokens
        self.pos_embed = nn.Parameter(torch.randn(1, n, dim) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(dim, depth, num_heads, mlp_dim, dropout=dropout)
        self.head = nn.Linear(dim, num_classes)

    def forward(
        self, x: torch.Tensor, return_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        tokens = self.patch_embed(x)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        if tokens.shape[1] != self.pos_embed.shape[1]:
            raise ValueError(
                f"got {tokens.shape[1]} tokens but the position embedding has "
                f"{self.pos_embed.shape[1]}: feed images of the size the model was built for"
            )
        z, weights = self.encoder(self.dropout(tokens + self.pos_embed), return_weights)
        pooled = z[:, 0] if self.cls_token is not None else z.mean(dim=1)
        logits = self.head(pooled)
        return (logits, weights) if return_weights else logits


def attention_rollout(weights: list[torch.Tensor], head: int | None = None) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): how much each token draws on each input token.

    ``weights``: per-layer attention (B, h, N, N), first layer first. Each layer's map (the mean
    over heads, or one ``head``) gets the residual path added, A' = (A + I) / 2, rows renormalised,
    and the layers are multiplied: R = A'_L ... A'_1. Returns (B, N, N).
    """
    if not weights:
        raise ValueError("attention_rollout needs at least one layer of attention weights")
    rollout = None
    for w in weights:
        a = w.mean(dim=1) if head is None else w[:, head]
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = (a + eye) / 2
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout
