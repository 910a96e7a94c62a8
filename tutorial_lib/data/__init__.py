"""CamVid data: classes and colours, the Dataset, augmentation, class statistics, download.

Layering: nothing here imports model, training or plotting code.
"""

from .camvid import CamVid, CamVidDataError, CamVidNotFoundError, camvid_dir
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
from .synthetic import make_synthetic_camvid, street_image, street_label
from .stats import ClassFrequencies, class_frequencies, median_frequency_weights
from .transforms import MEAN, STD, denormalize, eval_transform, train_transform

__all__ = [
    "CAMVID32_COLOR_TO_INDEX",
    "CAMVID32_LABEL_COLORS",
    "CAMVID32_TO_CAMVID11",
    "CAMVID_CLASSES",
    "CAMVID_COLORS",
    "CAMVID_COLOR_TO_INDEX",
    "IGNORE_INDEX",
    "MEAN",
    "NUM_CLASSES",
    "SEGNET_CLASS_WEIGHTS",
    "STD",
    "VOID_LABEL",
    "CamVid",
    "CamVidDataError",
    "CamVidNotFoundError",
    "ClassFrequencies",
    "camvid_dir",
    "class_frequencies",
    "colorize",
    "denormalize",
    "eval_transform",
    "make_synthetic_camvid",
    "median_frequency_weights",
    "red_channel_label",
    "rgb_to_index",
    "street_image",
    "street_label",
    "train_transform",
]
