"""Weights from the official world: Google's ImageNet-21k ``.npz`` and official TransUNet ``.pth``.

Two explicit tables do all the work:

* ``OFFICIAL_NAMES``: our module names <-> the official PyTorch state_dict names.
* ``npz_table(model)``: official npz key -> our parameter name and the layout change it needs
  (Flax stores conv kernels HWIO and attention kernels as (D, heads, head_dim)).
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Callable, Mapping

import numpy as np
import torch
from torch import nn

from .resnet import ResNetV2
from .vit import resize_pos_embed

# Our name prefix -> official name prefix; ``{i}`` stands for a layer index.
OFFICIAL_NAMES: tuple[tuple[str, str], ...] = (
    ("pos_embed", "transformer.embeddings.position_embeddings"),
    ("cnn.", "transformer.embeddings.hybrid_model."),
    ("patch_embed.proj.", "transformer.embeddings.patch_embeddings."),
    ("transformer.layers.{i}.norm1.", "transformer.encoder.layer.{i}.attention_norm."),
    ("transformer.layers.{i}.norm2.", "transformer.encoder.layer.{i}.ffn_norm."),
    ("transformer.layers.{i}.mlp.", "transformer.encoder.layer.{i}.ffn."),
    ("transformer.layers.{i}.attn.", "transformer.encoder.layer.{i}.attn."),
    ("transformer.norm.", "transformer.encoder.encoder_norm."),
    ("decoder.", "decoder."),
    ("head.", "segmentation_head."),
)


class WeightLoadingError(ValueError):
    """Raised when a checkpoint does not fit the model; the message names the offending keys."""


def _prefix_regex(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(re.escape("{i}"), r"(?P<i>\d+)"))


def _rename(key: str, to_official: bool) -> str | None:
    for ours, official in OFFICIAL_NAMES:
        src, dst = (ours, official) if to_official else (official, ours)
        m = _prefix_regex(src).match(key)
        if m:
            return dst.replace("{i}", m.groupdict().get("i") or "") + key[m.end():]
    return None


def _check_official_layout(model: nn.Module) -> None:
    c = getattr(model, "config", None)
    if c is None or c.class_token or c.decoder_style != "cup" or c.backbone == "resnet":
        raise WeightLoadingError(
            "only models with the official layout (presets 'R50-ViT-B_16', 'R50-ViT-L_16', "
            "'ViT-B_16', 'tiny') have official weight names; the 'blog' variant has none"
        )
    if getattr(model.transformer.layers[0].attn, "fused_qkv", False):
        raise WeightLoadingError("official weights need separate query/key/value layers")


def official_state_dict(model: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """Our weights under the official TransUNet names and shapes (what ``trainer.py`` saves)."""
    _check_official_layout(model)
    out = OrderedDict()
    for key, value in model.state_dict().items():
        name = _rename(key, to_official=True)
        if name is None:
            raise WeightLoadingError(f"no official name for parameter {key!r}")
        out[name] = value
    return out


def _load_checked(model: nn.Module, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` (our names) into ``model``; every mismatch is reported by name."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    bad_shapes = [
        f"{k}: checkpoint {tuple(tensors[k].shape)} vs model {tuple(own[k].shape)}"
        for k in tensors if k in own and tuple(tensors[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {missing[:20]}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {unexpected[:20]}")
    if bad_shapes:
        problems.append(f"mis-shaped keys ({len(bad_shapes)}): {bad_shapes[:20]}")
    if problems:
        raise WeightLoadingError(
            f"{source} does not fit this model ({model.config.name}, img_size "
            f"{model.config.img_size}, {model.config.num_classes} classes):\n  "
            + "\n  ".join(problems)
            + "\nBuild the model with the config the weights were trained with "
            "(get_config(name, num_classes=..., img_size=...))."
        )
    model.load_state_dict(tensors, strict=True)


def load_official_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Load a ``.pth`` state_dict saved by the official repository (with or without ``module.``)."""
    _check_official_layout(model)
    ours, unknown = {}, []
    for key, value in state_dict.items():
        key = key[len("module."):] if key.startswith("module.") else key
        name = _rename(key, to_official=False)
        if name is None:
            unknown.append(key)
        else:
            ours[name] = value
    if unknown:
        raise WeightLoadingError(f"unexpected keys with no counterpart in this model: {unknown[:20]}")
    _load_checked(model, ours, "the official state_dict")
    return model


