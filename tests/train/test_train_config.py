"""tutorial_lib.train.config: the options stated once, and the command line built from them."""

import argparse
import dataclasses
from dataclasses import dataclass

import pytest

from tutorial_lib.data import CAMVID_CLASSES
from tutorial_lib.train import TrainConfig, build_parser, config_from_args
from tutorial_lib.train.config import add_arguments, cli_fields, explicit_fields, option, option_name


def test_config_validation():
    with pytest.raises(ValueError, match="unknown config"):
        TrainConfig(config="huge")
    with pytest.raises(ValueError, match="class_weights"):
        TrainConfig(class_weights="inverse")
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="ohem"):
        TrainConfig(ohem=1.5)
    assert TrainConfig(optimizer="sgd").base_lr == 0.01
    assert TrainConfig().model_config().num_classes == len(CAMVID_CLASSES)
    assert TrainConfig(img_size=[64, 96]).model_config().img_size == (64, 96)
    assert TrainConfig(grad_clip=0).grad_clip is None  # 0 means off, as on the command line


def test_every_option_is_one_field_with_help():
    parser = build_parser()
    options = {a.dest: a for a in parser._actions if a.option_strings}
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata["help"], f"{f.name} has no help text"
        if f.name == "model_overrides":
            assert f.name not in options  # Python only
            continue
        assert options[f.name].option_strings == [option_name(f)]
        assert options[f.name].help.endswith(f.metadata["help"])
    # nothing on the command line that is not a field, except --help and the export mode
    assert set(options) - {f.name for f in cli_fields()} == {"help", "export", "export_dtype"}


def test_defaults_from_the_command_line_equal_the_dataclass_defaults():
    assert config_from_args(build_parser().parse_args([])) == TrainConfig()


def test_command_line_values_reach_their_fields():
    args = build_parser().parse_args([
        "--img-size", "64", "96", "--no-augment", "--cache", "--scale", "0.5", "2", "--grad-clip", "0",
        "--time-limit", "1.5", "--lr", "3e-4", "--no-channels-last", "--no-progress", "--class-weights", "median",
        "--max-val-images", "0", "--momentum", "0.8", "--ohem", "0.7",
    ])
    cfg = config_from_args(args)
    assert cfg.img_size == (64, 96) and cfg.scale == (0.5, 2.0)
    assert not cfg.augment and cfg.cache and not cfg.channels_last and not cfg.progress
    assert cfg.grad_clip is None and cfg.lr == 3e-4 and cfg.momentum == 0.8
    assert cfg.time_limit == 90.0  # minutes on the command line, seconds in the config
    assert cfg.class_weights == "median" and cfg.max_val_images == 0 and cfg.ohem == 0.7
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--precision", "fp8"])  # choices come from the field


def test_explicit_fields_are_those_named_on_the_command_line():
    parser = build_parser()
    argv = ["--epochs", "3", "--no-augment", "--out=runs/x", "--resume"]
    assert explicit_fields(parser, argv) == {"epochs", "augment", "out", "resume"}


def test_a_new_option_is_one_field():
    """What a later option (e.g. a class table for a folder data set) needs: one field, nothing else."""

    @dataclass
    class WithClasses(TrainConfig):
        classes: str | None = option(None, "class table (.json or .csv)", group="data", metavar="FILE")
        sharpen: bool = option(False, "a switch", group="run")

    parser = argparse.ArgumentParser()
    add_arguments(parser, WithClasses)
    cfg = config_from_args(parser.parse_args(["--classes", "c.json", "--sharpen", "--epochs", "2"]), WithClasses)
    assert cfg.classes == "c.json" and cfg.sharpen and cfg.epochs == 2
    assert "class table" in parser.format_help() and "FILE" in parser.format_help()
