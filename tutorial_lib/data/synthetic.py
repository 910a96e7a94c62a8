"""Drawn street scenes in CamVid's format, for running everything without the real data.

``street_label`` draws a road scene with the 11 CamVid class indices (a fixed scene, or a
random variation of it with a ``numpy`` generator); ``street_image`` paints a plausible RGB
image over such a label (class colours, texture noise, lighting); ``make_synthetic_camvid``
writes a small data set in the SegNet layout (``train/``, ``trainannot/``, ``val/``,
``valannot/``), so that ``CamVid``, training and evaluation run unchanged on it.

Nothing here is meant to look like CamVid's statistics: it is a stand-in that keeps the
notebooks and tests runnable (and learnable: colour and position predict the class).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .classes import VOID_LABEL

# class index -> mean RGB of the painted image (not the label palette): sky, building, pole,
# road, pavement, tree, sign, fence, car, pedestrian, bicyclist
_PAINT = np.array(
    [
        (170, 190, 215), (140, 110, 95), (90, 90, 95), (70, 70, 75), (150, 145, 140), (60, 110, 50),
        (220, 190, 40), (120, 90, 60), (180, 30, 40), (40, 35, 60), (150, 60, 140),
    ],
    dtype=np.float32,
)


def street_label(h: int = 512, w: int = 512, rng: np.random.Generator | None = None) -> np.ndarray:
    """A street scene drawn with CamVid's 11 class indices -> (h, w) uint8.

    ``rng`` None: always the same scene. With a generator: the road's centre, the horizon,
    the tree, poles, cars and people move, and the scene may be mirrored. Sky, buildings,
    trees, road and pavement fill large areas; poles, a sign, pedestrians and a bicyclist are
    only a few pixels wide, as in real street images.
    """
    def jitter(scale: float) -> float:
        return 0.0 if rng is None else float(rng.uniform(-scale, scale))

    y, x = np.mgrid[0:h, 0:w]
    cx, dv = 0.5 + jitter(0.08), jitter(0.05)  # road centre, horizon shift
    u, v = x / w, y / h - dv  # 0..1 across, 0..1 down
    lab = np.full((h, w), 0, dtype=np.uint8)  # sky
    lab[(v > 0.18 + 0.25 * np.abs(u - cx)) & (np.abs(u - cx) > 0.12)] = 1  # buildings
    lab[(v > 0.38) & (np.abs(u - cx) <= 0.12)] = 1
    tu, tv = 0.78 + jitter(0.1), 0.36 + jitter(0.05)
    lab[((u - tu) ** 2 / 0.012 + (v - tv) ** 2 / 0.02) < 1] = 5  # a tree
    lab[v > 0.55] = 4  # pavement
    lab[(v > 0.55) & (np.abs(u - cx) < 0.1 + 0.9 * (v - 0.55))] = 3  # road, widening towards us
    lab[(v > 0.5) & (v <= 0.55) & ((u < cx - 0.2) | (u > cx + 0.22))] = 7  # low fences
    thin = max(2, w // 160)

    def rows(a: float, b: float) -> slice:
        return slice(max(int((a + dv) * h), 0), max(int((b + dv) * h), 0))

    def cols(a: float, b: float) -> slice:
        return slice(max(int(a * w), 0), max(int(b * w), 0))

    for x0, top in ((0.16, 0.2), (0.62, 0.3), (0.9, 0.15)):  # poles
        c = int((x0 + jitter(0.04)) * w)
        lab[rows(top, 0.66), c: c + thin] = 2
    c = int(0.62 * w) if rng is None else int((0.62 + jitter(0.04)) * w)
    lab[rows(0.26, 0.33), c - int(0.02 * w): c + int(0.03 * w)] = 6  # a sign
    for x0, v0, v1 in ((0.06, 0.52, 0.68), (0.27, 0.53, 0.66), (0.84, 0.54, 0.7)):  # pedestrians
        c = int((x0 + jitter(0.05)) * w)
        lab[rows(v0, v1), max(c, 0): c + 2 * thin] = 9
    c = int((0.4 + jitter(0.05)) * w)
    lab[rows(0.6, 0.72), c: c + 3 * thin] = 10  # a bicyclist
    for (u0, u1, v0, v1) in ((0.45, 0.58, 0.56, 0.66), (0.62, 0.8, 0.62, 0.8)):  # cars
        du = jitter(0.1)
        lab[rows(v0, v1), cols(u0 + du, u1 + du)] = 8
    if rng is not None and rng.random() < 0.5:
        lab = lab[:, ::-1].copy()
    return lab


def street_image(label: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Paint an RGB image (H, W, 3) uint8 over a class-index label: one colour per class,
    per-pixel texture noise, a brighter sky towards the horizon and a random overall
    brightness (``rng`` None: a fixed generator)."""
    rng = np.random.default_rng(0) if rng is None else rng
    label = np.asarray(label)
    h, w = label.shape
    paint = np.vstack([_PAINT, np.zeros((256 - len(_PAINT), 3), np.float32)])  # void and others: black
    image = paint[label.astype(np.intp)]
    shade = 0.85 + 0.3 * np.linspace(0, 1, h, dtype=np.float32)[:, None, None]  # lighter lower down
    image = image * shade * rng.uniform(0.8, 1.2) + rng.normal(0.0, 12.0, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_synthetic_camvid(
    root: str | Path,
    n_train: int = 32,
    n_val: int = 8,
    size: tuple[int, int] = (360, 480),
    seed: int = 0,
) -> Path:
    """Write a drawn data set in the SegNet CamVid layout under ``root`` and return ``root``.

    ``train/`` + ``trainannot/`` (``n_train`` pairs) and ``val/`` + ``valannot/`` (``n_val``),
    PNG images of ``size`` = (H, W) and single-channel labels with 0..10 = class and a one-pixel
    void (11) border, like the real labels' unlabelled edges. Deterministic in ``seed``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    h, w = size
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            label = street_label(h, w, rng)
            image = street_image(label, rng)
            label[[0, -1], :] = VOID_LABEL
            label[:, [0, -1]] = VOID_LABEL
            name = f"synthetic_{split}_{i:04d}.png"
            Image.fromarray(image).save(root / split / name)
            Image.fromarray(label).save(root / f"{split}annot" / name)
    return root
