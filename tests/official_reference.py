"""An independent re-statement of the official TransUNet forward pass, written from
docs/reference.md (sections 2 and 3) in the structure and names of the official
``networks/vit_seg_modeling.py`` (``VisionTransformer``, ``Embeddings``, ``Encoder``, ``DecoderCup``),
used only by tests.

It shares no code with ``tutorial_lib``: its weights come from ``official_state_dict`` so the
tests can check that our modules compute exactly what the official ones compute.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def std_conv(x, w, stride=1, padding=0):
    v, m = torch.var_mean(w, dim=[1, 2, 3], keepdim=True, unbiased=False)
    return F.conv2d(x, (w - m) / torch.sqrt(v + 1e-5), None, stride, padding)


def gn(x, sd, prefix, groups, eps):
    return F.group_norm(x, groups, sd[prefix + ".weight"], sd[prefix + ".bias"], eps)


def unit(x, sd, p, stride):
    cmid = sd[p + ".conv1.weight"].shape[0]
    cout = sd[p + ".conv3.weight"].shape[0]
    if p + ".downsample.weight" in sd:
        residual = std_conv(x, sd[p + ".downsample.weight"], stride)
        residual = gn(residual, sd, p + ".gn_proj", cout, 1e-5)
    else:
        residual = x
    y = F.relu(gn(std_conv(x, sd[p + ".conv1.weight"]), sd, p + ".gn1", 32, 1e-6))
    y = F.relu(gn(std_conv(y, sd[p + ".conv2.weight"], stride, 1), sd, p + ".gn2", 32, 1e-6))
    y = gn(std_conv(y, sd[p + ".conv3.weight"]), sd, p + ".gn3", 32, 1e-6)
    del cmid
    return F.relu(residual + y)


def resnet(x, sd, p, layers):
    in_size = x.size(2)
    b = x.size(0)
    x = std_conv(x, sd[p + ".root.conv.weight"], 2, 3)
    x = F.relu(gn(x, sd, p + ".root.gn", 32, 1e-6))
    features = [x]
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=0)
    for i, n in enumerate(layers):
        for u in range(1, n + 1):
            stride = 2 if (u == 1 and i > 0) else 1
            x = unit(x, sd, f"{p}.body.block{i + 1}.unit{u}", stride)
        if i < len(layers) - 1:
            right_size = int(in_size / 4 / (i + 1))
            if x.size(2) != right_size:
                pad = right_size - x.size(2)
                assert 0 < pad < 3
                feat = torch.zeros((b, x.size(1), right_size, right_size), dtype=x.dtype)
                feat[:, :, 0:x.size(2), 0:x.size(3)] = x[:]
            else:
                feat = x
            features.append(feat)
    return x, features[::-1]


def layer_norm(x, sd, p):
    return F.layer_norm(x, (x.shape[-1],), sd[p + ".weight"], sd[p + ".bias"], eps=1e-6)


def linear(x, sd, p):
    return F.linear(x, sd[p + ".weight"], sd[p + ".bias"])


def attention(x, sd, p, num_heads):
    b, n, d = x.shape
    head = d // num_heads

    def transpose_for_scores(t):
        return t.view(b, n, num_heads, head).permute(0, 2, 1, 3)

    q = transpose_for_scores(linear(x, sd, p + ".query"))
    k = transpose_for_scores(linear(x, sd, p + ".key"))
    v = transpose_for_scores(linear(x, sd, p + ".value"))
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(head)
    probs = F.softmax(scores, dim=-1)
    ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous().view(b, n, d)
    return linear(ctx, sd, p + ".out"), probs


def conv2d_relu(x, sd, p):
    x = F.conv2d(x, sd[p + ".0.weight"], None, 1, 1)
    x = F.batch_norm(x, sd[p + ".1.running_mean"], sd[p + ".1.running_var"], sd[p + ".1.weight"],
                     sd[p + ".1.bias"], training=False, eps=1e-5)
    return F.relu(x)


def official_forward(sd, x, num_layers, num_heads, resnet_layers=(3, 4, 9), n_skip=3):
    """Eval-mode forward of the official model with state_dict ``sd``: logits and attn probs."""
    if x.size(1) == 1:
        x = x.repeat(1, 3, 1, 1)
    e = "transformer.embeddings"
    features = None
    if e + ".hybrid_model.root.conv.weight" in sd:
        x, features = resnet(x, sd, e + ".hybrid_model", resnet_layers)
    w = sd[e + ".patch_embeddings.weight"]
    x = F.conv2d(x, w, sd[e + ".patch_embeddings.bias"], stride=w.shape[-1])
    x = x.flatten(2).transpose(-1, -2)
    h = x + sd[e + ".position_embeddings"]
    weights = []
    for i in range(num_layers):
        p = f"transformer.encoder.layer.{i}"
        res = h
        h, probs = attention(layer_norm(h, sd, p + ".attention_norm"), sd, p + ".attn", num_heads)
        weights.append(probs)
        h = h + res
        res = h
        y = layer_norm(h, sd, p + ".ffn_norm")
        y = linear(F.gelu(linear(y, sd, p + ".ffn.fc1")), sd, p + ".ffn.fc2")
        h = y + res
    encoded = layer_norm(h, sd, "transformer.encoder.encoder_norm")
    b, n_patch, hidden = encoded.size()
    hh = ww = int(math.sqrt(n_patch))
    x = encoded.permute(0, 2, 1).contiguous().view(b, hidden, hh, ww)
    x = conv2d_relu(x, sd, "decoder.conv_more")
    up = nn.UpsamplingBilinear2d(scale_factor=2)
    for i in range(4):
        skip = features[i] if (features is not None and i < n_skip) else None
        x = up(x)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        x = conv2d_relu(x, sd, f"decoder.blocks.{i}.conv1")
        x = conv2d_relu(x, sd, f"decoder.blocks.{i}.conv2")
    logits = F.conv2d(x, sd["segmentation_head.0.weight"], sd["segmentation_head.0.bias"], padding=1)
    return logits, weights
