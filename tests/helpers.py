"""Small helpers shared by the model tests."""

import torch
from torch import nn


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and BatchNorm statistic non-trivial random values (eval-mode tests)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.02 if "pos_embed" in name or p.ndim >= 2 else 0.1
            base = 1.0 if name.endswith(("gn1.weight", "gn2.weight", "gn3.weight", "norm1.weight",
                                         "norm2.weight", "norm.weight", ".1.weight")) else 0.0
            p.copy_(base + scale * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return model
