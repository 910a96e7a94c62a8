"""Exercise checkers for notebooks 01-06: run a learner's function or class against the
library's reference on random inputs and say precisely what is wrong.

Every ``check_*`` prints one line starting with "✓" and returns None when the learner's code
matches the reference (``max |difference| < 1e-5``), and otherwise raises ``AssertionError``
whose message starts with "✗" and names the mistake, so the notebook cell fails visibly.
Inputs come from a fixed seed inside ``torch.random.fork_rng`` (the notebook's random state
is left alone) and messages print orders of magnitude, never raw float digits.

* 01 attention: ``check_softmax``, ``check_attention``
* 02 multi-head attention: ``check_split_heads``, ``check_merge_heads``,
  ``check_multi_head_attention``
* 03 vision transformer: ``check_patchify``, ``check_position_embedding_resize``
* 04 ResNet stages: ``check_std_conv``, ``check_bit_bottleneck``
* 05 U-Net decoder: ``check_upsample``, ``check_decoder_block``
* 06 TransUNet: ``check_transunet_shapes``, ``check_transunet``
"""

from .attention import check_attention, check_softmax
from .decoder import check_decoder_block, check_upsample
from .multihead import check_merge_heads, check_multi_head_attention, check_split_heads
from .resnet import check_bit_bottleneck, check_std_conv
from .transunet import check_transunet, check_transunet_shapes
from .vit import check_patchify, check_position_embedding_resize

__all__ = [
    "check_attention", "check_softmax",
    "check_split_heads", "check_merge_heads", "check_multi_head_attention",
    "check_patchify", "check_position_embedding_resize",
    "check_std_conv", "check_bit_bottleneck",
    "check_upsample", "check_decoder_block",
    "check_transunet_shapes", "check_transunet",
]
