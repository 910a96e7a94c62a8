import pytest
import torch

from official_reference import official_forward
from helpers import randomize_
from tutorial_lib.pretrained import official_state_dict
from tutorial_lib.transunet import PRESETS, TransUNet, TransUNetConfig, count_parameters, get_config

TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def r50_b16():
    torch.manual_seed(0)
    return TransUNet(get_config("R50-ViT-B_16", num_classes=9, img_size=224)).eval()


def test_parameter_count_matches_the_official_model(r50_b16):
    assert count_parameters(r50_b16) == 105_277_081
    parts = {
        "stem": r50_b16.cnn.root, "block1": r50_b16.cnn.body.block1,
        "block2": r50_b16.cnn.body.block2, "block3": r50_b16.cnn.body.block3,
        "resnet": r50_b16.cnn, "patch": r50_b16.patch_embed,
        "block": r50_b16.transformer.layers[0], "encoder_norm": r50_b16.transformer.norm,
        "decoder": r50_b16.decoder, "head": r50_b16.head,
    }
    counts = {k: count_parameters(m) for k, m in parts.items()}
    assert counts == {  # docs/reference.md section 4 (parameters)
        "stem": 9_536, "block1": 215_808, "block2": 1_219_584, "block3": 10_449_920,
        "resnet": 11_894_848, "patch": 787_200, "block": 7_087_872, "encoder_norm": 1_536,
        "decoder": 7_387_200, "head": 1_305,
    }
    assert r50_b16.pos_embed.numel() == 150_528


def _trace_shapes(model, x):
    """Run the model stage by stage and record the shape after each (docs/reference.md section 3)."""
    shapes = {}
    cnn = model.cnn
    with torch.no_grad():
        stem = cnn.root(x)
        shapes["stem"] = stem.shape
        pooled = cnn.pool(stem)
        shapes["maxpool"] = pooled.shape
        b1 = cnn.body.block1(pooled)
        shapes["block1"] = b1.shape
        b2 = cnn.body.block2(b1)
        shapes["block2"] = b2.shape
        b3 = cnn.body.block3(b2)
        shapes["block3"] = b3.shape
        _, features = cnn(x)
        shapes["skips"] = [f.shape for f in features]
        shapes["patch_conv"] = model.patch_embed.proj(b3).shape
        tokens = model.patch_embed(b3)
        shapes["tokens"] = (tokens + model.pos_embed).shape
        q, _, _ = model.transformer.layers[0].attn.project_qkv(tokens)
        _, w = model.transformer.layers[0].attn(tokens, return_weights=True)
        shapes["q"], shapes["scores"] = q.shape, w.shape
        hidden, _, _ = model.encode(x)
        shapes["reshape"] = hidden.shape
        y = model.decoder.conv_more(hidden)
        shapes["conv_more"] = y.shape
        for i, block in enumerate(model.decoder.blocks):
            y = block(y, features[i] if i < model.decoder.n_skip else None)
            shapes[f"dec{i}"] = y.shape
        shapes["logits"] = model(x).shape
    return {k: (tuple(v) if not isinstance(v, list) else [tuple(s) for s in v])
            for k, v in shapes.items()}


def test_every_shape_of_the_reference_table_at_224(r50_b16):
    s = _trace_shapes(r50_b16, torch.randn(1, 3, 224, 224))
    assert s == {
        "stem": (1, 64, 112, 112), "maxpool": (1, 64, 55, 55), "block1": (1, 256, 55, 55),
        "block2": (1, 512, 28, 28), "block3": (1, 1024, 14, 14),
        "skips": [(1, 512, 28, 28), (1, 256, 56, 56), (1, 64, 112, 112)],
        "patch_conv": (1, 768, 14, 14), "tokens": (1, 196, 768),
        "q": (1, 12, 196, 64), "scores": (1, 12, 196, 196), "reshape": (1, 768, 14, 14),
        "conv_more": (1, 512, 14, 14), "dec0": (1, 256, 28, 28), "dec1": (1, 128, 56, 56),
        "dec2": (1, 64, 112, 112), "dec3": (1, 16, 224, 224), "logits": (1, 9, 224, 224),
    }


def test_shapes_at_512_with_resized_position_embedding(r50_b16):
    model = TransUNet(get_config("R50-ViT-B_16", img_size=224)).eval()
    model.load_state_dict(r50_b16.state_dict())
    model.resize_pos_embed(512)
    assert model.pos_embed.shape == (1, 1024, 768)
    s = _trace_shapes(model, torch.randn(1, 3, 512, 512))
    assert s["maxpool"] == (1, 64, 127, 127)
    assert s["skips"] == [(1, 512, 64, 64), (1, 256, 128, 128), (1, 64, 256, 256)]
    assert s["scores"] == (1, 12, 1024, 1024)
    assert [s[f"dec{i}"] for i in range(4)] == [
        (1, 256, 64, 64), (1, 128, 128, 128), (1, 64, 256, 256), (1, 16, 512, 512)]
    assert s["logits"] == (1, 9, 512, 512)


def test_forward_equals_the_official_computation(r50_b16):
    randomize_(r50_b16)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ours, our_attn = r50_b16(x, return_attention=True)
        ref, ref_attn = official_forward(official_state_dict(r50_b16), x, 12, 12)
    torch.testing.assert_close(ours, ref, **TOL)
    for a, b in zip(our_attn, ref_attn):
        torch.testing.assert_close(a, b, **TOL)
    with torch.no_grad():  # the default (fused attention) path gives the same logits
        torch.testing.assert_close(r50_b16(x), ref, **TOL)


