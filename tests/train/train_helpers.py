"""A tiny synthetic CamVid folder and a tiny model, shared by the tests of tutorial_lib.train."""

from pathlib import Path

import numpy as np
from PIL import Image

from tutorial_lib.data import VOID_LABEL
from tutorial_lib.train import TrainConfig

IMAGE_HW = (40, 60)  # not the model size: evaluation has to resize
MODEL_HW = (32, 48)
SMALL = dict(  # a small TransUNet (GroupNorm needs multiples of 32): seconds per test
    resnet_layers=(1, 1, 1), resnet_width=32, resnet_planes=(32, 32, 32), hidden_size=32, num_layers=1,
    num_heads=2, head_dim=16, mlp_dim=64, decoder_head_channels=16, decoder_channels=(16, 8, 8, 8),
)


def make_camvid(root: Path, splits=(("train", 6), ("val", 3)), seed: int = 0) -> Path:
    """SegNet layout: split/ + splitannot/ PNG pairs; labels 0..10 and 11 = void, colours follow labels."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (12, 3), dtype=np.uint8)
    for split, n in splits:
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            label = np.zeros(IMAGE_HW, np.uint8)
            for c in range(0, 11):  # vertical stripes of random widths, shifted per image
                label[:, (c * 6 + i) % IMAGE_HW[1]:] = c
            label[: rng.integers(1, 5)] = VOID_LABEL
            image = palette[label] // 2 + rng.integers(0, 128, (*IMAGE_HW, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / split / f"f{i:03d}.png")
            Image.fromarray(label).save(root / f"{split}annot" / f"f{i:03d}.png")
    return root


def small_config(data, out, **kw) -> TrainConfig:
    base = dict(config="tiny", img_size=MODEL_HW, model_overrides=SMALL, data=str(data), out=str(out),
                epochs=2, batch_size=2, progress=False, precision="fp32", warmup_epochs=0.5)
    return TrainConfig(**{**base, **kw})


def state_dicts_close(a: dict, b: dict, atol: float) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].numel())


def small_cli_args(camvid: Path, out: Path) -> list[str]:
    """Command-line arguments of a one-epoch run of the small model on ``camvid``."""
    return ["--config", "tiny", "--img-size", "32", "48", "--data", str(camvid), "--epochs", "1",
            "--batch-size", "3", "--max-images", "3", "--max-val-images", "2", "--out", str(out),
            "--no-progress", "--precision", "fp32", "--seed", "1", "--cache"]
