"""SETR on the library's ViT: shapes, parameter counts by formula, the decoders against plain
torch.nn.functional computations, gradients, and the ViT-B_16 TransUNet comparison."""

import pytest
import torch
import torch.nn.functional as F

from helpers import randomize_
from tutorial_lib.setr import (SETRMLA, SETRPUP, SETRConfig, SETRNaive, compare_pup_with_cup,
                               decoder_convs, get_setr_config)
from tutorial_lib.transunet import TransUNet, count_parameters, get_config

TOL = dict(atol=1e-5, rtol=1e-5)
SMALL = dict(num_classes=5, img_size=(64, 96), num_layers=4, hidden_size=64, num_heads=4,
             head_dim=16, mlp_dim=128, channels=32, mla_head_channels=16)


def _small(**kw):
    return get_setr_config(**{**SMALL, **kw})


# ---- parameter counts by formula -----------------------------------------------------------
def _encoder_params(v, final_norm=True):
    d, i, m, p = v.hidden_size, v.num_heads * v.head_dim, v.mlp_dim, v.patch_size
    layer = 4 * d + 3 * (d * i + i) + i * d + d + d * m + m + m * d + d
    n = v.grid[0] * v.grid[1]
    return p * p * v.in_channels * d + d + n * d + v.num_layers * layer + 2 * d * final_norm


def _conv_bn(cin, cout, k):  # Conv2dReLU: conv without bias + BatchNorm (weight, bias)
    return k * k * cin * cout + 2 * cout


def _decoder_params(kind, c):
    d, ch, m, k = c.vit.hidden_size, c.channels, c.mla_head_channels, c.vit.num_classes
    if kind == "naive":
        return _conv_bn(d, ch, 1) + ch * k + k
    if kind == "pup":
        return _conv_bn(d, ch, 3) + 3 * _conv_bn(ch, ch, 3) + ch * k + k
    per_level = (2 * d + _conv_bn(d, ch, 1) + _conv_bn(ch, ch, 3)  # LayerNorm, proj, fuse
                 + _conv_bn(ch, m, 3) + _conv_bn(m, m, 3))          # the level's two convs
    return 4 * per_level + 9 * 4 * m * k + k


@pytest.mark.parametrize("kind, cls", [("naive", SETRNaive), ("pup", SETRPUP), ("mla", SETRMLA)])
@pytest.mark.parametrize("make", [_small, lambda: get_setr_config(num_classes=19, img_size=512)])
def test_parameter_counts_by_formula(kind, cls, make):
    config = make()
    with torch.device("meta"):
        model = cls(config)
    expected = _encoder_params(config.vit, final_norm=kind != "mla") + _decoder_params(kind, config)
    assert count_parameters(model) == expected


def test_paper_scale_model_counts():
    """ViT-L/16 (the paper's encoder) at 768x768, 19 Cityscapes classes."""
    cfg = get_setr_config(hidden_size=1024, num_layers=24, num_heads=16, mlp_dim=4096,
                          num_classes=19, img_size=768)
    assert cfg.levels == (6, 12, 18, 24)  # "uniformly distributed across the layers with step L/M"
    with torch.device("meta"):
        counts = {cls.__name__: count_parameters(cls(cfg)) for cls in (SETRNaive, SETRPUP, SETRMLA)}
    for name, kind in (("SETRNaive", "naive"), ("SETRPUP", "pup"), ("SETRMLA", "mla")):
        assert counts[name] == _encoder_params(cfg.vit, kind != "mla") + _decoder_params(kind, cfg)


# ---- shapes and gradients -------------------------------------------------------------------
@pytest.mark.parametrize("cls", [SETRNaive, SETRPUP, SETRMLA])
def test_shapes_and_gradient_reaches_every_parameter(cls):
    model = cls(_small()).train()
    x = torch.randn(2, 3, 64, 96, requires_grad=True)
    y = model(x)
    assert y.shape == (2, 5, 64, 96)
    y.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_shapes_at_the_default_vit_b16_on_meta():
    with torch.device("meta"):
        x = torch.empty(1, 3, 224, 224)
        for cls in (SETRNaive, SETRPUP, SETRMLA):
            assert cls().eval()(x).shape == (1, 9, 224, 224)


