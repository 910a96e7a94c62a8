"""Each exercise checker accepts the reference (and independent correct answers) and rejects
each typical wrong answer with the right diagnosis."""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from tutorial_lib import exercises as ex
from tutorial_lib.attention import MultiHeadSelfAttention, scaled_dot_product_attention
from tutorial_lib.decoder import Conv2dReLU, DecoderBlock, upsample2x
from tutorial_lib.resnet import BitBottleneck, ResNetV2, StdConv2d
from tutorial_lib.transunet import TransUNet, get_config
from tutorial_lib.vit import TransformerEncoder, patchify, resize_pos_embed

RAW_FLOAT = re.compile(r"\d\.\d{2,}|\de[-+]?\d{2,}")  # "0.0123", "1.2e-05": machine-dependent text


def passes(check, *args, capsys):
    assert check(*args) is None
    out = capsys.readouterr().out
    assert out.startswith(f"✓ {check.__name__}: ") and out.count("\n") == 1, out
    assert not RAW_FLOAT.search(out), out
    return out


def fails(check, *args, match: str):
    with pytest.raises(AssertionError) as info:
        check(*args)
    message = str(info.value)
    assert message.startswith(f"✗ {check.__name__}: "), message
    assert match in message, message
    assert not RAW_FLOAT.search(message), message
    return message


# ============================================================================================
# 01: softmax and attention
# ============================================================================================
def attention_by_hand(q, k, v, mask=None):  # an independent correct answer (matmul, not einsum)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(mask == 0, -1e9)
    w = torch.softmax(scores, dim=-1)
    return w @ v, w


def _attention(scale=None, dim=-1, mask_mode="ok", detach=None, out_mode="ok"):
    def fn(q, k, v, mask=None):
        if detach == "q":
            q = q.detach()
        s = q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5 if scale is None else scale(q))
        if mask is not None and mask_mode == "inverted":
            s = s.masked_fill(mask, float("-inf"))
        elif mask is not None and mask_mode == "added":
            s = s + mask
        elif mask is not None and mask_mode == "ok":
            s = s.masked_fill(~mask, float("-inf"))
        w = s.softmax(dim=dim)
        if mask is not None and mask_mode == "after":
            w = w * mask
        out = w @ v
        if out_mode == "double":
            out = 2 * out
        if detach == "out":
            out = out.detach()
        if out_mode == "single":
            return out
        return out, w
    return fn


def test_attention_accepts_reference_and_independent_answer(capsys):
    passes(ex.check_attention, scaled_dot_product_attention, capsys=capsys)
    out = passes(ex.check_attention, attention_by_hand, capsys=capsys)
    assert out == ("✓ check_attention: output, weights, masking and gradients match the "
                   "reference on 5 random inputs (max |difference| < 1e-5)\n")


@pytest.mark.parametrize("fn, match", [
    (_attention(scale=lambda q: 1.0), "missing the 1/sqrt(d_k) scaling"),
    (_attention(scale=lambda q: 1 / q.shape[-1]), "divided the scores by d_k"),
    (_attention(dim=-2),
     "your weights sum to 1 over the queries, not the keys: softmax over dim=-1"),
    (_attention(dim=0), "do not sum to 1 over the keys"),
    (_attention(mask_mode="inverted"), "your mask is inverted: True must mean 'may attend'"),
    (_attention(mask_mode="ignored"), "ignores the mask"),
    (_attention(mask_mode="after"), "zeroed the masked weights after the softmax"),
    (_attention(mask_mode="added"), "added the boolean mask to the scores"),
    (_attention(detach="out"), "your output is detached"),
    (_attention(detach="q"), "no gradient reaches q"),
    (_attention(out_mode="single"), "return a pair (output, weights)"),
    (_attention(out_mode="double"), "your weights are right but the output is not weights @ v"),
    (lambda q, k, v, mask=None: (scaled_dot_product_attention(q, k, v, mask)[0], None),
     "the weights (second returned value) should be a torch.Tensor"),
    (lambda q, k, v, mask=None: (v, torch.softmax(k @ q.transpose(-2, -1), -1)),
     "keys by queries"),
])
def test_attention_rejects_typical_mistakes(fn, match):
    fails(ex.check_attention, fn, match=match)


