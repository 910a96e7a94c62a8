import math

import pytest
import torch
import torch.nn.functional as F

from tutorial_lib.attention import MultiHeadSelfAttention, NonLocalBlock, scaled_dot_product_attention

TOL = dict(atol=1e-5, rtol=1e-5)


def _qkv(b=2, h=3, n=7, m=5, d=8, requires_grad=False):
    q = torch.randn(b, h, n, d, dtype=torch.float32, requires_grad=requires_grad)
    k = torch.randn(b, h, m, d, requires_grad=requires_grad)
    v = torch.randn(b, h, m, d, requires_grad=requires_grad)
    return q, k, v


def test_tiny_example_by_hand():
    # One query, two keys: scores q.k / sqrt(2) = (1/sqrt 2, 0) -> softmax by hand.
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[10.0], [20.0]])
    out, w = scaled_dot_product_attention(q, k, v)
    a = math.exp(1 / math.sqrt(2))
    expected_w = torch.tensor([[a / (a + 1), 1 / (a + 1)]])
    torch.testing.assert_close(w, expected_w, **TOL)
    torch.testing.assert_close(out, expected_w @ v, **TOL)


@pytest.mark.parametrize("mask_kind", [None, "bool", "float"])
def test_explicit_matches_torch_sdpa_values_and_grads(mask_kind):
    q, k, v = _qkv(requires_grad=True)
    mask = None
    if mask_kind == "bool":
        mask = torch.rand(7, 5) > 0.3
        mask[:, 0] = True  # every query keeps at least one key
    elif mask_kind == "float":
        mask = torch.randn(7, 5)
    out, w = scaled_dot_product_attention(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref, **TOL)
    assert w.shape == (2, 3, 7, 5)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 7), **TOL)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), g)
    ref_grads = torch.autograd.grad(ref, (q, k, v), g)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, **TOL)
    if mask_kind == "bool":
        assert torch.all(w[..., ~mask] == 0)


def test_causal_mask_blocks_the_future():
    q, k, v = _qkv(n=6, m=6)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    _, w = scaled_dot_product_attention(q, k, v, causal)
    assert torch.all(w.triu(1) == 0)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, causal)[0], ref, **TOL)


def test_shape_errors_are_explained():
    with pytest.raises(ValueError, match="d_k"):
        scaled_dot_product_attention(torch.randn(1, 4, 8), torch.randn(1, 4, 6), torch.randn(1, 4, 8))
    with pytest.raises(ValueError, match="positions"):
        scaled_dot_product_attention(torch.randn(1, 4, 8), torch.randn(1, 4, 8), torch.randn(1, 5, 8))
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadSelfAttention(10, 3)


def _map_torch_mha(ours: MultiHeadSelfAttention, mha: torch.nn.MultiheadAttention):
    """Copy nn.MultiheadAttention's packed in_proj ([W_q; W_k; W_v]) into our layers."""
    d = mha.embed_dim
    w, b = mha.in_proj_weight.detach(), mha.in_proj_bias.detach()
    with torch.no_grad():
        if ours.fused_qkv:
            ours.qkv.weight.copy_(w)
            ours.qkv.bias.copy_(b)
        else:
            for i, lin in enumerate((ours.query, ours.key, ours.value)):
                lin.weight.copy_(w[i * d:(i + 1) * d])
                lin.bias.copy_(b[i * d:(i + 1) * d])
        ours.out.weight.copy_(mha.out_proj.weight)
        ours.out.bias.copy_(mha.out_proj.bias)


@pytest.mark.parametrize("fused_qkv", [False, True])
@pytest.mark.parametrize("path", ["explicit", "fused"])
@pytest.mark.parametrize("with_mask", [False, True])
def test_mhsa_matches_torch_multihead_attention(fused_qkv, path, with_mask):
    dim, heads, n = 32, 4, 9
    mha = torch.nn.MultiheadAttention(dim, heads, batch_first=True)
    ours = MultiHeadSelfAttention(dim, heads, fused_qkv=fused_qkv, use_fused=(path == "fused"))
    _map_torch_mha(ours, mha)
    x = torch.randn(2, n, dim, requires_grad=True)
    mask = None
    if with_mask:
        mask = torch.rand(n, n) > 0.4
        mask.fill_diagonal_(True)
    ref, ref_w = mha(x, x, x, attn_mask=None if mask is None else ~mask, need_weights=True,
                     average_attn_weights=False)
    if path == "explicit":
        out, w = ours(x, mask=mask, return_weights=True)
        torch.testing.assert_close(w, ref_w, **TOL)
    else:
        out = ours(x, mask=mask)
    torch.testing.assert_close(out, ref, **TOL)
    g = torch.randn_like(out)
    gx, = torch.autograd.grad(out, x, g)
    ref_gx, = torch.autograd.grad(ref, x, g)
    torch.testing.assert_close(gx, ref_gx, **TOL)


def test_mhsa_without_bias_and_custom_head_dim():
    m = MultiHeadSelfAttention(16, num_heads=4, head_dim=8, qkv_bias=False)
    assert m.query.bias is None and m.query.out_features == 32
    x = torch.randn(3, 5, 16)
    y, w = m(x, return_weights=True)
    assert y.shape == (3, 5, 16) and w.shape == (3, 4, 5, 5)
    torch.testing.assert_close(m(x), y, **TOL)


def test_mhsa_dropout_only_in_training():
    m = MultiHeadSelfAttention(16, 4, attn_dropout=0.5)
    x = torch.randn(2, 6, 16)
    m.eval()
    torch.testing.assert_close(m(x), m(x))
    m.train()
    torch.manual_seed(1)
    a = m(x, return_weights=True)[0]
    torch.manual_seed(2)
    b = m(x, return_weights=True)[0]
    assert not torch.allclose(a, b)


def test_non_local_block_is_identity_at_init_and_matches_formula():
    torch.manual_seed(0)
    block = NonLocalBlock(8, 4).eval()
    x = torch.randn(2, 8, 5, 6)
    z, w = block(x, return_weights=True)
    torch.testing.assert_close(z, x, **TOL)  # W_z's BatchNorm scale starts at zero
    assert w.shape == (2, 30, 30)
    # f(x_i, x_j) = exp(theta(x_i)^T phi(x_j)), normalised over j: check one entry by hand.
    theta = block.theta(x).flatten(2)[0, :, 7]
    phi = block.phi(x).flatten(2)[0]
    expected = torch.softmax(theta @ phi, dim=0)
    torch.testing.assert_close(w[0, 7], expected, **TOL)
