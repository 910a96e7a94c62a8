"""Weights from the official world: Google's ImageNet-21k ``.npz`` and official TransUNet ``.pth``.

Two explicit tables do all the work:

* ``OFFICIAL_NAMES``: our module names <-> the official PyTorch state_dict names.
* ``npz_table(model)``: official npz key -> our parameter name and the layout change it needs
  (Flax stores conv kernels HWIO and attention kernels as (D, heads, head_dim)).
"""

from __future__ import annotations

import os
import re
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path
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
    if model.transformer is None:
        raise WeightLoadingError(
            f"the CNN-only baseline {c.name!r} (use_transformer=False) has no transformer, so neither the "
            "official TransUNet weights nor Google's ViT npz fit it; load them into the TransUNet preset "
            f"it comes from (e.g. 'R50-ViT-B_16' for 'R50-UNet'), or train the baseline from scratch"
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


def _shape_fix(user_key: str, ours: str, got: tuple, want: tuple, model: nn.Module) -> str:
    """How to build a model that fits a tensor of shape ``got`` (vs the model's ``want``)."""
    c = model.config
    if ours.startswith("head.") and got[:1] != want[:1]:
        return f"the file has {got[0]} classes: build the model with get_config({c.name!r}, num_classes={got[0]})"
    if ours == "pos_embed" and len(got) == 3 and got[-1] == want[-1]:
        n, side = got[1], int(round(got[1] ** 0.5))
        size = f"img_size={side * c.token_stride}" if side * side == n else f"an img_size whose token grid has {n} cells"
        return (f"the weights were trained on a {n}-token grid, the model has {want[1]}: build it with {size} "
                "(pixels / 16 per side)")
    return (f"the weights come from another architecture (hidden size, layers, CNN widths): build the model "
            f"with the preset and config they were trained with (this model: {c.name!r})")


def _load_checked(model: nn.Module, tensors: Mapping[str, torch.Tensor], source: str,
                  names: Mapping[str, str] | None = None) -> None:
    """Copy ``tensors`` (our names) into ``model``; every mismatch is reported by name.

    ``names`` maps our name -> the key as written in the user's file, used in the messages.
    """
    names = names or {}
    own = model.state_dict()

    def shown(k: str) -> str:
        return names.get(k) or _rename(k, to_official=True) or k

    missing = sorted(shown(k) for k in set(own) - set(tensors))
    unexpected = sorted(shown(k) for k in set(tensors) - set(own))
    bad = [(k, tuple(tensors[k].shape), tuple(own[k].shape)) for k in tensors
           if k in own and tuple(tensors[k].shape) != tuple(own[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {missing[:20]}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {unexpected[:20]}")
    if bad:
        lines = [f"{shown(k)}: shape {got} in the file, {want} in the model" for k, got, want in bad[:20]]
        fixes = dict.fromkeys(_shape_fix(shown(k), k, got, want, model) for k, got, want in bad)
        problems.append(f"mis-shaped keys ({len(bad)}):\n    " + "\n    ".join(lines)
                        + "\n  Fix: " + "; ".join(fixes))
    if problems:
        raise WeightLoadingError(
            f"{source} does not fit this model ({model.config.name}, img_size "
            f"{model.config.img_size}, {model.config.num_classes} classes):\n  "
            + "\n  ".join(problems)
            + ("" if bad else "\nBuild the model with the config the weights were trained with "
               "(get_config(name, num_classes=..., img_size=...)).")
        )
    model.load_state_dict(tensors, strict=True)


def load_official_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                             source: str = "the official state_dict") -> nn.Module:
    """Load a ``.pth`` state_dict saved by the official repository (with or without ``module.``).

    Errors name the keys as they are written in ``state_dict`` and say how to fix the model.
    """
    _check_official_layout(model)
    ours, unknown, names = {}, [], {}
    for key, value in state_dict.items():
        stripped = key[len("module."):] if key.startswith("module.") else key
        name = _rename(stripped, to_official=False)
        if name is None:
            unknown.append(key)
        else:
            ours[name], names[name] = value, key
    if unknown:
        raise WeightLoadingError(f"{source}: unexpected keys with no counterpart in this model: {unknown[:20]}")
    _load_checked(model, ours, source, names)
    return model


def load_official_pth(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """``load_official_state_dict`` from a file, read safely (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling and zip errors come in many types
        raise WeightLoadingError(
            f"{path} is not a readable PyTorch state_dict ({err.__class__.__name__}: {err}); "
            "download it again, or for Google's ImageNet .npz use load_official_npz"
        ) from err
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    if not isinstance(state, Mapping):
        raise WeightLoadingError(f"{path} holds a {type(state).__name__}, not a state_dict of named tensors")
    return load_official_state_dict(model, state, str(path))


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


_NPZ_HINT = "download it again (Google's R50+ViT-B_16.npz for the hybrid, ViT-B_16.npz without CNN)"
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _open_npz(path: str | os.PathLike) -> "np.lib.npyio.NpzFile":
    """``np.load`` of an .npz archive (no pickles), with one clear error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"npz file {path} not found; {_NPZ_HINT}")
    try:
        arrays = np.load(path, allow_pickle=False)
    except _READ_ERRORS as err:
        raise WeightLoadingError(
            f"{path} is not a readable .npz archive ({err.__class__.__name__}: {err}): it is damaged, "
            f"truncated or another kind of file; {_NPZ_HINT}"
        ) from err
    if not isinstance(arrays, np.lib.npyio.NpzFile):
        raise WeightLoadingError(f"{path} holds a single .npy array, not an .npz archive of named weights; {_NPZ_HINT}")
    if any(name.endswith("data.pkl") for name in arrays.files):
        arrays.close()
        raise WeightLoadingError(f"{path} is a PyTorch file (.pth/.pt), not an .npz: use load_official_pth")
    return arrays


def _read_array(arrays, key: str, source: str) -> np.ndarray:
    try:
        return np.asarray(arrays[key])
    except _READ_ERRORS as err:
        raise WeightLoadingError(
            f"{source}: array {key!r} cannot be read ({err.__class__.__name__}: {err}); {_NPZ_HINT}"
        ) from err


def load_official_npz(model: nn.Module, path_or_arrays, strict: bool = True) -> nn.Module:
    """Load Google's ImageNet-21k ``R50+ViT-B_16.npz`` (or ``ViT-B_16.npz``) as TransUNet does.

    Reads the CNN and transformer weights; the decoder and head keep their initialisation.
    ``path_or_arrays``: a path or a mapping of npz key -> array. Keys are always joined with '/'.
    With ``strict`` any npz key that is neither read nor known to be unused is an error.
    A file that is not a readable .npz raises ``WeightLoadingError`` naming it.
    """
    _check_official_layout(model)
    if isinstance(path_or_arrays, (str, os.PathLike)):
        with _open_npz(path_or_arrays) as arrays:
            return _load_npz_arrays(model, arrays, strict, str(path_or_arrays))
    return _load_npz_arrays(model, path_or_arrays, strict, "the npz")


def _load_npz_arrays(model: nn.Module, arrays, strict: bool, source: str) -> nn.Module:
    keys = set(arrays.keys())
    table = npz_table(model)
    pos_key = "Transformer/posembed_input/pos_embedding"
    missing = [k for k, _, _ in table if k not in keys] + ([] if pos_key in keys else [pos_key])
    if missing:
        raise WeightLoadingError(
            f"{source} lacks {len(missing)} keys this model needs, e.g. {missing[:10]}; "
            "is it the right file (R50+ViT-B_16.npz for the hybrid, ViT-B_16.npz without CNN)?"
        )
    used = {k for k, _, _ in table} | {pos_key}
    unused = sorted(k for k in keys - used if not _IGNORED_NPZ.match(k))
    if strict and unused:
        raise WeightLoadingError(f"{source} has keys this model does not use: {unused[:20]}")
    own = model.state_dict()
    new = {}
    for key, name, transform in table:
        tensor = transform(_read_array(arrays, key, source))
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise WeightLoadingError(
                f"{source}: npz key {key!r} -> {name!r}: shape {tuple(tensor.shape)} after the layout "
                f"change does not fit the model's {tuple(own[name].shape)}"
            )
        new[name] = tensor
    new["pos_embed"] = npz_position_embedding(_read_array(arrays, pos_key, source), model.grid)
    with torch.no_grad():
        for name, tensor in new.items():
            target = own[name]
            if tuple(tensor.shape) != tuple(target.shape):
                raise WeightLoadingError(
                    f"{source}: {name}: npz gives {tuple(tensor.shape)}, model has {tuple(target.shape)}"
                )
            target.copy_(tensor.to(target.dtype))
    return model