def test_attention_without_a_mask_argument_is_checked_without_masks(capsys):
    out = passes(ex.check_attention, lambda q, k, v: attention_by_hand(q, k, v), capsys=capsys)
    assert "fn takes no mask, so masking was not checked" in out
    fails(ex.check_attention, lambda q, k, v: _attention(scale=lambda q: 1.0)(q, k, v),
          match="missing the 1/sqrt(d_k) scaling")


def test_attention_partly_outside_autograd_is_caught():
    def fn(q, k, v, mask=None):
        with torch.no_grad():
            w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1)
        return w @ v, w
    fails(ex.check_attention, fn, match="no gradient reaches q")


def test_an_error_in_the_learners_code_keeps_their_traceback():
    def fn(q, k, v, mask=None):
        return q @ k, None  # (.., N, d) @ (.., M, d): a shape error
    with pytest.raises(AssertionError, match=r"✗ check_attention: your function, called with "
                       r"q \(2, 5, 8\), k \(2, 7, 8\), v \(2, 7, 6\) raised RuntimeError") as info:
        ex.check_attention(fn)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_checkers_leave_the_random_state_alone(capsys):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ex.check_attention(scaled_dot_product_attention)
    torch.testing.assert_close(torch.rand(3), expected)


def test_softmax(capsys):
    passes(ex.check_softmax, lambda x: torch.softmax(x, dim=-1), capsys=capsys)

    def stable(x):
        e = torch.exp(x - x.max(dim=-1, keepdim=True).values)
        return e / e.sum(dim=-1, keepdim=True)
    passes(ex.check_softmax, stable, capsys=capsys)
    fails(ex.check_softmax, lambda x: torch.exp(x) / torch.exp(x).sum(-1, keepdim=True),
          match="overflows for inputs around 1000")

    def global_max(x):
        e = torch.exp(x - x.max())
        return e / e.sum(-1, keepdim=True)
    fails(ex.check_softmax, global_max, match="subtract each row's own maximum")
    fails(ex.check_softmax, lambda x: torch.softmax(x, dim=0), match="you normalised over dim=0")
    fails(ex.check_softmax, lambda x: torch.log_softmax(x, -1), match="is not softmax(x)")
    fails(ex.check_softmax, lambda x: torch.softmax(x, -1).detach(), match="detached")


# ============================================================================================
# 02: heads and multi-head attention
# ============================================================================================
def test_split_and_merge_heads(capsys):
    passes(ex.check_split_heads, lambda x, h: rearrange(x, "b n (h d) -> b h n d", h=h),
           capsys=capsys)
    passes(ex.check_split_heads,
           lambda x, h: x.reshape(x.shape[0], x.shape[1], h, -1).transpose(1, 2), capsys=capsys)
    fails(ex.check_split_heads, lambda x, h: rearrange(x, "b n (d h) -> b h n d", h=h),
          match="every h-th feature")
    fails(ex.check_split_heads,
          lambda x, h: x.reshape(x.shape[0], h, x.shape[1], -1), match="mixes tokens")
    fails(ex.check_split_heads, lambda x, h: x.reshape(x.shape[0], x.shape[1], h, -1),
          match="move the head axis before the tokens")

    passes(ex.check_merge_heads, lambda x: rearrange(x, "b h n d -> b n (h d)"), capsys=capsys)
    fails(ex.check_merge_heads, lambda x: rearrange(x, "b h n d -> b n (d h)"),
          match="heads merged in the wrong order")
    fails(ex.check_merge_heads, lambda x: x.reshape(x.shape[0], x.shape[2], -1),
          match="mixes tokens and heads")


class NotebookMHSA(nn.Module):
    """Notebook 02's module; ``mistake`` switches in one typical error."""

    mistake = None

    def __init__(self, dim, num_heads):
        super().__init__()
        self.h = num_heads
        self.W_q, self.W_k, self.W_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        if self.mistake != "no_wo":
            self.W_o = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        split = "b n (h d) -> b h n d"
        q, k, v = (rearrange(f(x), split, h=self.h) for f in (self.W_q, self.W_k, self.W_v))
        if self.mistake == "sqrt_dim":
            q = q / math.sqrt(self.h)
        if mask is not None and self.mistake == "inverted_mask":
            mask = ~mask
        heads, a = attention_by_hand(q, k, v, mask)
        merge = "b h n d -> b n (d h)" if self.mistake == "merge_order" else "b h n d -> b n (h d)"
        merged = rearrange(heads, merge)
        if self.mistake == "no_wo":
            return merged, a
        if self.mistake == "wo_unused":
            return merged, a
        return self.W_o(merged), a


