"""The folder data set: layouts, pairing, index/palette/colour masks, image conversion, class tables."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import tutorial_lib
from tutorial_lib.data import (
    CAMVID_TABLE,
    IGNORE_INDEX,
    MEAN,
    STD,
    CamVid,
    ClassTable,
    ClassTableError,
    DatasetError,
    DatasetNotFoundError,
    EvalTransform,
    SegmentationFolder,
    camvid_dir,
    eval_transform,
    find_splits,
    image_to_rgb,
    load_class_table,
    make_synthetic_camvid,
    median_frequency_weights,
)

H, W = 6, 8
COLORS = [(0, 0, 0), (255, 0, 0), (0, 0, 255)]  # background, cat, dog
TABLE = {
    "classes": [
        {"name": "background", "color": list(COLORS[0])},
        {"name": "cat", "color": "#FF0000", "weight": 2.0},
        {"name": "dog", "color": [[0, 0, 255], [0, 0, 200]]},  # two mask colours for one class
    ],
    "void": {"value": 255, "color": [255, 255, 255]},
}
TABLE["classes"][0]["weight"] = 0.5
TABLE["classes"][2]["weight"] = 1.0


def random_index(seed: int, void: bool = True) -> np.ndarray:
    """(H, W) class indices 0..2, a few pixels 255 (void) when ``void``."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, size=(H, W)).astype(np.uint8)
    if void:
        label[0, :2] = 255
    return label


def random_image(seed: int) -> np.ndarray:
    return np.random.default_rng(100 + seed).integers(0, 256, size=(H, W, 3), dtype=np.uint8)


def write_table(root: Path, table=TABLE) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps(table))


def write_pair(root: Path, split: str | None, stem: str, image, mask,
               image_ext=".png", mask_ext=".png") -> tuple[Path, Path]:
    base = root / split if split else root
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / "masks").mkdir(parents=True, exist_ok=True)
    image_path = base / "images" / f"{stem}{image_ext}"
    mask_path = base / "masks" / f"{stem}{mask_ext}"
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(image_path)
    (mask if isinstance(mask, Image.Image) else Image.fromarray(mask)).save(mask_path)
    return image_path, mask_path


def palette_mask(label: np.ndarray) -> Image.Image:
    """A P-mode mask whose palette colours say nothing about the classes (index 1 is drawn black)."""
    mask = Image.fromarray(label, mode="P")
    palette = np.random.default_rng(7).integers(0, 256, size=(256, 3)).astype(np.uint8)
    palette[1] = (0, 0, 0)
    mask.putpalette(palette.ravel().tolist())
    return mask


def colour_mask(label: np.ndarray) -> np.ndarray:
    """Paint a label with the table's colours; void drawn white; class 2 with both of its colours."""
    rgb = np.zeros((*label.shape, 3), np.uint8)
    for i, color in enumerate(COLORS):
        rgb[label == i] = color
    rgb[(label == 2) & (np.arange(label.size).reshape(label.shape) % 2 == 1)] = (0, 0, 200)
    rgb[label == 255] = (255, 255, 255)
    return rgb


# --- masks: index, palette, colour --------------------------------------------------------

@pytest.mark.parametrize("kind", ["index", "palette", "colour", "index16"])
def test_mask_kinds_decode_to_the_same_labels(tmp_path, kind):
    write_table(tmp_path)
    labels = [random_index(i) for i in range(3)]
    for i, label in enumerate(labels):
        mask = {
            "index": lambda: label,
            "palette": lambda: palette_mask(label),
            "colour": lambda: colour_mask(label),
            "index16": lambda: Image.fromarray(label.astype(np.uint16)),  # 16-bit PNG (I;16)
        }[kind]()
        write_pair(tmp_path, "train", f"f{i}", random_image(i), mask)
    ds = SegmentationFolder(tmp_path, "train")
    assert (ds.num_classes, ds.classes) == (3, ("background", "cat", "dog"))
    assert len(ds) == 3
    for i, label in enumerate(labels):
        image, got = ds[i]
        np.testing.assert_array_equal(got.numpy(), label)  # void 255 stays 255 (IGNORE_INDEX)
        torch.testing.assert_close(image, torch.from_numpy(random_image(i)).permute(2, 0, 1).float() / 255)


