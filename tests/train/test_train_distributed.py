"""The DDP preparation of a channels_last model (tutorial_lib.train.distributed)."""

import torch
from torch import nn

from tutorial_lib.train.distributed import standard_strides_where_layouts_agree


def test_one_by_one_weights_get_standard_strides_and_keep_their_values():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 16, 1), nn.Conv2d(16, 4, 3)).to(memory_format=torch.channels_last)
    before = [p.detach().clone() for p in model.parameters()]
    one_by_one, three_by_three = model[0].weight, model[1].weight
    assert one_by_one.stride() == (8, 1, 8, 8) and one_by_one.is_contiguous()  # what DDP trips over
    assert standard_strides_where_layouts_agree(model) == 1
    assert one_by_one.stride() == (8, 1, 1, 1)
    assert three_by_three.is_contiguous(memory_format=torch.channels_last)  # a real NHWC weight stays NHWC
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)
    # autograd now creates the 1x1 gradient with the strides DDP's bucket view has
    x = torch.randn(2, 8, 10, 10).to(memory_format=torch.channels_last)
    model(x).sum().backward()
    assert one_by_one.grad.stride() == torch.empty(one_by_one.shape).stride()
    assert standard_strides_where_layouts_agree(model) == 0  # idempotent