@pytest.mark.parametrize("size", [240, 256])
@pytest.mark.parametrize("n_skip", [0, 1, 3])
def test_small_hybrid_equals_official_computation(size, n_skip):
    cfg = get_config("tiny", img_size=size, n_skip=n_skip, num_classes=5)
    model = randomize_(TransUNet(cfg).eval(), seed=size + n_skip)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        ref, _ = official_forward(official_state_dict(model), x, cfg.num_layers, cfg.num_heads,
                                  cfg.resnet_layers, n_skip)
        torch.testing.assert_close(model(x), ref, **TOL)


def test_pure_vit_preset_equals_official_computation():
    cfg = get_config("ViT-B_16", num_layers=2, img_size=64, num_classes=3)
    assert cfg.n_skip == 0 and cfg.backbone is None
    model = randomize_(TransUNet(cfg).eval())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref, _ = official_forward(official_state_dict(model), x, 2, 12)
        torch.testing.assert_close(model(x), ref, **TOL)


def test_single_channel_input_is_repeated():
    model = TransUNet(get_config("tiny", img_size=64, num_classes=4)).eval()
    gray = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(gray), model(gray.repeat(1, 3, 1, 1)))


def test_non_square_input_works():
    model = TransUNet(get_config("tiny")).eval()
    assert model.config.img_size == (192, 256) and model.grid == (12, 16)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 192, 256))
    assert out.shape == (2, 11, 192, 256)
    _, features = model.cnn(torch.randn(1, 3, 192, 256))
    assert [tuple(f.shape[-2:]) for f in features] == [(24, 32), (48, 64), (96, 128)]


def test_blog_preset_shapes_at_512():
    model = TransUNet(get_config("blog")).eval()
    x = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        top, features = model.cnn(x)
        assert [tuple(f.shape) for f in features] == [
            (1, 256, 64, 64), (1, 128, 128, 128), (1, 64, 256, 256)]
        hidden, _, _ = model.encode(x)
        assert hidden.shape == (1, 512, 4, 4)  # only 16 tokens of 128x128 pixels each
        start = model.decoder.conv_more(torch.nn.functional.interpolate(
            hidden, scale_factor=8, mode="bilinear", align_corners=True))
        assert start.shape == (1, 512, 32, 32)
        assert model(x).shape == (1, 12, 512, 512)
    convs = [m for m in model.cnn.stages.modules() if isinstance(m, torch.nn.Conv2d)
             and m.kernel_size == (3, 3)]
    assert convs and all(c.dilation == (2, 2) and c.padding == (2, 2) for c in convs)
    assert model.cnn.stem[0].stride == (1, 1)
    assert model.config.token_stride == 128


def test_presets_and_overrides():
    assert set(PRESETS) == {"R50-ViT-B_16", "R50-ViT-L_16", "ViT-B_16", "blog", "tiny"}
    cfg = get_config("R50-ViT-L_16", num_classes=4, img_size=(256, 320))
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.mlp_dim) == (1024, 24, 16, 4096)
    assert cfg.img_size == (256, 320) and cfg.grid == (16, 20) and cfg.num_classes == 4
    assert get_config("tiny", img_size=64).img_size == (64, 64)


@pytest.mark.parametrize("call, match", [
    (lambda: get_config("R50-ViT-Z"), "unknown preset"),
    (lambda: get_config("tiny", num_classes=0), "num_classes must be at least 1"),
    (lambda: get_config("tiny", img_size=200), "divisible by 16"),
    (lambda: get_config("tiny", img_size=(192, 250)), "divisible by 16"),
    (lambda: get_config("blog", img_size=500), "divisible by 128"),
    (lambda: get_config("tiny", hidden=3), "unknown config field"),
    (lambda: get_config("tiny", backbone="vgg"), "unknown backbone"),
    (lambda: TransUNet(get_config("ViT-B_16", n_skip=3)), "n_skip=3"),
])
def test_invalid_configs_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("shape, match", [
    ((1, 3, 200, 192), "not divisible by 16"),
    ((1, 4, 192, 256), "expected 3 input channels"),
    ((1, 3, 224, 256), "call model.resize_pos_embed"),
    ((3, 192, 256), r"\(B, C, H, W\)"),
])
def test_invalid_inputs_raise_value_error(shape, match):
    model = TransUNet(get_config("tiny"))
    with pytest.raises(ValueError, match=match):
        model(torch.randn(*shape))


def test_resize_pos_embed_then_forward_non_square():
    model = TransUNet(get_config("tiny", img_size=64)).eval()
    model.resize_pos_embed((96, 128))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 128)).shape == (1, 11, 96, 128)


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    cfg = get_config("tiny", img_size=64, dropout_rate=0.0)
    a = TransUNet(cfg)
    b = TransUNet(cfg)
    b.load_state_dict(a.state_dict())
    b.set_gradient_checkpointing(True)
    x = torch.randn(2, 3, 64, 64)
    for m in (a, b):
        m.train()
        m(x).square().mean().backward()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=n)


def test_config_is_the_single_source_of_sizes():
    cfg = get_config("tiny", hidden_size=128, decoder_channels=(48, 24, 12, 8),
                     decoder_head_channels=96, resnet_width=32)
    model = TransUNet(cfg)
    assert model.patch_embed.proj.out_channels == 128
    assert model.decoder.conv_more[0].out_channels == 96
    assert [b.conv2[0].out_channels for b in model.decoder.blocks] == [48, 24, 12, 8]
    assert model.head[0].in_channels == 8
    assert isinstance(cfg, TransUNetConfig)
