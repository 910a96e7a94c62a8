"""tutorial_lib.runtime: the one device / precision / layout policy of training, evaluation and benchmarks."""

import pytest
import torch
from torch import nn

from tutorial_lib.runtime import (
    autocast_context,
    cpu_supports_bf16,
    grad_scaler,
    move_batch,
    native_bf16,
    pick_device,
    prepare_model,
    resolve_precision,
)

ZEN4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
SAPPHIRE = "processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile amx_int8\n"
NO_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\nbugs\t\t: spectre_v1\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 bf16\n"


@pytest.mark.parametrize(
    "text, expected", [(ZEN4, True), (SAPPHIRE, True), (NO_BF16, False), (ARM, False), ("", False)]
)
def test_cpu_bf16_detection_from_cpuinfo(text, expected):
    assert cpu_supports_bf16(text) is expected
    assert native_bf16("cpu", text) is expected


def test_precision_auto_follows_the_hardware():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, ZEN4) == "bf16"
    assert resolve_precision("auto", cpu, NO_BF16) == "fp32"
    assert resolve_precision("fp32", cpu, ZEN4) == "fp32"
    with pytest.warns(UserWarning, match="emulated"):
        assert resolve_precision("bf16", cpu, NO_BF16) == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp8", cpu)
    assert resolve_precision("auto", "meta") == "fp32"  # a device without native bf16


def test_the_train_package_uses_this_policy():
    import tutorial_lib.train as train_module

    assert train_module.resolve_precision is resolve_precision
    assert train_module.cpu_supports_bf16 is cpu_supports_bf16
    assert train_module.pick_device is pick_device


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_autocast_context_is_torch_autocast_or_nothing():
    layer = nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with autocast_context("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")
        assert layer(x).dtype == torch.float32
    with autocast_context("cpu", "bf16"):
        ours = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = layer(x)
    assert ours.dtype == torch.bfloat16 and torch.equal(ours, reference)


def test_grad_scaler_only_scales_fp16():
    assert grad_scaler("cpu", "fp16").is_enabled()
    assert not grad_scaler("cpu", "bf16").is_enabled() and not grad_scaler("cpu", "fp32").is_enabled()


def test_channels_last_layout_of_model_and_batch():
    model = prepare_model(nn.Sequential(nn.Conv2d(3, 4, 3)), "cpu", channels_last=True)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    images, labels = torch.randn(2, 3, 5, 6), torch.randint(0, 3, (2, 5, 6))
    moved, moved_labels = move_batch(images, labels, torch.device("cpu"), channels_last=True)
    assert moved.is_contiguous(memory_format=torch.channels_last) and torch.equal(moved, images)
    assert torch.equal(moved_labels, labels)
    plain, _ = move_batch(images, labels, torch.device("cpu"), channels_last=False)
    assert plain.is_contiguous()
    plain_model = prepare_model(nn.Sequential(nn.Conv2d(3, 4, 3)), "cpu", channels_last=False)
    assert plain_model[0].weight.is_contiguous()
