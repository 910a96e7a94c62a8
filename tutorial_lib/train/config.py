"""The options of a training run, stated once: the ``TrainConfig`` dataclass.

Each field carries its help text, its group and (where it has them) its allowed values in
its metadata; ``add_arguments`` builds the command line from the fields, so adding an option
is adding one field::

    classes: str | None = option(None, "class table of a folder data set (.json or .csv)",
                                 group="data", metavar="FILE")

Command-line names follow the field names (``batch_size`` -> ``--batch-size``); a boolean
that defaults to True is switched off with ``--no-NAME`` (``--no-augment``), one that
defaults to False is switched on with ``--NAME`` (``--cache``); ``X | None`` takes an X,
``tuple[int, int]`` two values.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..data import ClassTable, data_class_table
from ..evaluate import EVAL_MODES
from ..runtime import PRECISIONS
from ..transunet import BASELINE_PRESETS, PRESETS, TransUNetConfig, get_config

#: The presets ``--config`` accepts: the TransUNets and the CNN-only baselines (``use_transformer=False``).
TRAIN_PRESETS = PRESETS + BASELINE_PRESETS
#: The presets whose encoder has the layout of Google's ImageNet-21k npz files (``--pretrained``):
#: R50+ViT-B_16.npz / R50+ViT-L_16.npz for the hybrids, ViT-B_16.npz for the pure ViT.
PRETRAINED_PRESETS = ("R50-ViT-B_16", "R50-ViT-L_16", "ViT-B_16")

GROUPS = ("model", "data", "optimisation", "run")


def option(default=None, help: str = "", *, group: str, choices: Sequence | None = None,
           metavar: str | tuple | None = None, cli: bool = True, from_cli: Callable | None = None,
           default_factory: Callable | None = None):
    """A ``TrainConfig`` field with what its command-line option needs.

    ``choices``: the allowed values (checked for the Python API too); ``cli=False``: Python
    only; ``from_cli``: converts the command-line value to the field's unit.
    """
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
    meta = {"help": help, "group": group, "choices": None if choices is None else tuple(choices),
            "metavar": metavar, "cli": cli, "from_cli": from_cli}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Everything a training run depends on; ``python -m tutorial_lib.train --help`` lists the
    same options, generated from these fields."""

    # model
    config: str = option("tiny", "preset of tutorial_lib.transunet (num_classes comes from the class table); "
                         "tiny-cnn and R50-UNet are the CNN-only baselines", group="model", choices=TRAIN_PRESETS)
    img_size: tuple[int, int] | None = option(
        None, "model input size, multiple of 16 (default: the preset's)", group="model", metavar=("H", "W"))
    model_overrides: dict = option(help="any other TransUNetConfig field", group="model", cli=False,
                                   default_factory=dict)
    pretrained: str | None = option(
        None, "fine-tune from Google's ImageNet-21k weights: R50+ViT-B_16.npz (presets "
        f"{', '.join(PRETRAINED_PRESETS)}; CNN and transformer loaded, decoder and head from scratch)",
        group="model", metavar="NPZ")
    # data
    data: str | None = option(None, "data folder: CamVid (found by its layout) or a folder data set "
                              "DIR/train/{images,masks} + DIR/val/... (default: tutorial_lib.data.camvid_dir())",
                              group="data", metavar="DIR")
    classes: str | None = option(None, "class table of a folder data set, .json or .csv (default: "
                                 "DIR/classes.json or .csv; CamVid's for CamVid)", group="data", metavar="FILE")
    check: bool = option(True, "check every image/mask pair before training (tutorial_lib.data.check); "
                         "stop with its report when training would fail", group="data")
    max_images: int | None = option(None, "only the first N training images (smoke tests)", group="data",
                                    metavar="N")
    max_val_images: int | None = option(None, "only the first N validation images (0: no validation)",
                                        group="data", metavar="N")
    cache: bool = option(False, "decode all images once and keep them in memory", group="data")
    workers: int = option(0, "data-loader worker processes", group="data")
    augment: bool = option(True, "random rescale, crop, flip and colour jitter (without: just resize)",
                           group="data")
    scale: tuple[float, float] = option(
        (0.75, 1.5), "random rescale range, relative to the evaluation scale (the model's input size with "
        "--eval-mode resize, full resolution with sliding)", group="data", metavar=("LO", "HI"))
    color_jitter: float = option(0.3, "colour jitter strength (0: off)", group="data")
    eval_mode: str = option(
        "resize", "how validation, evaluate and predict run the model on a frame: resize it to the model's "
        "input size, or slide model-size windows over it at full resolution", group="data", choices=EVAL_MODES)
    eval_flip: bool = option(False, "validate with flip test-time augmentation (mean with the mirrored "
                             "frame's prediction)", group="data")
    # optimisation
    epochs: int = option(30, "number of epochs (a cap with --time-limit)", group="optimisation")
    batch_size: int = option(8, "images per step, per process", group="optimisation")
    optimizer: str = option("adamw", "adamw, or sgd (the official recipe)", group="optimisation",
                            choices=("adamw", "sgd"))
    lr: float | None = option(None, "base learning rate (default: 1e-3 for AdamW, 0.01 for SGD)",
                              group="optimisation")
    weight_decay: float | None = option(None, "(default: 0.01 for AdamW, 1e-4 for SGD)", group="optimisation")
    momentum: float = option(0.9, "SGD momentum", group="optimisation")
    schedule: str = option("poly", "learning-rate decay after the warmup", group="optimisation",
                           choices=("poly", "cosine", "constant"))
    poly_power: float = option(0.9, "exponent of the poly decay", group="optimisation")
    warmup_epochs: float = option(1.0, "linear warmup length", group="optimisation")
    grad_clip: float | None = option(1.0, "max gradient norm (0: off)", group="optimisation")
    dice_weight: float = option(0.5, "loss = (1 - w) CE + w Dice", group="optimisation")
    ohem: float = option(0.0, "online hard example mining in the CE term: only pixels whose true-class probability "
                         "is below this count (at least 1/16 of them; 0.7 is usual); 0: off", group="optimisation",
                         metavar="P")
    class_weights: str = option(
        "none", "CE class weights: median-frequency from the train labels, SegNet's published ones (CamVid), "
        "or the class table's \"weight\" entries", group="optimisation", choices=("none", "median", "segnet", "table"))
    # run
    precision: str = option("auto", "auto: bf16 where the device computes it natively, fp16 on older GPUs, "
                            "else fp32", group="run", choices=PRECISIONS)
    device: str | None = option(None, "cpu, cuda, cuda:1, ... (default: cuda if available)", group="run")
    threads: int | None = option(None, "torch CPU threads (default: torch's choice)", group="run")
    channels_last: bool = option(True, "NHWC model and batches (about 1.1x faster convolutions on CPU and GPU)",
                                 group="run")
    seed: int = option(0, "seed of model init, data order and augmentation", group="run")
    out: str = option("runs/camvid", "output folder: metrics.jsonl, last.pt, best.pt", group="run",
                      metavar="DIR")
    resume: bool = option(False, "continue from OUT/last.pt with the settings stored in it "
                          "(options given now override them)", group="run")
    overwrite: bool = option(False, "start over in an OUT that already holds a run", group="run")
    val_every: int = option(1, "validate every N epochs (and after the last one)", group="run", metavar="N")
    time_limit: float | None = option(
        None, "training time budget in minutes (seconds in Python; set-up, validation and checkpoint writing "
        "not counted): the lr schedule follows the fraction of it used and training stops when it is up",
        group="run", metavar="MINUTES",
        from_cli=lambda minutes: 60.0 * minutes)
    progress: bool = option(True, "progress bars (rank 0 only)", group="run")

    def __post_init__(self):
        if self.img_size is not None:
            self.img_size = (int(self.img_size[0]), int(self.img_size[1]))
        self.scale = (float(self.scale[0]), float(self.scale[1]))
        self.grad_clip = self.grad_clip or None  # 0 means off
        if self.config not in TRAIN_PRESETS:
            raise ValueError(f"unknown config {self.config!r}; choose one of {list(TRAIN_PRESETS)}")
        if self.pretrained is not None and self.config not in PRETRAINED_PRESETS:
            raise ValueError(
                f"--pretrained {self.pretrained}: Google's ImageNet weights fit the presets "
                f"{', '.join(PRETRAINED_PRESETS)} (R50 hybrid / ViT-B layout), not {self.config!r}. Use "
                "--config R50-ViT-B_16 with R50+ViT-B_16.npz, or train this preset without --pretrained."
            )
        for f in dataclasses.fields(self):
            allowed = f.metadata.get("choices")
            if allowed is not None and getattr(self, f.name) not in allowed:
                raise ValueError(f"{f.name} must be one of {allowed}, got {getattr(self, f.name)!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.val_every < 1:
            raise ValueError("epochs, batch_size and val_every must be at least 1")
        if not 0.0 <= self.dice_weight <= 1.0:
            raise ValueError(f"dice_weight must be in [0, 1], got {self.dice_weight}")
        if not 0.0 <= self.ohem <= 1.0:
            raise ValueError(f"ohem must be in [0, 1] (a probability; 0: off), got {self.ohem}")

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else (1e-3 if self.optimizer == "adamw" else 0.01)

    @property
    def base_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 0.01 if self.optimizer == "adamw" else 1e-4

    def class_table(self) -> ClassTable:
        """The classes of the data: ``classes``, else the folder's classes.json/.csv, else CamVid's."""
        return data_class_table(self.data, self.classes)

    def model_config(self) -> TransUNetConfig:
        """The TransUNetConfig this run trains (``num_classes`` from the class table)."""
        overrides = {"num_classes": self.class_table().num_classes, **self.model_overrides}
        if self.img_size is not None:
            overrides["img_size"] = self.img_size
        return get_config(self.config, **overrides)


# --------------------------------------------------------------------------------------
# the command line, generated from the fields


def cli_fields(cls: type = TrainConfig) -> list[dataclasses.Field]:
    """The fields of ``cls`` (TrainConfig) that have a command-line option, in order."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def option_name(f: dataclasses.Field) -> str:
    """``--batch-size`` for ``batch_size``; ``--no-augment`` for a boolean that defaults to True."""
    name = "--" + f.name.replace("_", "-")
    return name.replace("--", "--no-", 1) if f.default is True else name


def _argument(f: dataclasses.Field, hint) -> dict:
    """``add_argument`` keywords for one field (its type hint decides the kind of option)."""
    kind = hint
    if isinstance(hint, types.UnionType):  # X | None -> X
        kind = next(a for a in typing.get_args(hint) if a is not type(None))
    kwargs = {"dest": f.name, "help": f.metadata["help"]}
    if kind is bool:
        if f.default:
            return {**kwargs, "action": "store_false", "help": "switch off: " + kwargs["help"]}
        return {**kwargs, "action": "store_true"}
    kwargs["default"] = f.default
    if typing.get_origin(kind) is tuple:
        items = typing.get_args(kind)
        kwargs.update(nargs=len(items), type=items[0])
    else:
        kwargs["type"] = kind
    if f.metadata["choices"] is not None:
        kwargs["choices"] = f.metadata["choices"]
    if f.metadata["metavar"] is not None:
        kwargs["metavar"] = f.metadata["metavar"]
    return kwargs


def add_arguments(parser: argparse.ArgumentParser, cls: type = TrainConfig) -> None:
    """Add one option per field of ``cls`` (TrainConfig) to ``parser``, in the fields' groups."""
    hints = typing.get_type_hints(cls)
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for f in cli_fields(cls):
        groups[f.metadata["group"]].add_argument(option_name(f), **_argument(f, hints[f.name]))


def config_from_args(args: argparse.Namespace, cls: type = TrainConfig) -> TrainConfig:
    """The TrainConfig (or ``cls``) of parsed command-line arguments (units converted with ``from_cli``)."""
    values = {}
    for f in cli_fields(cls):
        value = getattr(args, f.name)
        convert = f.metadata["from_cli"]
        values[f.name] = convert(value) if convert is not None and value is not None else value
    return cls(**values)


def explicit_fields(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """TrainConfig fields whose option appears on the command line ``argv``."""
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    names = {f.name for f in cli_fields()}
    return {a.dest for a in parser._actions if a.dest in names and given & set(a.option_strings)}
