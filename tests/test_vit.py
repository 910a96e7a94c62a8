import pytest
import torch
import torch.nn.functional as F

from tutorial_lib.vit import (
    PatchEmbedding, TransformerBlock, TransformerEncoder, VisionTransformer,
    conv_to_linear_weight, patchify, resize_pos_embed,
)

TOL = dict(atol=1e-5, rtol=1e-5)


def test_patchify_order_is_row_major_pixels_then_channels():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    p = patchify(x, 2)
    assert p.shape == (2, 6, 12)
    # token 4 = patch row 1, col 1; its first entry is pixel (2, 2) of channel 0, then channel 1
    assert p[1, 4, 0] == x[1, 0, 2, 2] and p[1, 4, 1] == x[1, 1, 2, 2]
    assert p[1, 4, 3] == x[1, 0, 2, 3]


def test_linear_patch_embedding_equals_conv():
    conv = PatchEmbedding(3, 32, 8, mode="conv")
    lin = PatchEmbedding(3, 32, 8, mode="linear")
    with torch.no_grad():
        lin.proj.weight.copy_(conv_to_linear_weight(conv.proj.weight))
        lin.proj.bias.copy_(conv.proj.bias)
    x = torch.randn(2, 3, 32, 48)
    out = conv(x)
    assert out.shape == (2, 4 * 6, 32)
    torch.testing.assert_close(lin(x), out, **TOL)


def test_patch_embedding_errors():
    with pytest.raises(ValueError, match="not divisible by the patch size 8"):
        PatchEmbedding(3, 8, 8)(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match="unknown patch embedding mode"):
        PatchEmbedding(3, 8, 8, mode="pixel")


def test_resize_pos_embed_is_bilinear_align_corners_and_keeps_class_token():
    pos = torch.randn(1, 1 + 3 * 4, 5)
    out = resize_pos_embed(pos, (3, 4), (5, 7), num_prefix_tokens=1)
    assert out.shape == (1, 1 + 35, 5)
    assert torch.equal(out[:, :1], pos[:, :1])
    grid = pos[0, 1:].reshape(3, 4, 5)
    # align_corners=True: the four corners are copied exactly
    for (i, j), (a, b) in {(0, 0): (0, 0), (0, 3): (0, 6), (2, 0): (4, 0), (2, 3): (4, 6)}.items():
        torch.testing.assert_close(out[0, 1 + a * 7 + b], grid[i, j])
    # the centre of the new grid (2, 3) sits at old coordinates (1, 1.5): mean of two neighbours
    torch.testing.assert_close(out[0, 1 + 2 * 7 + 3], (grid[1, 1] + grid[1, 2]) / 2, **TOL)
    with pytest.raises(ValueError, match="expected 3x3"):
        resize_pos_embed(pos, (3, 3), (5, 5), num_prefix_tokens=1)


def test_block_is_pre_ln():
    torch.manual_seed(0)
    blk = TransformerBlock(16, 4, 32).eval()
    x = torch.randn(2, 5, 16)
    h = x + blk.attn(F.layer_norm(x, (16,), blk.norm1.weight, blk.norm1.bias, 1e-6))
    expected = h + blk.mlp.fc2(F.gelu(blk.mlp.fc1(F.layer_norm(h, (16,), blk.norm2.weight, blk.norm2.bias, 1e-6))))
    out, w = blk(x)
    assert w is None
    torch.testing.assert_close(out, expected, **TOL)
    assert blk.norm1.eps == 1e-6


def test_encoder_returns_every_layer_weights():
    enc = TransformerEncoder(16, depth=3, num_heads=2, mlp_dim=32).eval()
    x = torch.randn(2, 7, 16)
    y, ws = enc(x, return_weights=True)
    assert y.shape == (2, 7, 16) and len(ws) == 3
    assert all(w.shape == (2, 2, 7, 7) for w in ws)
    y2, none = enc(x)
    assert none == []
    torch.testing.assert_close(y, y2, **TOL)


@pytest.mark.parametrize("class_token", [True, False])
def test_vision_transformer_classifier(class_token):
    vit = VisionTransformer(32, 8, num_classes=5, class_token=class_token)
    logits, ws = vit(torch.randn(3, 3, 32, 32), return_weights=True)
    n = 16 + int(class_token)
    assert logits.shape == (3, 5) and ws[0].shape == (3, 4, n, n)
    assert vit.pos_embed.shape == (1, n, 64)
    with pytest.raises(ValueError, match="size the model was built for"):
        vit(torch.randn(1, 3, 64, 64))


def test_vision_transformer_learns_a_position_task():
    """Where is the bright patch? Only solvable with position information."""
    torch.manual_seed(0)
    vit = VisionTransformer(16, 4, num_classes=16, dim=32, depth=2, num_heads=2, mlp_dim=64)
    opt = torch.optim.Adam(vit.parameters(), lr=1e-3)
    for _ in range(300):
        y = torch.randint(0, 16, (64,))
        x = torch.zeros(64, 3, 16, 16)
        for i, t in enumerate(y.tolist()):
            r, c = divmod(t, 4)
            x[i, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] = 1.0
        loss = F.cross_entropy(vit(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2


def test_attention_rollout_by_hand():
    from tutorial_lib.vit import attention_rollout
    a1 = torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]]])  # (B=1, h=1, 2, 2)
    a2 = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    # (A + I)/2: layer 1 -> [[.75, .25], [0, 1]]; layer 2 -> [[1, 0], [.5, .5]]
    expected = torch.tensor([[1.0, 0.0], [0.5, 0.5]]) @ torch.tensor([[0.75, 0.25], [0.0, 1.0]])
    torch.testing.assert_close(attention_rollout([a1, a2])[0], expected)
    r = attention_rollout([torch.softmax(torch.randn(2, 3, 5, 5), -1) for _ in range(4)], head=1)
    torch.testing.assert_close(r.sum(-1), torch.ones(2, 5))