def test_void_value_other_than_255_becomes_ignore_index(tmp_path):
    table = {"classes": [{"name": "a"}, {"name": "b"}], "void": {"value": 7}}
    write_table(tmp_path, table)
    label = np.array([[0, 1, 7, 7]], np.uint8)
    write_pair(tmp_path, "train", "x", np.zeros((1, 4, 3), np.uint8), label)
    assert SegmentationFolder(tmp_path)[0][1].tolist() == [[0, 1, IGNORE_INDEX, IGNORE_INDEX]]


def test_values_outside_the_table_name_the_file(tmp_path):
    write_table(tmp_path, {"classes": [{"name": "a"}, {"name": "b"}, {"name": "c"}]})  # no void
    label = random_index(0, void=False)
    label[1, 1], label[2, 2] = 3, 255
    write_pair(tmp_path, "train", "bad", random_image(0), label)
    with pytest.raises(DatasetError, match=r"bad\.png has values \[3, 255\] outside the class range 0\.\.2"):
        SegmentationFolder(tmp_path)[0]


def test_binary_mask_stored_as_0_255_is_recognised(tmp_path):
    write_table(tmp_path, {"classes": [{"name": "background"}, {"name": "object"}]})
    write_pair(tmp_path, "train", "bin", random_image(0), np.where(random_index(0, False) > 0, 255, 0).astype(np.uint8))
    with pytest.raises(DatasetError, match=r"bin\.png is a binary mask stored as 0/255.*mask // 255") as info:
        SegmentationFolder(tmp_path)[0]
    assert info.value.kind == "binary-255"


def test_unknown_colours_are_named_or_ignored(tmp_path):
    write_table(tmp_path)
    rgb = colour_mask(random_index(0))
    rgb[3, 3] = (10, 20, 30)
    rgb[4, 4:6] = (1, 2, 3)
    write_pair(tmp_path, "train", "odd", random_image(0), rgb)
    with pytest.raises(DatasetError, match=r"odd\.png has 2 colour\(s\).*\(1, 2, 3\) x2, \(10, 20, 30\) x1"):
        SegmentationFolder(tmp_path)[0]
    label = SegmentationFolder(tmp_path, unknown_colors="ignore")[0][1]
    assert label[3, 3] == label[4, 4] == label[4, 5] == IGNORE_INDEX


def test_colour_mask_with_a_table_without_colours(tmp_path):
    write_table(tmp_path, {"classes": [{"name": "a"}, {"name": "b"}]})
    write_pair(tmp_path, "train", "c", random_image(0), np.full((H, W, 3), 1, np.uint8))
    with pytest.raises(DatasetError, match=r"c\.png is a colour \(RGB\) mask .* no colours.*index mask saved as RGB"):
        SegmentationFolder(tmp_path)[0]


def test_mask_format_can_be_forced(tmp_path):
    write_table(tmp_path)
    write_pair(tmp_path, "train", "x", random_image(0), random_index(0))
    with pytest.raises(DatasetError, match=r"x\.png has mode L .*expected an RGB colour image"):
        SegmentationFolder(tmp_path, mask_format="color")[0]
    with pytest.raises(ValueError, match="mask_format"):
        SegmentationFolder(tmp_path, mask_format="rgb")


def test_jpeg_masks_are_refused(tmp_path):
    write_table(tmp_path)
    write_pair(tmp_path, "train", "j", random_image(0), colour_mask(random_index(0)), mask_ext=".jpg")
    with pytest.raises(DatasetError, match=r"j\.jpg is a JPEG.*PNG"):
        SegmentationFolder(tmp_path)[0]