def load_official_pth(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """``load_official_state_dict`` from a file, read safely (``weights_only=True``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    return load_official_state_dict(model, state)


# ------------------------------------------------------------------------------------------
# Google's npz (Flax layouts)
# ------------------------------------------------------------------------------------------
def _conv(w: np.ndarray) -> torch.Tensor:
    """HWIO -> OIHW."""
    return torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))


def _dense(w: np.ndarray) -> torch.Tensor:
    """Flax Dense kernel (in, out) -> torch Linear weight (out, in)."""
    return torch.from_numpy(np.ascontiguousarray(w.T))


def _attn_in(w: np.ndarray) -> torch.Tensor:
    """q/k/v kernel (D, heads, head_dim) -> (heads*head_dim, D); heads-major, as the model splits."""
    return _dense(w.reshape(w.shape[0], -1))


def _attn_out(w: np.ndarray) -> torch.Tensor:
    """out kernel (heads, head_dim, D) -> (D, heads*head_dim)."""
    return _dense(w.reshape(-1, w.shape[-1]))


def _flat(w: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(w.reshape(-1)))


# Keys in the npz that TransUNet never reads.
_IGNORED_NPZ = re.compile(r"^(cls|head/.*|pre_logits/.*)$")


def npz_table(model: nn.Module) -> list[tuple[str, str, Callable[[np.ndarray], torch.Tensor]]]:
    """(npz key, our parameter name, layout transform) for every weight the official loader reads.

    The position embedding is handled separately (class-token drop and grid resize).
    """
    table = [
        ("embedding/kernel", "patch_embed.proj.weight", _conv),
        ("embedding/bias", "patch_embed.proj.bias", _flat),
        ("Transformer/encoder_norm/scale", "transformer.norm.weight", _flat),
        ("Transformer/encoder_norm/bias", "transformer.norm.bias", _flat),
    ]
    for i in range(len(model.transformer.layers)):
        src, dst = f"Transformer/encoderblock_{i}", f"transformer.layers.{i}"
        att = f"{src}/MultiHeadDotProductAttention_1"
        for part in ("query", "key", "value", "out"):
            kernel = _attn_out if part == "out" else _attn_in
            table.append((f"{att}/{part}/kernel", f"{dst}.attn.{part}.weight", kernel))
            table.append((f"{att}/{part}/bias", f"{dst}.attn.{part}.bias", _flat))
        for j, fc in ((0, "fc1"), (1, "fc2")):
            table.append((f"{src}/MlpBlock_3/Dense_{j}/kernel", f"{dst}.mlp.{fc}.weight", _dense))
            table.append((f"{src}/MlpBlock_3/Dense_{j}/bias", f"{dst}.mlp.{fc}.bias", _flat))
        for ln, norm in (("LayerNorm_0", "norm1"), ("LayerNorm_2", "norm2")):
            table.append((f"{src}/{ln}/scale", f"{dst}.{norm}.weight", _flat))
            table.append((f"{src}/{ln}/bias", f"{dst}.{norm}.bias", _flat))
    if isinstance(model.cnn, ResNetV2):
        table += [
            ("conv_root/kernel", "cnn.root.conv.weight", _conv),
            ("gn_root/scale", "cnn.root.gn.weight", _flat),
            ("gn_root/bias", "cnn.root.gn.bias", _flat),
        ]
        for b, block in enumerate(model.cnn.body, start=1):
            for u, unit in enumerate(block, start=1):
                src, dst = f"block{b}/unit{u}", f"cnn.body.block{b}.unit{u}"
                for k in (1, 2, 3):
                    table.append((f"{src}/conv{k}/kernel", f"{dst}.conv{k}.weight", _conv))
                    table.append((f"{src}/gn{k}/scale", f"{dst}.gn{k}.weight", _flat))
                    table.append((f"{src}/gn{k}/bias", f"{dst}.gn{k}.bias", _flat))
                if unit.downsample is not None:
                    table.append((f"{src}/conv_proj/kernel", f"{dst}.downsample.weight", _conv))
                    table.append((f"{src}/gn_proj/scale", f"{dst}.gn_proj.weight", _flat))
                    table.append((f"{src}/gn_proj/bias", f"{dst}.gn_proj.bias", _flat))
    return table


def _grid_of(n: int) -> tuple[int, int]:
    side = int(round(n ** 0.5))
    if side * side != n:
        raise WeightLoadingError(f"npz position embedding has {n} grid tokens, not a square grid")
    return side, side


def npz_position_embedding(posemb: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """The official rule: copy if sizes match; drop the class token if that makes them match;
    otherwise drop it and resize the square grid bilinearly (align_corners=True) to ``grid``."""
    pos = torch.from_numpy(np.asarray(posemb, dtype=np.float32))
    n_model = grid[0] * grid[1]
    if pos.shape[1] == n_model:
        return pos
    if pos.shape[1] - 1 == n_model:
        return pos[:, 1:]
    grid_part = pos[:, 1:]
    return resize_pos_embed(grid_part, _grid_of(grid_part.shape[1]), grid)


def load_official_npz(model: nn.Module, path_or_arrays, strict: bool = True) -> nn.Module:
    """Load Google's ImageNet-21k ``R50+ViT-B_16.npz`` (or ``ViT-B_16.npz``) as TransUNet does.

    Reads the CNN and transformer weights; the decoder and head keep their initialisation.
    ``path_or_arrays``: a path or a mapping of npz key -> array. Keys are always joined with '/'.
    With ``strict`` any npz key that is neither read nor known to be unused is an error.
    """
    _check_official_layout(model)
    arrays = np.load(path_or_arrays) if isinstance(path_or_arrays, (str, os.PathLike)) \
        else path_or_arrays
    keys = set(arrays.keys())
    table = npz_table(model)
    missing = [k for k, _, _ in table if k not in keys]
    if "Transformer/posembed_input/pos_embedding" not in keys:
        missing.append("Transformer/posembed_input/pos_embedding")
    if missing:
        raise WeightLoadingError(
            f"the npz lacks {len(missing)} keys this model needs, e.g. {missing[:10]}; "
            "is it the right file (R50+ViT-B_16.npz for the hybrid, ViT-B_16.npz without CNN)?"
        )
    used = {k for k, _, _ in table} | {"Transformer/posembed_input/pos_embedding"}
    unused = sorted(k for k in keys - used if not _IGNORED_NPZ.match(k))
    if strict and unused:
        raise WeightLoadingError(f"the npz has keys this model does not use: {unused[:20]}")
    own = model.state_dict()
    new = {}
    for key, name, transform in table:
        tensor = transform(np.asarray(arrays[key]))
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise WeightLoadingError(
                f"npz key {key!r} -> {name!r}: shape {tuple(tensor.shape)} after the layout "
                f"change does not fit the model's {tuple(own[name].shape)}"
            )
        new[name] = tensor
    new["pos_embed"] = npz_position_embedding(
        arrays["Transformer/posembed_input/pos_embedding"], model.grid
    )
    with torch.no_grad():
        for name, tensor in new.items():
            target = own[name]
            if tuple(tensor.shape) != tuple(target.shape):
                raise WeightLoadingError(
                    f"{name}: npz gives {tuple(tensor.shape)}, model has {tuple(target.shape)}"
                )
            target.copy_(tensor.to(target.dtype))
    return model
