"""Attention: scaled dot-product attention, multi-head self-attention and the Non-local block.

Notation follows Vaswani et al. (2017): Q, K, V, d_k, h heads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    training: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T / sqrt(d_k)) V, written out.

    q: (..., N, d_k), k: (..., M, d_k), v: (..., M, d_v) -> output (..., N, d_v), weights (..., N, M).
    ``mask`` broadcasts to (..., N, M): a bool mask keeps positions where it is True (as in
    ``torch.nn.functional.scaled_dot_product_attention``); a float mask is added to the scores.
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must share their last dimension d_k, got {q.shape[-1]} and {k.shape[-1]}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same number of positions M, got {k.shape[-2]} and {v.shape[-2]}"
        )
    scores = torch.einsum("...nd,...md->...nm", q, k) / math.sqrt(q.shape[-1])
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    weights = scores.softmax(dim=-1)
    if dropout_p > 0.0 and training:
        weights = F.dropout(weights, p=dropout_p)
    return torch.einsum("...nm,...md->...nd", weights, v), weights


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention, (B, N, D) -> (B, N, D).

    ``fused_qkv=False`` keeps separate ``query/key/value/out`` Linear layers (the official
    TransUNet names); ``fused_qkv=True`` uses one ``qkv`` Linear whose rows are [W_q; W_k; W_v].
    ``forward(x, return_weights=True)`` runs the explicit path and also returns the per-head
    weights (B, h, N, N); otherwise PyTorch's fused ``scaled_dot_product_attention`` is used
    (unless ``use_fused=False``).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        fused_qkv: bool = False,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.0,
        use_fused: bool = True,
    ):
        super().__init__()
        if head_dim is None:
            if dim % num_heads != 0:
                raise ValueError(
                    f"dim={dim} is not divisible by num_heads={num_heads}; "
                    "choose num_heads that divides dim or pass head_dim explicitly"
                )
            head_dim = dim // num_heads
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.fused_qkv = fused_qkv
        self.use_fused = use_fused
        self.attn_dropout = attn_dropout
        inner = num_heads * head_dim
        if fused_qkv:
            self.qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias)
        else:
            self.query = nn.Linear(dim, inner, bias=qkv_bias)
            self.key = nn.Linear(dim, inner, bias=qkv_bias)
            self.value = nn.Linear(dim, inner, bias=qkv_bias)
        self.out = nn.Linear(inner, dim)
        self.proj_dropout = nn.Dropout(proj_dropout)

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, N, D) -> q, k, v each (B, h, N, d_k)."""
        if self.fused_qkv:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        else:
            q, k, v = self.query(x), self.key(x), self.value(x)
        split = "b n (h d) -> b h n d"
        return tuple(rearrange(t, split, h=self.num_heads) for t in (q, k, v))

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self.project_qkv(x)
        p = self.attn_dropout if self.training else 0.0
        if return_weights or not self.use_fused:
            ctx, weights = scaled_dot_product_attention(q, k, v, mask, p, self.training)
        else:
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            weights = None
        y = self.proj_dropout(self.out(rearrange(ctx, "b h n d -> b n (h d)")))
        return (y, weights) if return_weights else y


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian Non-local block (Wang et al. 2018), (B, C, H, W) -> (B, C, H, W).

    y_i = sum_j softmax_j(theta(x_i)^T phi(x_j)) g(x_j);  z = W_z y + x.
    As in the paper there is no 1/sqrt(d) scaling; ``W_z`` is a 1x1 conv followed by BatchNorm
    whose scale starts at zero, so a fresh block is the identity.
    """

    def __init__(self, channels: int, inter_channels: int | None = None):
        super().__init__()
        inter = inter_channels or max(channels // 2, 1)
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.g = nn.Conv2d(channels, inter, 1)
        self.w_z = nn.Sequential(nn.Conv2d(inter, channels, 1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.w_z[1].weight)
        nn.init.zeros_(self.w_z[1].bias)

    def forward(
        self, x: torch.Tensor, return_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        h, w = x.shape[-2:]
        theta = rearrange(self.theta(x), "b c h w -> b (h w) c")
        phi = rearrange(self.phi(x), "b c h w -> b (h w) c")
        g = rearrange(self.g(x), "b c h w -> b (h w) c")
        weights = torch.einsum("bic,bjc->bij", theta, phi).softmax(dim=-1)  # (B, HW, HW)
        y = rearrange(weights @ g, "b (h w) c -> b c h w", h=h, w=w)
        z = self.w_z(y) + x
        return (z, weights) if return_weights else z
