"""The CNN-only baseline: TransUNet with ``use_transformer=False`` (presets tiny-cnn, R50-UNet)."""

import pytest
import torch

from helpers import randomize_
from tutorial_lib.attention import MultiHeadSelfAttention
from tutorial_lib.profile import summarize_config
from tutorial_lib.transunet import (BASELINE_PRESETS, PRESETS, TransUNet, count_parameters,
                                    get_config)

TOL = dict(atol=1e-5, rtol=1e-5)


def _transformer_params(c) -> int:
    """Position embeddings + transformer of a TransUNet config, counted by formula."""
    d, inner, m, n = c.hidden_size, c.num_heads * c.head_dim, c.mlp_dim, c.grid[0] * c.grid[1]
    per_layer = (2 * 2 * d                    # norm1, norm2
                 + 3 * (d * inner + inner)    # query, key, value
                 + inner * d + d              # out
                 + d * m + m + m * d + d)     # mlp fc1, fc2
    return n * d + c.num_layers * per_layer + 2 * d  # pos_embed, layers, final LayerNorm


def test_presets_are_baselines_of_existing_presets():
    assert BASELINE_PRESETS == ("tiny-cnn", "R50-UNet")
    assert not set(BASELINE_PRESETS) & set(PRESETS)
    for name, base in (("tiny-cnn", "tiny"), ("R50-UNet", "R50-ViT-B_16")):
        cfg = get_config(name)
        assert cfg.use_transformer is False and cfg.name == name
        assert cfg.replace(name=base, use_transformer=True) == get_config(base)
    assert all(get_config(p).use_transformer for p in PRESETS)


@pytest.mark.parametrize("size", [(192, 256), (96, 128)])
def test_shapes_at_any_size_divisible_by_16(size):
    model = TransUNet(get_config("tiny-cnn")).eval()
    with torch.no_grad():
        logits, attention = model(torch.randn(2, 3, *size), return_attention=True)
    assert logits.shape == (2, 11, *size) and attention == []


def test_r50_unet_shapes_on_meta_device():
    with torch.device("meta"):
        model = TransUNet(get_config("R50-UNet")).eval()
        out = model(torch.empty(1, 3, 224, 224))
    assert out.shape == (1, 9, 224, 224)


@pytest.mark.parametrize("name, base", [("tiny-cnn", "tiny"), ("R50-UNet", "R50-ViT-B_16")])
def test_shares_every_cnn_and_decoder_parameter_with_transunet(name, base):
    with torch.device("meta"):
        cnn_only = TransUNet(get_config(name)).state_dict()
        hybrid = TransUNet(get_config(base)).state_dict()
    dropped = {k for k in hybrid if k == "pos_embed" or k.startswith("transformer.")}
    assert set(cnn_only) == set(hybrid) - dropped
    assert all(cnn_only[k].shape == hybrid[k].shape for k in cnn_only)
    assert {k.split(".")[0] for k in cnn_only} == {"cnn", "patch_embed", "decoder", "head"}


def test_has_no_attention_parameters_and_the_formula_accounts_for_the_difference():
    hybrid = TransUNet(get_config("tiny"))
    cnn_only = TransUNet(get_config("tiny-cnn"))
    assert not any(isinstance(m, MultiHeadSelfAttention) for m in cnn_only.modules())
    assert cnn_only.transformer is None and cnn_only.pos_embed is None
    names = [n for n, _ in cnn_only.named_parameters()]
    assert not [n for n in names if any(w in n for w in ("attn", "query", "key", "value", "pos"))]
    removed = _transformer_params(hybrid.config)
    assert count_parameters(cnn_only) == count_parameters(hybrid) - removed
    assert count_parameters(cnn_only) == 1_634_267


def test_forward_is_cnn_projection_decoder_head_of_a_transunet():
    """Load a TransUNet's weights: the baseline computes head(decoder(proj(cnn(x)), skips))."""
    hybrid = randomize_(TransUNet(get_config("tiny", img_size=64, num_classes=5)).eval())
    cnn_only = TransUNet(get_config("tiny-cnn", img_size=64, num_classes=5)).eval()
    missing, unexpected = cnn_only.load_state_dict(hybrid.state_dict(), strict=False)
    assert missing == []
    assert {k.split(".")[0] for k in unexpected} == {"pos_embed", "transformer"}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        top, skips = hybrid.cnn(x)
        expected = hybrid.head(hybrid.decoder(hybrid.patch_embed.proj(top), skips))
        torch.testing.assert_close(cnn_only(x), expected, **TOL)
        # the hybrid's decoder input differs: its transformer sits between proj and decoder
        hidden, _, _ = cnn_only.encode(x)
        torch.testing.assert_close(hidden, hybrid.patch_embed.proj(top), **TOL)
        assert (hidden - hybrid.encode(x)[0]).abs().max() > 0.1


def test_gradient_reaches_every_parameter_and_checkpointing_is_a_no_op():
    model = TransUNet(get_config("tiny-cnn", img_size=64, num_classes=4)).train()
    model.set_gradient_checkpointing(True)
    model.resize_pos_embed((96, 128))  # nothing to resize; the config follows
    assert model.config.img_size == (96, 128) and model.grid == (6, 8)
    model(torch.randn(2, 3, 96, 128)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_flops_are_the_hybrids_minus_the_transformer():
    for size in [(192, 256), (352, 480)]:
        hybrid = summarize_config(get_config("tiny"), size)
        cnn_only = summarize_config(get_config("tiny-cnn"), size)
        assert cnn_only["flops"]["transformer"] == 0
        for part in ("cnn", "patch_embed", "decoder", "head"):
            assert cnn_only["flops"][part] == hybrid["flops"][part]
        total = hybrid["flops"]["total"] - hybrid["flops"]["transformer"]
        assert cnn_only["flops"]["total"] == total
    assert cnn_only["params"] == 1_634_267  # independent of the input size (no position embedding)


@pytest.mark.parametrize("overrides, match", [
    (dict(backbone=None, patch_size=16, n_skip=0), "needs a CNN backbone"),
    (dict(class_token=True), "no class token"),
])
def test_invalid_baselines_raise(overrides, match):
    with pytest.raises(ValueError, match=match):
        get_config("tiny-cnn", **overrides)
