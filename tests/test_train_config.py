"""Configs: YAML + overrides with type checks, and validation that names the key and the allowed values."""

from pathlib import Path

import pytest
import yaml

from ssmgen.train.__main__ import main
from ssmgen.train.config import TrainConfig, load_config
from ssmgen.train.data import DATASETS
from ssmgen.train.registry import FAMILIES, validate_config

CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_yaml_and_overrides_are_typed(tmp_path):
    path = write(
        tmp_path,
        "max_steps: 5\noptim: {lr: 1e-4, betas: [0.9, 0.95]}\nmodel: {family: dit, kwargs: {num_layers: 1}}\n",
    )
    config = load_config(path, ["--optim.max_grad_norm", "null", "--model.kwargs.patch_size=4", "--seed", "3"])
    assert isinstance(config, TrainConfig)
    assert config.optim.lr == 1e-4 and isinstance(config.optim.lr, float)  # PyYAML reads "1e-4" as a string
    assert config.optim.betas == (0.9, 0.95)
    assert config.optim.max_grad_norm is None
    assert config.model.kwargs == {"num_layers": 1, "patch_size": 4}
    assert config.seed == 3 and config.max_steps == 5
    assert config.data.dataset == "digits"  # defaults fill the rest


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--optim.lrr", "1"], r"unknown config key 'optim.lrr'; allowed keys in 'optim': lr, betas"),
        (["--bogus", "1"], r"unknown config key 'bogus'; allowed keys: output_dir, max_steps"),
        (["--max_steps", "ten"], r"max_steps: expected an integer, got 'ten'"),
        (["--optim.lr", "fast"], r"optim.lr: expected a number, got 'fast'"),
        (["--mixed_precision", "fp8"], r"mixed_precision: expected one of 'no', 'fp16', 'bf16', got 'fp8'"),
        (["--optim.betas", "[0.9]"], r"optim.betas: expected a list of 2 values"),
        (
            ["--logging.trackers", "[tensorboard, mlflow]"],
            r"logging.trackers\[1\]: expected one of 'tensorboard'",
        ),
        (["--model", "dit"], r"model must be a mapping"),
        (["--data.random_flip", "1"], r"data.random_flip: expected true or false, got 1"),
        (["--resume"], r"override '--resume' has no value"),
        (["latest"], r"overrides must look like '--key value'"),
    ],
)
def test_bad_keys_and_values_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["--model.family", "unet3d"],
            r"model.family: unknown model family 'unet3d'; allowed: .*dit.*unet2d",
        ),
        (
            ["--model.preset", "huge"],
            r"model.preset: unknown preset 'huge' for model.family 'unet2d'; allowed: tiny",
        ),
        (
            ["--model.kwargs.depth", "3"],
            r"model.kwargs.depth: UNet2DModel has no argument 'depth'; allowed: .*sample_size",
        ),
        (
            ["--objective.name", "flow"],
            r"objective.name: 'flow' is not supported by model.family 'unet2d'; allowed: eps",
        ),
        (["--objective.name", "x0"], r"objective.name: unknown objective 'x0'; allowed: eps, eps_vlb, flow"),
        (
            ["--data.dataset", "cifar"],
            r"data.dataset: unknown dataset 'cifar'; allowed: digits, image_folder, latents",
        ),
        (["--data.dataset", "image_folder"], r"data.path is required for data.dataset 'image_folder'"),
        (
            ["--data.dataset", "latents", "--data.path", "/no/such/dir"],
            r"data.path: folder '/no/such/dir' does not exist",
        ),
        (["--max_steps", "0"], r"max_steps must be > 0, got 0"),
        (["--optim.max_grad_norm", "-1"], r"optim.max_grad_norm must be > 0 or null"),
        (["--model.cond_dropout_prob", "1.5"], r"model.cond_dropout_prob must be in \[0, 1\)"),
        (["--checkpoint.total_limit", "0"], r"checkpoint.total_limit must be >= 1 or null"),
    ],
)
def test_validation_names_the_key_and_the_allowed_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        validate_config(load_config(None, ["--model.family", "unet2d", *overrides]))


def test_flip_is_refused_for_latents(tmp_path):
    config = load_config(None, ["--model.family", "dit", "--data.dataset", "latents", "--data.path", str(tmp_path)])
    config.data.random_flip = True
    with pytest.raises(ValueError, match="data.random_flip works on pixels only"):
        validate_config(config)


def test_cli_reports_config_errors_before_training(tmp_path, capsys):
    status = main(["--config", str(write(tmp_path, "model: {family: mamba9000}\n")), "--output_dir", str(tmp_path)])
    assert status == 2
    assert "model.family: unknown model family 'mamba9000'" in capsys.readouterr().err
    assert not (tmp_path / "train_config.yaml").exists()  # nothing ran
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-3" / "training_state.json").write_text("{}")
    assert main(["--output_dir", str(tmp_path), "--optim.max_grad_norm", "-1"]) == 2
    assert "optim.max_grad_norm must be > 0 or null, got -1" in capsys.readouterr().err
    assert main(["--output_dir", str(tmp_path)]) == 2
    assert "already holds checkpoints; pass --resume latest" in capsys.readouterr().err


def shipped_configs() -> list[Path]:
    return sorted(p for p in CONFIGS.glob("*.yaml"))


def test_every_shipped_config_is_a_yaml_mapping():
    paths = shipped_configs()
    names = {p.stem for p in paths}
    assert {"digits_unet2d", "digits_dit", "tiny_unet2d", "tiny_dit", "tiny_lamamba_diff"} <= names
    assert {"lamamba_diff_xl_imagenet256", "dimsum_l2_imagenet256", "motion_mamba_humanml3d_vae"} <= names
    for path in paths:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: p.stem)
def test_shipped_configs_of_registered_families_validate(path, tmp_path):
    """Configs whose model family is registered pass every check (data folders replaced by a temp dir)."""
    family = yaml.safe_load(path.read_text())["model"]["family"]
    if family not in FAMILIES:
        assert family in {"lamamba_diff", "dimsum", "motion_vae", "motion_mamba", "mld"}, family
        return
    config = load_config(path)
    if DATASETS[config.data.dataset].needs_path:
        config.data.path = str(tmp_path)
    validate_config(config)
