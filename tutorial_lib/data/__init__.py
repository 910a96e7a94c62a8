"""Segmentation data: class tables, the folder data set (CamVid is one), checks, augmentation,
class statistics, download.

Layering: nothing here imports model, training or plotting code. albumentations and OpenCV
are imported only when an augmentation or a resize first needs them.
"""

from .camvid import (
    SPLITS,
    CamVid,
    CamVidDataError,
    CamVidNotFoundError,
    available_splits,
    camvid_dir,
    camvid_split,
    data_class_table,
    is_camvid_layout,
    open_split,
    resolve_data_dir,
)
from .class_table import CAMVID32_TABLE, CAMVID_TABLE, ClassTable, ClassTableError, load_class_table
from .classes import (
    CAMVID32_COLOR_TO_INDEX,
    CAMVID32_LABEL_COLORS,
    CAMVID32_TO_CAMVID11,
    CAMVID_CLASSES,
    CAMVID_COLOR_TO_INDEX,
    CAMVID_COLORS,
    IGNORE_INDEX,
    NUM_CLASSES,
    SEGNET_CLASS_WEIGHTS,
    VOID_LABEL,
    colorize,
    red_channel_label,
    rgb_to_index,
)
from .folder import (
    DatasetError,
    DatasetNotFoundError,
    SegmentationFolder,
    find_splits,
    image_to_rgb,
    resolve_class_table,
)
from .synthetic import make_synthetic_camvid, street_image, street_label
from .stats import ClassFrequencies, class_frequencies, median_frequency_weights
from .transforms import MEAN, STD, EvalTransform, denormalize, eval_transform, train_transform

_CHECK_NAMES = ("CheckReport", "Issue", "check_dataset")


def __getattr__(name: str):
    """``check_dataset`` & co. from ``.check``, imported on first use: that module is also run
    as ``python -m tutorial_lib.data.check``, which must not find it imported already."""
    if name in _CHECK_NAMES:
        from . import check

        return getattr(check, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "CAMVID32_COLOR_TO_INDEX",
    "CAMVID32_LABEL_COLORS",
    "CAMVID32_TABLE",
    "CAMVID32_TO_CAMVID11",
    "CAMVID_CLASSES",
    "CAMVID_COLORS",
    "CAMVID_COLOR_TO_INDEX",
    "CAMVID_TABLE",
    "IGNORE_INDEX",
    "MEAN",
    "NUM_CLASSES",
    "SEGNET_CLASS_WEIGHTS",
    "SPLITS",
    "STD",
    "VOID_LABEL",
    "CamVid",
    "CamVidDataError",
    "CamVidNotFoundError",
    "CheckReport",
    "ClassFrequencies",
    "ClassTable",
    "ClassTableError",
    "DatasetError",
    "DatasetNotFoundError",
    "EvalTransform",
    "Issue",
    "SegmentationFolder",
    "available_splits",
    "camvid_dir",
    "camvid_split",
    "check_dataset",
    "class_frequencies",
    "colorize",
    "data_class_table",
    "denormalize",
    "eval_transform",
    "find_splits",
    "image_to_rgb",
    "is_camvid_layout",
    "load_class_table",
    "make_synthetic_camvid",
    "median_frequency_weights",
    "open_split",
    "red_channel_label",
    "resolve_class_table",
    "resolve_data_dir",
    "rgb_to_index",
    "street_image",
    "street_label",
    "train_transform",
]