def test_size_mismatch_names_the_file(tmp_path):
    write_table(tmp_path)
    write_pair(tmp_path, "train", "s", random_image(0), np.zeros((H + 1, W), np.uint8))
    with pytest.raises(DatasetError, match=rf"s\.png: image .* is {W}x{H} \(WxH\), mask .* is {W}x{H + 1}"):
        SegmentationFolder(tmp_path)[0]


def test_corrupt_file_is_named(tmp_path):
    write_table(tmp_path)
    image_path, _ = write_pair(tmp_path, "train", "broken", random_image(0), random_index(0))
    image_path.write_bytes(image_path.read_bytes()[:40])
    with pytest.raises(DatasetError, match=r"broken\.png.*corrupt or truncated"):
        SegmentationFolder(tmp_path)[0]


# --- images that are not RGB ---------------------------------------------------------------

GRAY = np.arange(H * W, dtype=np.uint8).reshape(H, W) * 5


def _rgb_of(image: Image.Image) -> np.ndarray:
    return image_to_rgb(image)


def test_grayscale_image_is_copied_into_three_channels():
    np.testing.assert_array_equal(_rgb_of(Image.fromarray(GRAY)), np.stack([GRAY] * 3, -1))


def test_rgba_image_drops_alpha_without_compositing():
    rgba = np.concatenate([random_image(0), np.zeros((H, W, 1), np.uint8)], -1)  # fully transparent
    np.testing.assert_array_equal(_rgb_of(Image.fromarray(rgba, "RGBA")), random_image(0))
    la = Image.fromarray(np.stack([GRAY, np.zeros_like(GRAY)], -1), "LA")
    np.testing.assert_array_equal(_rgb_of(la), np.stack([GRAY] * 3, -1))


def test_16_bit_grayscale_is_scaled_over_the_full_range(tmp_path):
    values = np.array([[0, 1, 128, 129, 257, 1000, 32768, 65534, 65535]], np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)
    image = Image.open(path)
    assert image.mode == "I;16"
    expected = np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)  # [0 0 0 1 1 4 128 255 255]
    got = _rgb_of(image)
    np.testing.assert_array_equal(got, np.stack([expected] * 3, -1))
    assert np.asarray(image.convert("L")).max() == 255 and np.asarray(image.convert("L"))[0, 5] == 255  # Pillow clips
    # 32-bit "I" images (how Pillow opens some 16-bit files): the same rule, values clipped to 0..65535
    i32 = Image.fromarray(np.array([[-5, 65535, 70000, 257]], np.int32), "I")
    np.testing.assert_array_equal(_rgb_of(i32)[..., 0], [[0, 255, 255, 1]])


def test_cmyk_image_uses_the_documented_formula():
    rng = np.random.default_rng(0)
    cmyk = rng.integers(0, 256, size=(H, W, 4), dtype=np.uint8)
    cmyk[0, 0] = (255, 0, 0, 0)   # pure cyan
    cmyk[0, 1] = (0, 0, 0, 128)   # half black
    image = Image.fromarray(cmyk, "CMYK")
    c = cmyk.astype(np.float64)
    expected = np.round((255 - c[..., :3]) * (255 - c[..., 3:]) / 255).astype(np.uint8)
    got = _rgb_of(image)
    np.testing.assert_array_equal(got, expected)
    assert got[0, 0].tolist() == [0, 255, 255] and got[0, 1].tolist() == [127, 127, 127]