def _mhsa(mistake):
    return type(f"MHSA_{mistake}", (NotebookMHSA,), {"mistake": mistake})


def test_multi_head_attention_accepts_notebook_and_library_modules(capsys):
    out = passes(ex.check_multi_head_attention, NotebookMHSA, capsys=capsys)
    assert "with and without a mask" in out
    passes(ex.check_multi_head_attention, MultiHeadSelfAttention, capsys=capsys)
    passes(ex.check_multi_head_attention,
           lambda d, h: MultiHeadSelfAttention(d, h, fused_qkv=True), capsys=capsys)


@pytest.mark.parametrize("mistake, match", [
    ("merge_order", "heads merged in the wrong order"),
    ("no_wo", "no output projection W_o"),
    ("wo_unused", "never apply the output projection W_o"),
    ("sqrt_dim", "scaled the scores by 1/sqrt(dim)"),
    ("inverted_mask", "your mask is inverted"),
])
def test_multi_head_attention_rejects_typical_mistakes(mistake, match):
    fails(ex.check_multi_head_attention, _mhsa(mistake), match=match)


# ============================================================================================
# 03: patches and position embeddings
# ============================================================================================
def test_patchify(capsys):
    passes(ex.check_patchify, patchify, capsys=capsys)

    def by_hand(x, p):  # independent: unfold the two spatial axes, then move the axes
        b, c, h, w = x.shape
        t = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return t.reshape(b, (h // p) * (w // p), p * p * c)
    passes(ex.check_patchify, by_hand, capsys=capsys)
    fails(ex.check_patchify,
          lambda x, p: rearrange(x, "b c (h p1) (w p2) -> b (w h) (p1 p2 c)", p1=p, p2=p),
          match="column-major order")
    fails(ex.check_patchify,
          lambda x, p: F.unfold(x, kernel_size=p, stride=p).transpose(1, 2),
          match="ordered (c p1 p2); the library uses (p1 p2 c)")
    message = fails(ex.check_patchify,
                    lambda x, p: rearrange(x, "b c (h p1) (w p2) -> b (w h) (p2 p1 c)", p1=p, p2=p),
                    match="column-major order")
    assert "ordered (p2 p1 c)" in message
    fails(ex.check_patchify, lambda x, p: x.reshape(x.shape[0], -1, p * p * x.shape[1]),
          match="does not cut p x p squares")


def test_position_embedding_resize(capsys):
    passes(ex.check_position_embedding_resize, resize_pos_embed, capsys=capsys)

    def variant(mode="bilinear", align=True, swap=False, plain=False):
        def fn(pos, old, new):
            if plain:
                g = pos.reshape(1, -1, *old)
                g = F.interpolate(g, size=new, mode="bilinear", align_corners=True)
                return g.reshape(1, new[0] * new[1], -1)
            if swap:
                old, new = old[::-1], new[::-1]
            g = rearrange(pos, "1 (h w) d -> 1 d h w", h=old[0], w=old[1])
            kw = {"align_corners": align} if mode == "bilinear" else {}
            return rearrange(F.interpolate(g, size=new, mode=mode, **kw), "1 d h w -> 1 (h w) d")
        return fn
    passes(ex.check_position_embedding_resize, variant(), capsys=capsys)
    fails(ex.check_position_embedding_resize, variant(align=False), match="align_corners=False")
    fails(ex.check_position_embedding_resize, variant(mode="nearest"), match="nearest-neighbour")
    fails(ex.check_position_embedding_resize, variant(swap=True), match="swapped rows and columns")
    fails(ex.check_position_embedding_resize, variant(plain=True),
          match="mixes tokens and features")


# ============================================================================================
# 04: weight standardisation and the hybrid's unit
# ============================================================================================
def _std_conv(unbiased=False, eps=1e-5, dims=(1, 2, 3), eps_outside=False, no_grad=False,
              skip=False):
    class LearnerStdConv(nn.Conv2d):
        def forward(self, x):
            w = self.weight
            if not skip:
                with torch.set_grad_enabled(torch.is_grad_enabled() and not no_grad):
                    mean = w.mean(dim=dims, keepdim=True)
                    var = w.var(dim=dims, keepdim=True, unbiased=unbiased)
                    w = (w - mean) / (var.sqrt() + eps if eps_outside else torch.sqrt(var + eps))
                if no_grad:
                    w = w + 0 * self.weight  # the weight still gets a (wrong) gradient
            return F.conv2d(x, w, self.bias, self.stride, self.padding)
    return LearnerStdConv


def test_std_conv(capsys):
    passes(ex.check_std_conv, StdConv2d, capsys=capsys)
    passes(ex.check_std_conv, _std_conv(), capsys=capsys)


@pytest.mark.parametrize("cls, match", [
    (nn.Conv2d, "your output equals a plain Conv2d"),
    (_std_conv(skip=True), "your output equals a plain Conv2d"),
    (_std_conv(unbiased=True), "unbiased variance"),
    (_std_conv(eps=1e-6), "your eps is not 1e-5 (it behaves like 1e-6)"),
    (_std_conv(eps_outside=True), "put eps inside the square root"),
    (_std_conv(dims=(0, 1, 2, 3)), "standardised the whole weight tensor at once"),
    (_std_conv(no_grad=True), "the gradient with respect to the weight is not"),
])
def test_std_conv_rejects_typical_mistakes(cls, match):
    fails(ex.check_std_conv, cls, match=match)


class LearnerUnit(nn.Module):
    """A from-scratch hybrid unit: shortcut registered first, its own names and StdConv."""

    mistake = None

    def __init__(self, cin, cout, cmid, stride=1):
        super().__init__()
        conv = nn.Conv2d if self.mistake == "plain_conv" else _std_conv()
        self.project = stride != 1 or cin != cout
        if self.project:
            self.short_conv = conv(cin, cout, 1, stride=stride, bias=False)
            if self.mistake != "no_gn_proj":
                self.short_norm = nn.GroupNorm(32 if self.mistake == "gn_proj_32" else cout, cout)
        s1, s2 = (stride, 1) if self.mistake == "stride_conv1" else (1, stride)
        self.c1, self.n1 = conv(cin, cmid, 1, stride=s1, bias=False), nn.GroupNorm(32, cmid, 1e-6)
        self.c2 = conv(cmid, cmid, 3, stride=s2, padding=1, bias=False)
        self.n2 = nn.GroupNorm(32, cmid, eps=1e-6)
        self.c3, self.n3 = conv(cmid, cout, 1, bias=False), nn.GroupNorm(32, cout, eps=1e-6)

    def forward(self, x):
        short = x
        if self.project:
            short = self.short_conv(x)
            if self.mistake != "no_gn_proj":
                short = self.short_norm(short)
        y = F.relu(self.n1(self.c1(x)))
        y = F.relu(self.n2(self.c2(y)))
        y = self.n3(self.c3(y))
        if self.mistake == "relu_before_add":
            y = F.relu(y)
        return y + short if self.mistake == "no_final_relu" else F.relu(y + short)


def _unit(mistake):
    return type(f"Unit_{mistake}", (LearnerUnit,), {"mistake": mistake})


def test_bit_bottleneck_accepts_reference_and_a_from_scratch_unit(capsys):
    passes(ex.check_bit_bottleneck, BitBottleneck, capsys=capsys)
    passes(ex.check_bit_bottleneck, LearnerUnit, capsys=capsys)


@pytest.mark.parametrize("mistake, match", [
    ("plain_conv", "do not standardise their weights: use StdConv2d"),
    ("no_gn_proj", "your projection shortcut has no GroupNorm"),
    ("gn_proj_32", "gn_proj must have one group per channel"),
    ("stride_conv1", "the stride belongs on the 3x3 conv2"),
    ("relu_before_add", "no ReLU between gn3 and the addition"),
    ("no_final_relu", "apply a ReLU after adding the shortcut"),
])
def test_bit_bottleneck_rejects_typical_mistakes(mistake, match):
    fails(ex.check_bit_bottleneck, _unit(mistake), match=match)


def test_bit_bottleneck_names_missing_layers():
    class NoGn3(LearnerUnit):
        def __init__(self, cin, cout, cmid, stride=1):
            super().__init__(cin, cout, cmid, stride)
            del self.n3
    message = fails(ex.check_bit_bottleneck, NoGn3, match="lacks 2 tensor(s) of shape (256,)")
    assert "gn3.weight, gn3.bias, gn_proj.weight, gn_proj.bias have that shape" in message
    assert "conv1 (1x1, cin->cmid) -> gn1 -> ReLU" in message


# ============================================================================================
# 05: upsampling and the decoder block
# ============================================================================================
def test_upsample(capsys):
    passes(ex.check_upsample, upsample2x, capsys=capsys)
    passes(ex.check_upsample, nn.UpsamplingBilinear2d(scale_factor=2), capsys=capsys)
    fails(ex.check_upsample, nn.Upsample(scale_factor=2, mode="bilinear"),
          match="align_corners=False; the official decoder uses nn.UpsamplingBilinear2d")
    fails(ex.check_upsample, nn.Upsample(scale_factor=2), match="nearest-neighbour")


class NotebookBlock(nn.Module):
    """Notebook 05's block; ``mistake`` switches in one typical error."""

    mistake = None

    def __init__(self, cin, cout, cskip=0):
        super().__init__()
        if self.mistake == "blog":
            self.conv1, self.conv2 = Conv2dReLU(cin, cout), Conv2dReLU(cout + cskip, cout)
        else:
            self.conv1, self.conv2 = Conv2dReLU(cin + cskip, cout), Conv2dReLU(cout, cout)
        if self.mistake == "no_last_relu":
            self.conv2 = nn.Sequential(*list(self.conv2)[:2])

    def forward(self, x, skip=None):
        x = F.interpolate(x, scale_factor=2, mode="bilinear",
                          align_corners=self.mistake != "align_false")
        if self.mistake == "blog":
            x = self.conv1(x)
        if skip is not None:
            x = torch.cat([skip, x] if self.mistake == "skip_first" else [x, skip], dim=1)
        return self.conv2(x) if self.mistake == "blog" else self.conv2(self.conv1(x))


def _block(mistake):
    return type(f"Block_{mistake}", (NotebookBlock,), {"mistake": mistake})


def test_decoder_block_accepts_reference_and_notebook_block(capsys):
    passes(ex.check_decoder_block, DecoderBlock, capsys=capsys)
    passes(ex.check_decoder_block, NotebookBlock, capsys=capsys)


@pytest.mark.parametrize("mistake, match", [
    ("blog", "that is the blog's order (conv, then concatenate)"),
    ("skip_first", "you concatenated [skip, upsampled]"),
    ("align_false", "align_corners=False"),
    ("no_last_relu", "conv2 must end with a ReLU too"),
])
def test_decoder_block_rejects_typical_mistakes(mistake, match):
    fails(ex.check_decoder_block, _block(mistake), match=match)


# ============================================================================================
# 06: the whole model
# ============================================================================================
class NotebookTransUNet(nn.Module):
    """Notebook 06's assembly (its own names); ``mistake`` switches in one typical error."""

    def __init__(self, c, mistake=None):
        super().__init__()
        from tutorial_lib.decoder import CascadedUpsampler
        self.mistake = mistake
        self.h, self.w = c.grid
        self.cnn = ResNetV2(c.resnet_layers, c.resnet_width, c.resnet_planes)
        self.embed = nn.Conv2d(self.cnn.out_channels, c.hidden_size, kernel_size=1)
        self.pos = nn.Parameter(torch.zeros(1, self.h * self.w, c.hidden_size))
        heads = c.num_heads // 2 if mistake == "heads" else c.num_heads
        self.transformer = TransformerEncoder(c.hidden_size, c.num_layers, heads, c.mlp_dim,
                                              c.head_dim * c.num_heads // heads,
                                              final_norm=mistake != "no_norm")
        self.decoder = CascadedUpsampler(c.hidden_size, c.decoder_head_channels,
                                         c.decoder_channels, self.cnn.skip_channels, c.n_skip)
        self.head = nn.Conv2d(c.decoder_channels[-1], c.num_classes, 3, padding=1)

    def forward(self, x, return_attention=False):
        f, skips = self.cnn(x)
        z = rearrange(self.embed(f), "b d h w -> b (h w) d")
        if self.mistake != "no_pos":
            z = z + self.pos
        z, attention = self.transformer(z, return_attention)
        order = "b (w h) d -> b d h w" if self.mistake == "reshape" else "b (h w) d -> b d h w"
        logits = self.head(self.decoder(rearrange(z, order, h=self.h, w=self.w), skips))
        return (logits, attention) if return_attention else logits


CFG = get_config("tiny", img_size=(32, 48), num_classes=3, num_layers=2)


def test_transunet_accepts_library_and_notebook_models(capsys):
    model = TransUNet(CFG)
    passes(ex.check_transunet, model, capsys=capsys)
    passes(ex.check_transunet_shapes, model, capsys=capsys)
    mine = NotebookTransUNet(CFG)
    state = {k: v.clone() for k, v in mine.state_dict().items()}
    out = passes(ex.check_transunet, mine, CFG, capsys=capsys)
    assert "with the same weights on 2 random images" in out
    assert all(torch.equal(v, mine.state_dict()[k]) for k, v in state.items())  # untouched
    out = passes(ex.check_transunet_shapes, mine, CFG, capsys=capsys)
    assert "2 attention maps of shape (1, 4, 6, 6)" in out


def test_transunet_shapes_on_the_meta_device(capsys):
    with torch.device("meta"):
        model = TransUNet(get_config("R50-ViT-B_16"))
    out = passes(ex.check_transunet_shapes, model, capsys=capsys)
    assert "105,277,081 parameters" in out and "logits (1, 9, 224, 224)" in out


@pytest.mark.parametrize("mistake, match", [
    ("no_pos", "does not add the position embeddings"),
    ("heads", "the attention weights of transformer layer 0 differ"),
    ("reshape", "every attention map agrees"),
    ("no_norm", "your model lacks 2 tensor(s) of shape (256,)"),
])
def test_transunet_rejects_typical_mistakes(mistake, match):
    fails(ex.check_transunet, NotebookTransUNet(CFG, mistake), CFG, match=match)


def test_transunet_needs_a_config():
    fails(ex.check_transunet, NotebookTransUNet(CFG), match="pass the TransUNetConfig")


# --- the shipped exercise stub: "not attempted yet", not a failure -------------------------------------------------
def _stub_fn(*args, **kwargs):
    raise NotImplementedError  # your code here


class _StubModule(torch.nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        raise NotImplementedError  # your code here


@pytest.mark.parametrize("name, stub", [
    ("check_attention", _stub_fn), ("check_softmax", _stub_fn), ("check_split_heads", _stub_fn),
    ("check_merge_heads", _stub_fn), ("check_patchify", _stub_fn), ("check_position_embedding_resize", _stub_fn),
    ("check_upsample", _stub_fn), ("check_multi_head_attention", _StubModule), ("check_std_conv", _StubModule),
    ("check_bit_bottleneck", _StubModule), ("check_decoder_block", _StubModule),
])
def test_a_stub_is_reported_as_not_attempted(name, stub, capsys):
    import tutorial_lib.exercises as ex

    getattr(ex, name)(stub)
    out = capsys.readouterr().out
    assert out.startswith(f"… {name}: not attempted yet") and "✓" not in out


def test_an_error_that_is_not_the_stub_still_fails():
    import tutorial_lib.exercises as ex

    def broken(q, k, v, mask=None):
        raise ValueError("oops")

    with pytest.raises(AssertionError, match="ValueError"):
        ex.check_attention(broken)


def test_copy_assignments_tries_module_orders_lazily_identity_first():
    """Sixteen alike layers under other names have 16! orders: the first tries come at once, the identity first."""
    from tutorial_lib.exercises._core import copy_assignments

    torch.manual_seed(0)
    src = nn.Sequential(*[nn.Linear(3, 3) for _ in range(16)])
    dst = nn.ModuleDict({f"layer_{i}": nn.Linear(3, 3) for i in range(16)})
    tries = copy_assignments(src, dst, limit=3)
    next(tries)
    assert all(torch.equal(dst[f"layer_{i}"].weight, src[i].weight) for i in range(16))
    assert sum(1 for _ in tries) == 2  # the limit holds: three tries in all
