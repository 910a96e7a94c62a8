from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import randomize_
from tutorial_lib.pretrained import (
    WeightLoadingError, load_official_npz, load_official_pth, load_official_state_dict,
    npz_table, official_state_dict,
)
from tutorial_lib.transunet import TransUNet, get_config

KEYS_FILE = Path(__file__).parent / "fixtures" / "official-state-dict-keys.txt"


def _official_keys():
    out = {}
    for line in KEYS_FILE.read_text().splitlines():
        name, shape = line.split("\t")
        out[name] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return out


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_(TransUNet(get_config("R50-ViT-B_16", num_classes=9, img_size=224)).eval())


def test_official_state_dict_has_exactly_the_official_names_and_shapes(model):
    expected = _official_keys()
    assert len(expected) == 409
    ours = {k: tuple(v.shape) for k, v in official_state_dict(model).items()}
    assert sorted(set(ours) - set(expected)) == []
    assert sorted(set(expected) - set(ours)) == []
    assert ours == expected


def test_export_then_import_is_the_identity(model, tmp_path):
    sd = official_state_dict(model)
    fresh = TransUNet(get_config("R50-ViT-B_16")).eval()
    path = tmp_path / "epoch_149.pth"
    torch.save({"module." + k: v for k, v in sd.items()}, path)  # as saved under DataParallel
    load_official_pth(fresh, path)
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k
    assert official_state_dict(fresh).keys() == sd.keys()


def test_state_dict_errors_name_the_keys(model):
    sd = dict(official_state_dict(model))
    fresh = TransUNet(get_config("R50-ViT-B_16"))
    broken = dict(sd)
    del broken["decoder.conv_more.0.weight"]
    with pytest.raises(WeightLoadingError, match=r"missing keys.*decoder\.conv_more\.0\.weight"):
        load_official_state_dict(fresh, broken)
    broken = dict(sd, **{"transformer.encoder.layer.12.attn.query.weight": torch.zeros(768, 768)})
    with pytest.raises(WeightLoadingError, match=r"unexpected keys.*'transformer\.encoder\.layer\.12\.attn\.query"):
        load_official_state_dict(fresh, broken)
    broken = dict(sd, **{"segmentation_head.0.weight": torch.zeros(2, 16, 3, 3)})
    with pytest.raises(WeightLoadingError, match=r"(?s)mis-shaped.*segmentation_head\.0\.weight.*\(2, 16, 3, 3\)"):
        load_official_state_dict(fresh, broken)
    with pytest.raises(WeightLoadingError, match="no counterpart.*foo.bar"):
        load_official_state_dict(fresh, dict(sd, **{"foo.bar": torch.zeros(1)}))


def test_blog_variant_has_no_official_names():
    with pytest.raises(WeightLoadingError, match="blog"):
        official_state_dict(TransUNet(get_config("blog", num_layers=1)))


@pytest.mark.parametrize("preset", ["tiny-cnn", "R50-UNet"])
def test_cnn_only_baselines_are_refused_with_a_clear_error(preset):
    model = TransUNet(get_config(preset))
    for load in (official_state_dict, lambda m: load_official_npz(m, {}), lambda m: load_official_state_dict(m, {})):
        with pytest.raises(WeightLoadingError, match="CNN-only baseline.*no transformer"):
            load(model)