def test_palette_and_bilevel_images():
    label = random_index(0, void=False)
    image = palette_mask(label)  # as an *image*, the palette colours are what counts
    palette = np.asarray(image.getpalette(), np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(_rgb_of(image), palette[label])
    bits = Image.fromarray(GRAY > 100)
    np.testing.assert_array_equal(_rgb_of(bits), np.stack([np.where(GRAY > 100, 255, 0)] * 3, -1))


def test_float_images_are_refused_with_a_fix():
    with pytest.raises(DatasetError, match="mode F.*8-bit"):
        image_to_rgb(Image.fromarray(np.zeros((2, 2), np.float32)), "x.tif")


@pytest.mark.parametrize("mode,ext", [("L", ".png"), ("RGBA", ".png"), ("I;16", ".tif"), ("CMYK", ".jpg"),
                                      ("RGB", ".bmp"), ("RGB", ".tiff")])
def test_non_rgb_images_load_through_the_data_set(tmp_path, mode, ext):
    write_table(tmp_path)
    base = random_image(0)
    image = {
        "L": lambda: Image.fromarray(base[..., 0]),
        "RGBA": lambda: Image.fromarray(np.concatenate([base, base[..., :1]], -1), "RGBA"),
        "I;16": lambda: Image.fromarray(base[..., 0].astype(np.uint16) * 257),  # v * 257 -> back to v
        "CMYK": lambda: Image.fromarray(np.zeros((H, W, 4), np.uint8), "CMYK"),
        "RGB": lambda: Image.fromarray(base),
    }[mode]()
    write_pair(tmp_path, "train", "x", image, random_index(0), image_ext=ext)
    got = SegmentationFolder(tmp_path)[0][0]
    assert got.shape == (3, H, W) and got.dtype == torch.float32
    expected = {"L": np.stack([base[..., 0]] * 3, -1), "RGBA": base, "I;16": np.stack([base[..., 0]] * 3, -1),
                "RGB": base}.get(mode)
    if mode == "CMYK":  # JPEG: lossy, but no ink at all is white
        assert got.min() > 0.95
    else:
        torch.testing.assert_close(got, torch.from_numpy(expected).permute(2, 0, 1).float() / 255)


# --- layouts and pairing --------------------------------------------------------------------

def test_splits_flat_layout_and_pairing_by_stem(tmp_path):
    write_table(tmp_path)
    write_pair(tmp_path, "train", "a", random_image(0), random_index(0), image_ext=".jpg")
    write_pair(tmp_path, "train", "b", random_image(1), random_index(1), image_ext=".tif")
    write_pair(tmp_path, "val", "c", random_image(2), random_index(2))
    assert [(s.name, s.images.relative_to(tmp_path).as_posix()) for s in find_splits(tmp_path)] == [
        ("train", "train/images"), ("val", "val/images")]
    train = SegmentationFolder(tmp_path, "train")
    assert [(i.name, m.name) for i, m in train.pairs] == [("a.jpg", "a.png"), ("b.tif", "b.png")]
    assert len(SegmentationFolder(tmp_path, "val")) == 1
    with pytest.raises(DatasetNotFoundError, match=r"Split 'test' not found.*splits found: train, val"):
        SegmentationFolder(tmp_path, "test")

    flat = tmp_path / "flat"
    write_table(flat)
    write_pair(flat, None, "z", random_image(3), random_index(3))
    assert len(SegmentationFolder(flat, None)) == 1
    with pytest.raises(DatasetNotFoundError, match="flat layout images/ \\+ masks/: pass split=None"):
        SegmentationFolder(flat, "train")


def test_mask_suffix(tmp_path):
    write_table(tmp_path)
    write_pair(tmp_path, "train", "a", random_image(0), random_index(0))
    (tmp_path / "train/masks/a.png").rename(tmp_path / "train/masks/a_mask.png")
    ds = SegmentationFolder(tmp_path, mask_suffix="_mask")
    assert ds.pairs[0][1].name == "a_mask.png"
    with pytest.raises(DatasetNotFoundError, match=r"1 image\(s\) .* have no mask .*: a\.png"):
        SegmentationFolder(tmp_path)


def test_images_without_masks_and_duplicate_stems_are_named(tmp_path):
    write_table(tmp_path)
    write_pair(tmp_path, "train", "a", random_image(0), random_index(0))
    Image.fromarray(random_image(1)).save(tmp_path / "train/images/lonely.png")
    with pytest.raises(DatasetNotFoundError, match=r"lonely\.png") as info:
        SegmentationFolder(tmp_path)
    assert "a.png" not in str(info.value).split(":")[-1]
    (tmp_path / "train/images/lonely.png").unlink()
    Image.fromarray(random_image(1)).save(tmp_path / "train/images/a.jpg")
    with pytest.raises(DatasetError, match=r"a\.jpg and a\.png"):
        SegmentationFolder(tmp_path)


def test_missing_class_table_says_what_to_write(tmp_path):
    write_pair(tmp_path, "train", "a", random_image(0), random_index(0))
    with pytest.raises(DatasetNotFoundError, match=r"No class table .*classes\.json.*tutorial_lib\.data\.check"):
        SegmentationFolder(tmp_path)
    table = ClassTable(("a", "b", "c"), void_value=255)
    assert SegmentationFolder(tmp_path, classes=table).num_classes == 3  # a table object instead of a file


# --- loading: DataLoader, resize, cache, statistics ------------------------------------------

def test_dataloader_batch_shapes_and_dtypes(tmp_path):
    write_table(tmp_path)
    for i in range(4):
        write_pair(tmp_path, "train", f"p{i}", random_image(i), palette_mask(random_index(i)))
    for transform, size in ((None, (H, W)), (eval_transform((4, 4)), (4, 4))):
        ds = SegmentationFolder(tmp_path, transform=transform)
        images, labels = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
        assert images.shape == (3, 3, *size) and images.dtype == torch.float32
        assert labels.shape == (3, *size) and labels.dtype == torch.int64
        assert set(labels.unique().tolist()) <= {0, 1, 2, IGNORE_INDEX}


def test_resize_and_cache(tmp_path):
    write_table(tmp_path)
    blocks = random_index(0, void=False)[:3, :4]
    label = np.kron(blocks, np.ones((2, 2), np.uint8))  # (6, 8) in 2x2 blocks
    write_pair(tmp_path, "train", "a", random_image(0), label)
    for cache in (False, True):
        ds = SegmentationFolder(tmp_path, resize=(3, 4), cache=cache, progress=False)
        image, got = ds[0]
        assert image.shape == (3, 3, 4)
        np.testing.assert_array_equal(got.numpy(), blocks)  # nearest: block values, never blends
        np.testing.assert_array_equal(ds.load_label(0), blocks)


def test_median_frequency_weights_use_the_tables_class_count(tmp_path):
    write_table(tmp_path)
    write_pair(tmp_path, "train", "a", random_image(0), np.array([[0, 0, 1, 255]] * 2, np.uint8))
    weights = median_frequency_weights(SegmentationFolder(tmp_path))
    assert weights.shape == (3,) and weights[2] == 0  # 3 classes from the table; dog never occurs


# --- CamVid is one instance ------------------------------------------------------------------

def test_camvid_is_a_folder_data_set_with_its_table(tmp_path):
    make_synthetic_camvid(tmp_path, n_train=2, n_val=1, size=(12, 16))
    camvid, folder = CamVid(tmp_path, "train"), SegmentationFolder(tmp_path, "train")  # SegNet layout found
    assert isinstance(camvid, SegmentationFolder) and folder.table == camvid.table == CAMVID_TABLE
    for i in range(2):
        for a, b in zip(camvid[i], folder[i]):
            assert torch.equal(a, b)
    assert (folder[0][1] == IGNORE_INDEX).any()  # the void border (11) became 255


REAL = camvid_dir()


@pytest.mark.skipif(REAL is None or not (REAL / "val").is_dir(), reason="CamVid data not available")
def test_real_camvid_through_the_folder_data_set():
    folder = SegmentationFolder(REAL, "val", max_images=2)
    camvid = CamVid(REAL, "val", max_images=2)
    assert folder.pairs == camvid.pairs
    image, label = folder[1]
    assert image.shape == (3, 360, 480) and torch.equal(label, camvid[1][1])


# --- the one evaluation pre-processing -------------------------------------------------------

def test_eval_transform_matches_pytorch_area_resize_and_keeps_or_resizes_the_label():
    image = random_image(0).repeat(4, 0).repeat(4, 1)  # (24, 32, 3)
    label = np.kron(random_index(0), np.ones((4, 4), np.uint8))
    out = EvalTransform((6, 8))(image=image, mask=label)
    reference = F.avg_pool2d(torch.from_numpy(image).permute(2, 0, 1)[None].double(), 4)[0] / 255  # area = mean
    reference = (reference - torch.tensor(MEAN, dtype=torch.float64)[:, None, None]) / torch.tensor(
        STD, dtype=torch.float64)[:, None, None]
    torch.testing.assert_close(out["image"].double(), reference, atol=0.5 / 255 / min(STD) + 1e-5, rtol=0)
    assert out["image"].dtype == torch.float32
    assert torch.equal(out["mask"], torch.from_numpy(label))  # evaluation: labels at full resolution
    resized = eval_transform((6, 8))(image=image, mask=label)
    assert torch.equal(resized["image"], out["image"])
    assert torch.equal(resized["mask"], torch.from_numpy(random_index(0)))


def test_resize_image_is_the_exact_area_average_at_a_non_integer_ratio():
    """36x48 -> 24x32 (ratio 1.5): upsample x2 (nearest) then 3x3 average pooling is the exact area average."""
    from tutorial_lib.data.transforms import resize_image

    image = np.random.default_rng(0).integers(0, 256, size=(36, 48, 3), dtype=np.uint8)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].double()
    exact = F.avg_pool2d(x.repeat_interleave(2, 2).repeat_interleave(2, 3), 3)[0].permute(1, 2, 0).numpy()
    got = resize_image(image, (24, 32))
    assert got.dtype == np.uint8 and got.shape == (24, 32, 3)
    assert np.abs(got - exact).max() <= 0.5 + 1e-9  # only the rounding to uint8