# ---- the decoders against plain functional computations ------------------------------------
def _cbr(mod, x):
    """Conv2dReLU in eval mode, from F.conv2d / F.batch_norm / F.relu."""
    conv, bn = mod[0], mod[1]
    y = F.conv2d(x, conv.weight, padding=conv.kernel_size[0] // 2)
    return F.relu(F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0,
                               bn.eps))


def _up(x, size, ac):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=ac)


@pytest.mark.parametrize("ac", [False, True])
def test_naive_and_pup_equal_functional_computation(ac):
    x = torch.randn(2, 3, 64, 96)
    for cls in (SETRNaive, SETRPUP):
        model = randomize_(cls(_small(align_corners=ac)).eval())
        with torch.no_grad():
            z = model.encode(x)  # (B, D, 4, 6)
            assert z.shape == (2, 64, 4, 6)
            if cls is SETRNaive:
                y = F.conv2d(_cbr(model.decoder, z), model.head.weight, model.head.bias)
                expected = _up(y, (64, 96), ac)
            else:
                y = z
                for stage in model.decoder:  # conv first, then x2
                    y = _cbr(stage, y)
                    y = _up(y, (2 * y.shape[-2], 2 * y.shape[-1]), ac)
                expected = F.conv2d(y, model.head.weight, model.head.bias)
            torch.testing.assert_close(model(x), expected, **TOL)


def test_mla_equals_functional_computation_on_the_chosen_layers():
    model = randomize_(SETRMLA(_small(num_layers=8)).eval())
    assert model.config.levels == (2, 4, 6, 8)
    assert isinstance(model.transformer.norm, torch.nn.Identity)
    x = torch.randn(1, 3, 64, 96)
    dec = model.decoder
    with torch.no_grad():
        z, taken = model.dropout(model.patch_embed(x) + model.pos_embed), []
        for block in model.transformer.layers:
            z, _ = block(z)
            taken.append(z)
        maps = []
        for i, layer in enumerate((2, 4, 6, 8)):
            n = dec.norms[i]
            t = F.layer_norm(taken[layer - 1], (64,), n.weight, n.bias, 1e-6)
            maps.append(_cbr(dec.proj[i], t.transpose(1, 2).reshape(1, 64, 4, 6)))
        summed = [maps[0] + maps[1] + maps[2] + maps[3], maps[1] + maps[2] + maps[3],
                  maps[2] + maps[3], maps[3]]
        outs = []
        for i in range(4):
            y = _cbr(dec.levels[i][1], _cbr(dec.levels[i][0], _cbr(dec.fuse[i], summed[i])))
            outs.append(_up(y, (16, 24), False))
        y = F.conv2d(torch.cat(outs, 1), model.head.weight, model.head.bias, padding=1)
        torch.testing.assert_close(model(x), _up(y, (64, 96), False), **TOL)


# ---- SETR and TransUNet's ViT-B_16 preset ---------------------------------------------------
def test_vit_b16_transunet_encoder_is_setrs_encoder():
    """Same parameter names and shapes; a TransUNet state_dict loads and encodes identically."""
    cfg = _small()
    tu = randomize_(TransUNet(cfg.vit).eval())
    assert cfg.vit.backbone is None and cfg.vit.n_skip == 0  # ViT-B_16: no CNN, no skips
    for cls in (SETRNaive, SETRPUP):
        setr = cls(cfg).eval()
        missing, unexpected = setr.load_state_dict(tu.state_dict(), strict=False)
        assert {k.split(".")[0] for k in missing} == {"decoder", "head"}
        assert {k.split(".")[0] for k in unexpected} == {"decoder", "head"}
        x = torch.randn(2, 3, 64, 96)
        with torch.no_grad():
            torch.testing.assert_close(setr.encode(x), tu.encode(x)[0], **TOL)


