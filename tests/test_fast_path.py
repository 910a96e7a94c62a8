"""The fast path computes what the plain path computes.

Fast path: fused attention, weight standardisation as one layer_norm kernel, the inference cache
of standardised weights, channels_last. Plain (reference) path: explicit softmax attention, the
standardisation formula spelt out and recomputed every call, contiguous NCHW. Both in fp32 must
agree within 1e-5; bf16 autocast must stay close to fp32.
"""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import randomize_
from tutorial_lib.attention import MultiHeadSelfAttention
from tutorial_lib.resnet import StdConv2d
from tutorial_lib.transunet import TransUNet, get_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package
from benchmarks.speed import ABLATION, Settings, configure, forward_flops, resolve_path  # noqa: E402

TOL = dict(atol=1e-5, rtol=1e-5)
CL = torch.channels_last


def set_path(model, fast: bool):
    """Switch every flag of the fast path on or off (what the benchmark's paths do)."""
    for m in model.modules():
        if isinstance(m, MultiHeadSelfAttention):
            m.use_fused = fast
        elif isinstance(m, StdConv2d):
            m.use_fused = m.cache_weight = fast
    return model.to(memory_format=CL if fast else torch.contiguous_format)


def twin_models(cfg, seed=0):
    """A reference-path model and a fast-path copy with the same (random) weights."""
    ref = randomize_(TransUNet(cfg), seed=seed)
    fast = TransUNet(cfg)
    fast.load_state_dict(ref.state_dict())
    return set_path(ref, False), set_path(fast, True)


def _weights():
    g = torch.Generator().manual_seed(1)
    return 0.3 + 0.05 * torch.randn(8, 6, 3, 3, generator=g)  # a mean far from 0, small spread


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_fused_weight_standardisation_equals_the_formula(layout):
    conv = StdConv2d(6, 8, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(_weights())
    if layout == "channels_last":
        conv = conv.to(memory_format=CL)
    g = torch.randn(8, 6, 3, 3)
    results = {}
    for fused in (False, True):
        conv.use_fused = fused
        w = conv.standardized_weight()
        results[fused] = (w, *torch.autograd.grad(w, conv.weight, g))
    # exact in float64: the layer_norm kernel computes the formula (value and gradient)
    w64 = conv.weight.detach().double().requires_grad_()
    var, mean = torch.var_mean(w64, dim=[1, 2, 3], keepdim=True, unbiased=False)
    ref = (w64 - mean) / torch.sqrt(var + StdConv2d.eps)
    (gref,) = torch.autograd.grad(ref, w64, g.double())
    for w, gw in results.values():  # both fp32 versions are within rounding of it
        torch.testing.assert_close(w.double(), ref, atol=2e-6, rtol=0)
        torch.testing.assert_close(gw.double(), gref, atol=1e-4, rtol=1e-5)
    w = results[True][0]
    # a channels_last weight is standardised in its own memory order: no copy in or out
    assert w.is_contiguous(memory_format=CL if layout == "channels_last" else torch.contiguous_format)


def test_std_conv_cache_is_used_only_at_inference_and_follows_the_weight():
    conv = StdConv2d(6, 8, 3, padding=1, bias=False).eval()
    x = torch.randn(2, 6, 10, 10)
    with torch.inference_mode():
        a = conv(x)
    cached = conv._cache[1]
    with torch.no_grad():  # an inference-mode cache serves no_grad calls too
        torch.testing.assert_close(conv(x), a)
        assert conv._cache[1] is cached
        conv.weight.mul_(-0.5).add_(0.1)  # an optimiser-style in-place update
        b = conv(x)
    assert conv._cache[1] is not cached
    torch.testing.assert_close(b, F.conv2d(x, conv.standardized_weight(), padding=1), **TOL)
    conv.load_state_dict({"weight": _weights()})  # loading weights invalidates it too
    with torch.no_grad():
        c = conv(x)
    torch.testing.assert_close(c, F.conv2d(x, conv.standardized_weight(), padding=1), **TOL)
    conv.to(memory_format=CL)  # so does moving or re-laying-out the module
    assert conv._cache is None
    # with grad enabled (fine-tuning in eval mode) the weight is recomputed and gets a gradient
    conv(x).sum().backward()
    assert conv.weight.grad is not None and conv._cache is None
    conv.cache_weight = False
    with torch.no_grad():
        torch.testing.assert_close(conv(x), c, **TOL)
    assert conv._cache is None


def test_fast_path_equals_reference_path_in_fp32():
    cfg = get_config("tiny", img_size=(64, 80), num_classes=5)
    ref, fast = twin_models(cfg)
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        expected = ref.eval()(x)
    fast.eval()
    with torch.inference_mode():
        out = fast(x.contiguous(memory_format=CL))
        again = fast(x.contiguous(memory_format=CL))  # second call: cached weights
    assert out.is_contiguous(memory_format=CL)  # channels_last all the way through
    torch.testing.assert_close(out, expected, **TOL)
    torch.testing.assert_close(again, expected, **TOL)


def test_fast_path_training_gradients_equal_reference_gradients():
    # In float64, so the comparison tests the maths, not rounding: in fp32 the gradients of
    # conv weights feeding GroupNorm/BatchNorm (train mode) cancel heavily, and either path can
    # be a few 1e-2 off in relative terms, the reference as much as the fast path.
    cfg = get_config("tiny", img_size=32, num_classes=4, dropout_rate=0.0, resnet_layers=(1, 2, 1),
                     hidden_size=64, num_layers=2, num_heads=2, head_dim=32, mlp_dim=128,
                     decoder_head_channels=64)
    ref, fast = twin_models(cfg, seed=3)
    ref, fast = ref.double().train(), fast.double().train()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    g = torch.randn(2, 4, 32, 32, dtype=torch.float64)
    ref(x).backward(g)
    out = fast(x.contiguous(memory_format=CL))
    assert out.is_contiguous(memory_format=CL)
    out.backward(g.contiguous(memory_format=CL))
    for (name, p), q in zip(ref.named_parameters(), fast.parameters()):
        scale = p.grad.abs().max().item()
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-9, atol=1e-10 * scale + 1e-14,
                                   msg=name)


