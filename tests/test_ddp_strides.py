"""benchmarks.ddp_strides: two processes train a channels_last tiny as it is and relabelled (a few seconds)."""

import json
import re

from torch import nn

from benchmarks import ddp_strides
from tutorial_lib.transunet import TransUNet, get_config


def test_the_warning_comes_from_the_one_by_one_weights_and_the_relabelled_copy_has_none(tmp_path):
    out = tmp_path / "ddp.json"
    doc = ddp_strides.main(["--img-size", "32", "48", "--rounds", "1", "--steps", "1", "--warmup", "1",
                            "--precision", "fp32", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(doc))
    res = doc["results"]
    as_is, relabelled = res["paths"]["as-is"], res["paths"]["relabelled"]
    assert as_is["grad_strides_warning"] and not relabelled["grad_strides_warning"]
    # PyTorch's own report: the gradient has standard strides, the bucket view the parameter's channels_last ones
    (grad_sizes, grad_strides), (view_sizes, view_strides) = [
        [[int(v) for v in group.split(",")] for group in re.findall(r"\[([\d, ]+)\]", line)[:2]]
        for line in as_is["warning_detail"]]
    c_out, c_in, kh, kw = grad_sizes
    assert grad_sizes == view_sizes and (kh, kw) == (1, 1)
    assert grad_strides == [c_in, 1, 1, 1] and view_strides == [c_in, 1, c_in, c_in]
    # exactly the 1x1 convolution weights of the model are relabelled
    model = TransUNet(get_config("tiny", img_size=(32, 48), num_classes=11))
    one_by_one = [m.weight for m in model.modules()
                  if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.in_channels > 1]
    assert res["relabelled_parameters"] == len(one_by_one)
    assert res["relabelled_mb"] == sum(w.numel() * 4 for w in one_by_one) / 2**20
    assert as_is["ms_per_step"] > 0 and relabelled["ms_per_step"] > 0