def test_pup_and_cup_side_by_side_for_vit_b16():
    r = compare_pup_with_cup(get_setr_config(num_classes=9))
    assert r["same_encoder"] and r["encoder_params"] == _encoder_params(get_config("ViT-B_16"))
    assert r["encoder_params"] == 85_797_120
    # PUP: conv then x2, four times at 256 channels, then a 1x1 class conv at full resolution
    assert r["pup"]["convs"] == [(3, 768, 256, 16), (3, 256, 256, 8), (3, 256, 256, 4),
                                 (3, 256, 256, 2), (1, 256, 9, 1)]
    # CUP: conv_more at 1/16, then x2 and two convs per stage, halving channels, 3x3 class conv
    assert r["cup"]["convs"] == [(3, 768, 512, 16), (3, 512, 256, 8), (3, 256, 256, 8),
                                 (3, 256, 128, 4), (3, 128, 128, 4), (3, 128, 64, 2),
                                 (3, 64, 64, 2), (3, 64, 16, 1), (3, 16, 16, 1), (3, 16, 9, 1)]
    cup_formula = (_conv_bn(768, 512, 3) + sum(_conv_bn(i, o, 3) + _conv_bn(o, o, 3) for i, o in
                   [(512, 256), (256, 128), (128, 64), (64, 16)]) + 9 * 16 * 9 + 9)
    assert (r["pup"]["params"], r["cup"]["params"]) == (3_543_305, 5_877_081)
    assert r["pup"]["params"] == _decoder_params("pup", get_setr_config(num_classes=9))
    assert r["cup"]["params"] == cup_formula
    assert (r["pup"]["align_corners"], r["cup"]["align_corners"]) == (False, True)


def test_pup_has_log2_patch_stages():
    with torch.device("meta"):
        cfg = _small(patch_size=8, decoder_channels=(32, 16, 16))
        convs = decoder_convs(SETRPUP(cfg), torch.empty(1, 3, 64, 96))
    assert [s for *_, s in convs] == [8, 4, 2, 1]


def test_decoder_convs_on_real_tensors_matches_meta():
    cfg = _small()
    model = SETRPUP(cfg)
    with torch.device("meta"):
        meta = decoder_convs(SETRPUP(cfg), torch.empty(1, 3, 64, 96))
    assert decoder_convs(model, torch.randn(1, 3, 64, 96)) == meta
    assert [s for *_, s in meta] == [16, 8, 4, 2, 1]


# ---- configs and errors ---------------------------------------------------------------------
def test_get_setr_config_routes_overrides():
    cfg = get_setr_config(num_classes=11, channels=64, img_size=(192, 256))
    assert isinstance(cfg, SETRConfig) and cfg.channels == 64
    assert cfg.vit.num_classes == 11 and cfg.vit.grid == (12, 16) and cfg.vit.name == "ViT-B_16"
    assert cfg.replace(channels=32).vit == cfg.vit
    assert SETRConfig().levels == (3, 6, 9, 12)


@pytest.mark.parametrize("call, match", [
    (lambda: get_setr_config("R50-ViT-B_16"), "pure ViT"),
    (lambda: get_setr_config("blog"), "pure ViT"),
    (lambda: SETRMLA(_small(patch_size=2, decoder_channels=(16,), img_size=8)), "multiple of 4"),
    (lambda: SETRMLA(_small(mla_layers=(1, 2, 3, 3))), "4 increasing layers"),
    (lambda: SETRMLA(_small(mla_layers=(1, 2, 3))), "4 increasing layers"),
    (lambda: get_setr_config(channels=0), "at least 1"),
])
def test_invalid_configs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_wrong_input_size_names_the_fix():
    with pytest.raises(ValueError, match=r"get_setr_config\(img_size=\(64, 64\)\)"):
        SETRPUP(_small())(torch.randn(1, 3, 64, 64))