def test_camvid_resize_uses_the_shared_resize():
    from tutorial_lib.data import camvid, folder, transforms

    assert folder.resize_pair is transforms.resize_pair
    assert not hasattr(camvid, "_resize_pair") and not hasattr(camvid, "_resize_label")


def test_importing_the_data_package_loads_neither_albumentations_nor_opencv():
    code = ("import sys; from tutorial_lib.data import IGNORE_INDEX, SegmentationFolder; "
            "print(IGNORE_INDEX, 'albumentations' in sys.modules, 'cv2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(tutorial_lib.__file__).parents[1])
    assert out.stdout.split() == ["255", "False", "False"]


# --- class tables -----------------------------------------------------------------------------

def test_json_table_fields():
    table = ClassTable(("a", "b"), colors=(((1, 2, 3),), ((4, 5, 6), (7, 8, 9))), weights=(0.5, 2),
                       void_value=255, void_colors=((0, 0, 0),))
    assert table.color_to_index == {(1, 2, 3): 0, (4, 5, 6): 1, (7, 8, 9): 1, (0, 0, 0): IGNORE_INDEX}
    assert table.palette == ((1, 2, 3), (4, 5, 6))


def test_loaded_table(tmp_path):
    write_table(tmp_path)
    table = load_class_table(tmp_path / "classes.json")
    assert table.names == ("background", "cat", "dog")
    assert table.colors == (((0, 0, 0),), ((255, 0, 0),), ((0, 0, 255), (0, 0, 200)))
    assert table.weights == (0.5, 2.0, 1.0)
    assert (table.void_value, table.void_colors) == (255, ((255, 255, 255),))
    (tmp_path / "again.json").write_text(table.to_json())
    assert load_class_table(tmp_path / "again.json").colors == table.colors


def _readme_block(language: str) -> str:
    readme = (Path(tutorial_lib.__file__).parents[1] / "data" / "README.md").read_text()
    return re.search(rf"```{language}\n(.*?)```", readme, re.S).group(1)


@pytest.mark.parametrize("suffix", ["json", "csv"])
def test_readme_examples_are_camvids_table(tmp_path, suffix):
    path = tmp_path / f"classes.{suffix}"
    path.write_text(_readme_block(suffix))
    table = load_class_table(path)
    fields = ("names", "colors", "weights", "void_value", "void_colors")
    assert [getattr(table, f) for f in fields] == [getattr(CAMVID_TABLE, f) for f in fields]


def test_csv_without_weights_and_repeated_names(tmp_path):
    path = tmp_path / "class_dict.csv"
    path.write_text("name,r,g,b\nroad,128,64,128\ncar,0,0,142\nroad,100,100,100\nVoid,0,0,0\n")
    table = load_class_table(path)
    assert table.names == ("road", "car") and table.weights is None and table.void_value is None
    assert table.colors == (((128, 64, 128), (100, 100, 100)), ((0, 0, 142),))
    assert table.void_colors == ((0, 0, 0),)


BAD_TABLES = {
    "not json": ("{classes: [}", r"not valid JSON \(line 1, column 2"),
    "no classes": ('{"names": ["a"]}', r'"classes" list'),
    "british key": ('{"classes": [{"name": "a", "colour": [1, 2, 3]}]}',
                    r"classes\[0\]: unknown key 'colour' \(spell it \"color\"\)"),
    "bad colour": ('{"classes": [{"name": "a", "color": [1, 2, 300]}]}', r"classes\[0\]: colour \[1, 2, 300\]"),
    "duplicate": ('{"classes": [{"name": "a"}, {"name": "a"}]}', "unique; repeated: a"),
    "shared colour": ('{"classes": [{"name": "a", "color": "#010203"}, {"name": "b", "color": [1, 2, 3]}]}',
                      r"colour \(1, 2, 3\) is given to both 'a' and 'b'"),
    "partial colours": ('{"classes": [{"name": "a", "color": [1, 2, 3]}, {"name": "b"}]}', "'b' has no colour"),
    "partial weights": ('{"classes": [{"name": "a", "weight": 1}, {"name": "b"}]}', "'b' has no weight"),
    "void is a class": ('{"classes": [{"name": "a"}, {"name": "b"}], "void": {"value": 1}}',
                        r"void value 1 must not be a class index \(0\.\.1\)"),
    "negative weight": ('{"classes": [{"name": "a", "weight": -1}]}', "weight of 'a' must be a finite number >= 0"),
}


@pytest.mark.parametrize("case", BAD_TABLES)
def test_bad_json_tables_name_the_file_and_the_entry(tmp_path, case):
    text, message = BAD_TABLES[case]
    path = tmp_path / "classes.json"
    path.write_text(text)
    with pytest.raises(ClassTableError, match=message) as info:
        load_class_table(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text,message", [
    ("label,r,g,b\na,1,2,3\n", 'header with a "name" column'),
    ("name,r,g\na,1,2\n", "r, g and b together"),
    ("name,r,g,b\na,1,2,x\n", r"line 2: r, g, b must be integers"),
    ("name,weight\na,heavy\n", r"line 2: weight 'heavy' is not a number"),
    ("name,value\na,3\n", r"line 2: only the void row may have a value"),
    ("name,r,g,b,colour\n", r"unknown key 'colour'"),
])
def test_bad_csv_tables_name_the_line(tmp_path, text, message):
    path = tmp_path / "classes.csv"
    path.write_text(text)
    with pytest.raises(ClassTableError, match=message):
        load_class_table(path)


def test_both_table_files_is_ambiguous(tmp_path):
    write_table(tmp_path)
    (tmp_path / "classes.csv").write_text("name\na\n")
    write_pair(tmp_path, "train", "a", random_image(0), random_index(0))
    with pytest.raises(ClassTableError, match="both classes.json and classes.csv"):
        SegmentationFolder(tmp_path)