def test_bf16_autocast_stays_close_to_fp32():
    torch.manual_seed(0)
    model = TransUNet(get_config("tiny", img_size=64, num_classes=5)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.dtype == torch.bfloat16
    rel = ((low.float() - ref).norm() / ref.norm()).item()
    assert rel < 1e-2, rel  # bf16 keeps 8 significant bits (0.4% per rounding); we see ~0.3%
    # and it is not vacuous: the predicted classes mostly agree
    assert (low.float().argmax(1) == ref.argmax(1)).float().mean() > 0.95


def test_benchmark_paths_set_the_switches_they_name():
    assert resolve_path("reference", "cpu") == Settings()
    fast = resolve_path("fast+ckpt", "cpu")
    assert fast.fused_attention and fast.fused_std and fast.std_cache and fast.channels_last
    assert fast.fused_sgd and fast.checkpointing
    steps = [resolve_path(n, "cpu") for n in ABLATION]
    assert steps[-1].precision == "bf16" and steps[0].precision == "fp32"
    with pytest.raises(ValueError, match="unknown switch"):
        resolve_path("fast+turbo", "cpu")
    model = configure(TransUNet(get_config("tiny", img_size=64)), resolve_path("reference", "cpu"))
    assert not any(m.use_fused for m in model.modules()
                   if isinstance(m, (MultiHeadSelfAttention, StdConv2d)))
    assert model.head[0].weight.is_contiguous()
    model = configure(model, fast)
    assert all(m.use_fused for m in model.modules()
               if isinstance(m, (MultiHeadSelfAttention, StdConv2d)))
    assert model.transformer.gradient_checkpointing
    assert model.head[0].weight.is_contiguous(memory_format=CL)


def test_benchmark_precision_follows_the_runtime_policy():
    """The benchmark's fast path and training/evaluation choose bf16 by the same rule."""
    from tutorial_lib import runtime

    expected = "bf16" if runtime.resolve_precision("auto", "cpu") == "bf16" else "fp32"
    assert resolve_path("fast", "cpu").precision == expected
    assert resolve_path("fast+fp32", "cpu").precision == "fp32"


def test_benchmark_flop_count_matches_the_reference():
    assert round(forward_flops("R50-ViT-B_16", (224, 224)) / 1e9, 2) == 58.45
