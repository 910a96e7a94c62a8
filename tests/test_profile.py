import pytest
import torch
from torch import nn

from tutorial_lib.profile import (
    PARTS,
    RESNETV2_PARTS,
    attention_modules,
    count_flops,
    count_parameters_by_part,
    explicit_attention,
    flops_by_module,
    summarize_config,
    time_forward,
)
from tutorial_lib.transunet import TransUNet, get_config


@pytest.fixture(scope="module")
def paper_meta():
    """The paper's R50-ViT-B_16 at 224, on the meta device: shapes only, built in a blink."""
    with torch.device("meta"):
        return TransUNet(get_config("R50-ViT-B_16")), torch.empty(1, 3, 224, 224)


@pytest.fixture(scope="module")
def paper_flops(paper_meta):
    return count_flops(*paper_meta)


def test_parameters_by_part_match_the_reference_table(paper_meta):
    model, _ = paper_meta
    assert count_parameters_by_part(model) == {
        "cnn": 11_894_848, "patch_embed": 787_200 + 150_528,
        "transformer": 12 * 7_087_872 + 1_536, "decoder": 7_387_200, "head": 1_305,
        "total": 105_277_081,
    }
    assert count_parameters_by_part(model, RESNETV2_PARTS) == {  # docs/reference.md section 4, row by row
        "stem": 9_536, "block1": 215_808, "block2": 1_219_584, "block3": 10_449_920,
        "patch_embed": 787_200, "pos_embed": 150_528, "transformer_blocks": 12 * 7_087_872,
        "encoder_norm": 1_536, "decoder": 7_387_200, "head": 1_305, "total": 105_277_081,
    }


def test_unclaimed_parameters_are_reported_as_other(paper_meta):
    model, _ = paper_meta
    counts = count_parameters_by_part(model, {"head": ("head",)})
    assert counts["head"] == 1_305
    assert counts["other"] == 105_277_081 - 1_305
    assert counts["total"] == 105_277_081


def test_paper_model_flops_total_and_parts(paper_flops):
    assert round(paper_flops["total"] / 1e9, 2) == 58.45
    assert paper_flops["total"] == 58_451_460_096
    assert "other" not in paper_flops  # every counted FLOP happens inside one of the five parts
    gmacs = {k: round(v / 2e9, 2) for k, v in paper_flops.items()}
    # docs/reference.md section 4: ResNet 3.91 G, patch 0.15 G, transformer 17.36 G, decoder 7.75 G, head 0.07 G MACs
    assert gmacs == {"cnn": 3.91, "patch_embed": 0.15, "transformer": 17.36, "decoder": 7.75,
                     "head": 0.07, "total": 29.23}


def test_attention_flags_are_restored(paper_meta):
    model, x = paper_meta
    attn = attention_modules(model)
    assert len(attn) == 12 and all(m.use_fused for m in attn)
    attn[3].use_fused = False  # a mixed state must come back exactly as it was
    count_flops(model, x)
    assert [m.use_fused for m in attn] == [True] * 3 + [False] + [True] * 8
    attn[3].use_fused = True


def test_attention_matmuls_are_counted_on_cpu():
    """On the CPU, FlopCounterMode does not see the fused attention kernel; we switch it off."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = TransUNet(get_config("tiny", num_layers=2, img_size=(64, 96))).eval()
    x = torch.randn(1, 3, 64, 96)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    fused = counter.get_total_flops()
    n, d = 4 * 6, 256  # tokens, heads x d_k
    qk_av = 2 * 2 * (2 * n * n * d)  # 2 layers x (QK^T and AV) x 2 FLOPs per MAC
    assert count_flops(model, x, by_part=False) - fused == qk_av
    assert all(m.use_fused for m in attention_modules(model))


def test_flags_restored_after_an_error():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = TransUNet(get_config("tiny", num_layers=1)).transformer.layers[0].attn

        def forward(self, x):
            raise RuntimeError("boom")

    model = Broken()
    with pytest.raises(RuntimeError, match="boom"):
        count_flops(model, torch.zeros(1))
    assert model.attn.use_fused is True
    with explicit_attention(model):
        assert model.attn.use_fused is False
    assert model.attn.use_fused is True


def test_training_flag_is_restored():
    model = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5)).train()
    assert count_flops(model, torch.zeros(2, 4), by_part=False) == 2 * 2 * 4 * 3
    assert model.training
    assert time_forward(model, torch.zeros(2, 4), repeats=2, warmup=0) >= 0
    assert model.training


def test_containers_that_are_never_called_are_summed():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stages = nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 4)])
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            for stage in self.stages:
                x = stage(x)
            return self.head(x) @ torch.ones(2, 2)  # a matmul outside every part

    flops = count_flops(Net(), torch.zeros(1, 8), parts={"stages": ("stages",), "head": ("head",)})
    assert flops == {"stages": 2 * (64 + 32), "head": 2 * 8, "other": 2 * 4, "total": 2 * 108}
    names = flops_by_module(Net(), torch.zeros(1, 8))
    assert names == {"stages.0": 128, "stages.1": 64, "head": 16, "": 216}


def test_flops_equal_on_meta_and_cpu():
    torch.manual_seed(0)
    config = get_config("tiny", num_layers=1, img_size=(64, 96))
    model = TransUNet(config)
    real = count_flops(model, torch.randn(1, 3, 64, 96))
    with torch.device("meta"):
        meta = count_flops(TransUNet(config), torch.empty(1, 3, 64, 96))
    assert real == meta
    assert set(real) == {*PARTS, "total"}


def test_reserved_and_malformed_parts_are_rejected(paper_meta):
    model, _ = paper_meta
    with pytest.raises(ValueError, match="reserved"):
        count_parameters_by_part(model, {"total": ("head",)})
    with pytest.raises(TypeError, match="tuple of prefixes"):
        count_parameters_by_part(model, {"head": "head"})


def test_time_forward_median_and_arguments():
    model = nn.Linear(4, 4)
    assert isinstance(time_forward(model, torch.zeros(1, 4), repeats=3), float)
    with pytest.raises(ValueError, match="repeats"):
        time_forward(model, torch.zeros(1, 4), repeats=0)


@pytest.mark.parametrize("name, size, tokens, px, params, gflops", [
    ("R50-ViT-B_16", None, 196, 256, 105_277_081, 58.45),
    ("R50-ViT-B_16", 512, 1024, 256, 105_912_985, 336.79),
    ("blog", None, 16, 128 * 128, 77_377_292, 81.39),
    ("tiny", None, 192, 256, 4_842_971, 4.11),
    ("ViT-B_16", None, 196, 256, 91_674_201, 45.94),
])
def test_summarize_presets(name, size, tokens, px, params, gflops):
    s = summarize_config(get_config(name), size)
    assert (s["tokens"], s["px_per_token"], s["params"]) == (tokens, px, params)
    assert round(s["gflops"], 2) == gflops
    assert s["tokens"] == s["grid"][0] * s["grid"][1]


def test_blog_parameters_sit_in_the_patch_projection():
    s = summarize_config(get_config("blog"))
    with torch.device("meta"):
        model = TransUNet(get_config("blog"))
    proj = sum(p.numel() for p in model.patch_embed.parameters())
    assert proj == 256 * 16 * 16 * 512 + 512
    assert proj / s["params"] > 0.4