def _synthetic_npz(num_layers, rng, hybrid=True, dim=768, heads=12, mlp=3072, pos_len=197):
    """Arrays under the exact npz key names and Flax layouts of Google's ViT checkpoints."""
    hd = dim // heads
    a = {}

    def put(key, *shape):
        a[key] = rng.standard_normal(shape).astype(np.float32)

    put("cls", 1, 1, dim)
    put("head/kernel", dim, 21843)
    put("head/bias", 21843)
    put("pre_logits/kernel", dim, dim)
    put("pre_logits/bias", dim)
    put("Transformer/posembed_input/pos_embedding", 1, pos_len, dim)
    put("Transformer/encoder_norm/scale", dim)
    put("Transformer/encoder_norm/bias", dim)
    for i in range(num_layers):
        p = f"Transformer/encoderblock_{i}"
        for part in ("query", "key", "value"):
            put(f"{p}/MultiHeadDotProductAttention_1/{part}/kernel", dim, heads, hd)
            put(f"{p}/MultiHeadDotProductAttention_1/{part}/bias", heads, hd)
        put(f"{p}/MultiHeadDotProductAttention_1/out/kernel", heads, hd, dim)
        put(f"{p}/MultiHeadDotProductAttention_1/out/bias", dim)
        put(f"{p}/MlpBlock_3/Dense_0/kernel", dim, mlp)
        put(f"{p}/MlpBlock_3/Dense_0/bias", mlp)
        put(f"{p}/MlpBlock_3/Dense_1/kernel", mlp, dim)
        put(f"{p}/MlpBlock_3/Dense_1/bias", dim)
        for ln in ("LayerNorm_0", "LayerNorm_2"):
            put(f"{p}/{ln}/scale", dim)
            put(f"{p}/{ln}/bias", dim)
    if hybrid:
        put("embedding/kernel", 1, 1, 1024, dim)
        put("conv_root/kernel", 7, 7, 3, 64)
        put("gn_root/scale", 64)
        put("gn_root/bias", 64)
        cin = 64
        for b, (units, cmid) in enumerate(zip((3, 4, 9), (64, 128, 256)), start=1):
            cout = 4 * cmid
            for u in range(1, units + 1):
                p = f"block{b}/unit{u}"
                put(f"{p}/conv1/kernel", 1, 1, cin if u == 1 else cout, cmid)
                put(f"{p}/conv2/kernel", 3, 3, cmid, cmid)
                put(f"{p}/conv3/kernel", 1, 1, cmid, cout)
                for k, c in (("gn1", cmid), ("gn2", cmid), ("gn3", cout)):
                    put(f"{p}/{k}/scale", c)
                    put(f"{p}/{k}/bias", c)
                if u == 1:
                    put(f"{p}/conv_proj/kernel", 1, 1, cin, cout)
                    put(f"{p}/gn_proj/scale", cout)
                    put(f"{p}/gn_proj/bias", cout)
            cin = cout
    else:
        put("embedding/kernel", 16, 16, 3, dim)
    put("embedding/bias", dim)
    return a


@pytest.fixture(scope="module")
def npz_arrays():
    return _synthetic_npz(num_layers=2, rng=np.random.default_rng(0))


def test_npz_values_land_where_the_official_loader_puts_them(npz_arrays, tmp_path):
    model = TransUNet(get_config("R50-ViT-B_16", num_layers=2)).eval()
    path = tmp_path / "R50+ViT-B_16.npz"
    np.savez(path, **npz_arrays)
    load_official_npz(model, path)
    a = npz_arrays
    sd = model.state_dict()
    # conv kernels HWIO -> OIHW
    k = a["conv_root/kernel"]
    assert sd["cnn.root.conv.weight"][5, 2, 3, 4] == k[3, 4, 2, 5]
    k = a["block2/unit1/conv2/kernel"]
    assert sd["cnn.body.block2.unit1.conv2.weight"][7, 9, 0, 2] == k[0, 2, 9, 7]
    assert torch.equal(sd["cnn.body.block3.unit1.downsample.weight"][:, :, 0, 0],
                       torch.from_numpy(a["block3/unit1/conv_proj/kernel"][0, 0].T))
    assert torch.equal(sd["cnn.body.block1.unit2.gn3.bias"], torch.from_numpy(a["block1/unit2/gn3/bias"]))
    assert torch.equal(sd["patch_embed.proj.weight"][:, :, 0, 0],
                       torch.from_numpy(a["embedding/kernel"][0, 0].T))
    # q/k/v kernel (D, heads, head_dim): output feature h*64+d reads input i from [i, h, d]
    q = a["Transformer/encoderblock_1/MultiHeadDotProductAttention_1/query/kernel"]
    assert sd["transformer.layers.1.attn.query.weight"][3 * 64 + 5, 100] == q[100, 3, 5]
    qb = a["Transformer/encoderblock_1/MultiHeadDotProductAttention_1/query/bias"]
    assert sd["transformer.layers.1.attn.query.bias"][3 * 64 + 5] == qb[3, 5]
    # out kernel (heads, head_dim, D): output j reads head h, dim d from [h, d, j]
    o = a["Transformer/encoderblock_0/MultiHeadDotProductAttention_1/out/kernel"]
    assert sd["transformer.layers.0.attn.out.weight"][700, 11 * 64 + 63] == o[11, 63, 700]
    f = a["Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel"]
    assert torch.equal(sd["transformer.layers.0.mlp.fc1.weight"], torch.from_numpy(f.T))
    assert torch.equal(sd["transformer.layers.1.norm2.weight"],
                       torch.from_numpy(a["Transformer/encoderblock_1/LayerNorm_2/scale"]))
    assert torch.equal(sd["transformer.norm.bias"], torch.from_numpy(a["Transformer/encoder_norm/bias"]))
    # 197 = class token + 14x14: the class token is dropped
    pos = a["Transformer/posembed_input/pos_embedding"]
    assert torch.equal(sd["pos_embed"], torch.from_numpy(pos[:, 1:]))


def test_npz_attention_layout_computes_the_flax_attention(npz_arrays):
    """The mapped q/k/v/out compute what Flax's MultiHeadDotProductAttention computes."""
    model = TransUNet(get_config("R50-ViT-B_16", num_layers=2)).eval()
    load_official_npz(model, npz_arrays)
    p = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1"
    x = torch.randn(1, 6, 768, dtype=torch.float64)  # float64: random weights give huge scores
    t = {k: torch.from_numpy(npz_arrays[f"{p}/{k}"]).double() for k in
         ("query/kernel", "query/bias", "key/kernel", "key/bias", "value/kernel", "value/bias",
          "out/kernel", "out/bias")}
    q = torch.einsum("bnd,dhk->bhnk", x, t["query/kernel"]) + t["query/bias"][None, :, None]
    k = torch.einsum("bnd,dhk->bhnk", x, t["key/kernel"]) + t["key/bias"][None, :, None]
    v = torch.einsum("bnd,dhk->bhnk", x, t["value/kernel"]) + t["value/bias"][None, :, None]
    w = torch.softmax(q @ k.transpose(-1, -2) / 8.0, dim=-1)
    ref = torch.einsum("bhnk,hkd->bnd", w @ v, t["out/kernel"]) + t["out/bias"]
    with torch.no_grad():
        ours = model.transformer.layers[0].attn.double()(x)
    torch.testing.assert_close(ours, ref, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("img_size", [512, (224, 320)])
def test_npz_position_embedding_is_resized_bilinearly(npz_arrays, img_size):
    model = TransUNet(get_config("R50-ViT-B_16", num_layers=2, img_size=img_size))
    load_official_npz(model, npz_arrays)
    grid = torch.from_numpy(npz_arrays["Transformer/posembed_input/pos_embedding"][0, 1:])
    grid = grid.reshape(14, 14, 768).permute(2, 0, 1)[None]
    expected = F.interpolate(grid, size=model.grid, mode="bilinear", align_corners=True)
    expected = expected.flatten(2).transpose(1, 2)
    torch.testing.assert_close(model.pos_embed.data, expected, atol=1e-6, rtol=0)
    assert model.pos_embed.shape[1] == model.grid[0] * model.grid[1]
    # corners are copied exactly (align_corners=True)
    torch.testing.assert_close(model.pos_embed.data[0, 0], grid[0, :, 0, 0])


def test_pure_vit_npz_loads():
    arrays = _synthetic_npz(1, np.random.default_rng(1), hybrid=False)
    model = TransUNet(get_config("ViT-B_16", num_layers=1))
    load_official_npz(model, arrays)
    k = arrays["embedding/kernel"]
    assert model.patch_embed.proj.weight[10, 1, 15, 0] == k[15, 0, 1, 10]


def test_npz_errors_name_the_keys(npz_arrays):
    model = TransUNet(get_config("R50-ViT-B_16", num_layers=2))
    broken = dict(npz_arrays)
    del broken["block3/unit9/gn2/scale"]
    with pytest.raises(WeightLoadingError, match="block3/unit9/gn2/scale"):
        load_official_npz(model, broken)
    with pytest.raises(WeightLoadingError, match="does not use.*encoderblock_7"):
        load_official_npz(model, dict(npz_arrays, **{"Transformer/encoderblock_7/x": np.zeros(1)}))
    wrong = dict(npz_arrays, **{"conv_root/kernel": np.zeros((7, 7, 1, 64), np.float32)})
    with pytest.raises(WeightLoadingError, match="conv_root/kernel.*\\(64, 1, 7, 7\\)"):
        load_official_npz(model, wrong)


def test_full_table_has_the_official_key_count():
    model = TransUNet(get_config("R50-ViT-B_16"))
    keys = [k for k, _, _ in npz_table(model)]
    # 12 blocks x 16 tensors (4 attention x 2, MLP 4, LayerNorm 4) + embedding 2 + encoder_norm 2 + R50 (3 root + 16 units x 9 + 3 x 3 proj)
    assert len(keys) == 12 * 16 + 4 + 3 + 16 * 9 + 3 * 3
    assert len(set(keys)) == len(keys)
    assert not any("\\" in k for k in keys)  # joined with '/', also on Windows


# --- clear errors for files that do not fit (each names the key or file and the fix) -------------------


def _message(excinfo) -> str:
    return str(excinfo.value)


@pytest.fixture(scope="module")
def tiny():
    """A small model with the official layout (9 classes, 192x256)."""
    return TransUNet(get_config("tiny", num_classes=9)).eval()


def test_mis_shaped_head_names_the_users_key_shapes_and_num_classes(tiny, tmp_path):
    """A 2-class official checkpoint (saved under DataParallel) loaded into a 9-class model."""
    sd = {"module." + k: v for k, v in official_state_dict(tiny).items()}
    sd["module.segmentation_head.0.weight"] = torch.zeros(2, 16, 3, 3)
    sd["module.segmentation_head.0.bias"] = torch.zeros(2)
    path = tmp_path / "epoch_149.pth"
    torch.save(sd, path)
    with pytest.raises(WeightLoadingError) as excinfo:
        load_official_pth(TransUNet(get_config("tiny", num_classes=9)), path)
    msg = _message(excinfo)
    assert str(path) in msg
    assert "module.segmentation_head.0.weight: shape (2, 16, 3, 3) in the file, (9, 16, 3, 3) in the model" in msg
    assert "module.segmentation_head.0.bias: shape (2,) in the file, (9,) in the model" in msg
    assert "get_config('tiny', num_classes=2)" in msg
    assert "head.0.weight" not in msg.replace("segmentation_head.0.weight", "")  # no internal name
    # the fix works
    load_official_pth(TransUNet(get_config("tiny", num_classes=2)), path)


def test_mis_shaped_position_embedding_suggests_the_img_size():
    trained = TransUNet(get_config("tiny", img_size=224))  # 14x14 tokens
    sd = dict(official_state_dict(trained))
    with pytest.raises(WeightLoadingError) as excinfo:
        load_official_state_dict(TransUNet(get_config("tiny")), sd)  # 192x256: 12x16 tokens
    msg = _message(excinfo)
    assert "transformer.embeddings.position_embeddings: shape (1, 196, 256) in the file, (1, 192, 256)" in msg
    assert "img_size=224" in msg
    assert "'pos_embed'" not in msg


def test_mis_shaped_body_key_asks_for_the_training_config(tiny):
    sd = dict(official_state_dict(tiny))
    sd["transformer.encoder.layer.3.ffn.fc1.weight"] = torch.zeros(512, 256)
    with pytest.raises(WeightLoadingError, match=r"(?s)transformer\.encoder\.layer\.3\.ffn\.fc1\.weight: "
                       r"shape \(512, 256\) in the file, \(1024, 256\).*Fix: .*preset and config"):
        load_official_state_dict(TransUNet(get_config("tiny", num_classes=9)), sd)


def _npz_model():
    return TransUNet(get_config("R50-ViT-B_16", num_layers=2))


@pytest.mark.parametrize("content", [b"", b"not an archive at all " * 40, b"PK\x03\x04truncated zip"],
                         ids=["empty", "text", "truncated-zip"])
def test_corrupt_npz_names_the_file(tmp_path, content):
    path = tmp_path / "R50+ViT-B_16.npz"
    path.write_bytes(content)
    with pytest.raises(WeightLoadingError, match=r"R50\+ViT-B_16\.npz is not a readable \.npz archive.*download it again"):
        load_official_npz(_npz_model(), path)


def test_truncated_real_npz_names_the_file(npz_arrays, tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, **npz_arrays)
    cut = tmp_path / "R50+ViT-B_16.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # an interrupted download
    with pytest.raises(WeightLoadingError, match=r"R50\+ViT-B_16\.npz is not a readable \.npz archive"):
        load_official_npz(_npz_model(), cut)


def test_damaged_member_names_the_file_and_key(npz_arrays, tmp_path):
    path = tmp_path / "R50+ViT-B_16.npz"
    np.savez(path, **npz_arrays)
    data = bytearray(path.read_bytes())
    marker = b"block2/unit3/conv2/kernel.npy"
    at = data.index(marker) + len(marker) + 200  # inside that member's array bytes
    data[at:at + 64] = bytes(64)  # CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(WeightLoadingError, match=r"R50\+ViT-B_16\.npz: array 'block2/unit3/conv2/kernel'"):
        load_official_npz(_npz_model(), path)


def test_other_files_given_as_the_npz(tmp_path, tiny):
    npy = tmp_path / "weights.npz"
    with open(npy, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(WeightLoadingError, match=r"weights\.npz holds a single \.npy array"):
        load_official_npz(_npz_model(), npy)
    pth = tmp_path / "epoch_149.npz"
    torch.save(official_state_dict(tiny), pth)
    with pytest.raises(WeightLoadingError, match=r"epoch_149\.npz is a PyTorch file.*load_official_pth"):
        load_official_npz(_npz_model(), pth)
    with pytest.raises(FileNotFoundError, match=r"nothing\.npz not found"):
        load_official_npz(_npz_model(), tmp_path / "nothing.npz")


def test_corrupt_pth_names_the_file(tmp_path):
    path = tmp_path / "epoch_149.pth"
    path.write_bytes(b"garbage" * 10)
    with pytest.raises(WeightLoadingError, match=r"epoch_149\.pth is not a readable PyTorch state_dict"):
        load_official_pth(TransUNet(get_config("tiny")), path)
