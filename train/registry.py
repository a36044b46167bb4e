"""Model families the training loop knows: how to build, call and export each one.

Adding a model to ``ssmgen.train`` is one :func:`register_family` call. A family says

* ``build(preset, kwargs)``: the model from a preset name (or ``None``) and constructor arguments;
* ``preset_names()``: the presets ``model.preset`` may name;
* ``data_kwargs(data_info, objective)``: constructor arguments the data and objective imply (channels, size,
  classes, learned-sigma outputs); a config that sets one of them differently is rejected;
* ``objectives`` and ``data_kinds`` it supports, and whether it takes ``class_labels``: ``ignored`` (trains
  unconditionally on any data), ``required`` (needs class-labelled data) or ``optional`` (conditional on
  labelled data, unconditional otherwise);
* ``export_pipeline(model, objective, data_info)``: a ``DiffusionPipeline`` around the trained (EMA) model
  that ``save_pretrained`` writes and ``DiffusionPipeline.from_pretrained`` loads;
* ``drops_conditions_itself``: the model's label embedder does classifier-free-guidance dropout in ``train()``
  (given ``cond_dropout_prob`` through ``data_kwargs``); otherwise the loop replaces labels by the null class
  id ``num_classes``.

The loop calls every such model as ``model(sample, timestep, class_labels=..., return_dict=False)[0]`` (the
``DiTTransformer2DModel`` convention the ssmgen models follow), without ``class_labels`` for unconditional
families. That recipe is the loop's default :class:`FamilyHooks` (``ImageHooks`` in ``loop.py``).

A family whose training needs more (frozen encoders around the model, a loss that is not a denoising
objective, its own pipeline export: the motion families in ``motion.py``) gives ``hooks(config, data_info,
objective) -> FamilyHooks`` instead of ``data_kwargs`` and ``export_pipeline``, and names the optional
``model.*`` keys it reads in ``config_keys`` (``check_config`` checks their values before anything is built).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from diffusers import (
    AutoencoderKL,
    DDPMPipeline,
    DiffusionPipeline,
    DiTTransformer2DModel,
    ModelMixin,
    UNet2DModel,
)
from diffusers.models.embeddings import LabelEmbedding

from ssmgen.models.dimsum import PRESETS as DIMSUM_PRESETS
from ssmgen.models.dimsum import DiMSUMModel
from ssmgen.models.lamamba_diff import PRESETS as LAMAMBA_DIFF_PRESETS
from ssmgen.models.lamamba_diff import LaMambaDiffModel

from .config import TrainConfig
from .data import DataInfo, check_data_config
from .objectives import OBJECTIVES, Objective


class FamilyHooks(Protocol):
    """What the loop does with one family's model during one run (see the module docstring)."""

    def build_model(self) -> ModelMixin:
        """The model to train, sized for the data (and for the frozen parts, if any)."""

    def prepare_batch(self, batch: Any, device: torch.device) -> dict[str, Any]:
        """A collated batch from the data loader -> what ``loss`` takes, on ``device``."""

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scalar training loss of ``model`` (possibly wrapped by accelerate) and extra scalar metrics."""

    def export_pipeline(self, model: ModelMixin) -> Any:
        """What ``save_pretrained`` writes to ``output_dir/pipeline``, around a copy of the model (EMA weights)."""

    def log_samples(self, pipeline: Any, trackers: Any, step: int, device: torch.device) -> None:
        """Sample from the exported pipeline and log the result to ``trackers`` (main process only)."""


@dataclass(frozen=True)
class ModelFamily:
    """Everything the loop needs to know about one kind of model (see the module docstring)."""

    name: str
    model_cls: type[ModelMixin]
    build: Callable[[str | None, dict[str, Any]], ModelMixin]
    preset_names: Callable[[], Sequence[str]]
    objectives: tuple[str, ...]
    data_kinds: tuple[str, ...]
    class_labels: Literal["ignored", "required", "optional"]
    data_kwargs: Callable[[DataInfo, Objective, float], dict[str, Any]] | None = None
    """``(data_info, objective, cond_dropout_prob) -> constructor arguments``."""
    export_pipeline: Callable[[ModelMixin, Objective, DataInfo], DiffusionPipeline] | None = None
    drops_conditions_itself: bool = False
    hooks: Callable[[TrainConfig, DataInfo, Objective, ModelFamily], FamilyHooks] | None = None
    """``hooks(config, data_info, objective, family)``: replaces the image recipe (``data_kwargs``,
    ``export_pipeline``, class labels) when given."""
    config_keys: tuple[str, ...] = ()
    """Optional ``model.*`` keys the family reads (``vae``, ``text_encoder``); other families reject them."""
    check_config: Callable[[TrainConfig], None] | None = None
    """Checks of the family's own settings that need no data or weights (raises ``ValueError``)."""

    def __post_init__(self):
        if self.hooks is None and (self.data_kwargs is None or self.export_pipeline is None):
            raise ValueError(f"model family {self.name!r}: give hooks, or data_kwargs and export_pipeline")


FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Make ``family`` available as ``model.family: <name>``."""
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> ModelFamily:
    if name not in FAMILIES:
        raise ValueError(f"model.family: unknown model family {name!r}; allowed: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def table_builder(model_cls: type[ModelMixin], presets: dict[str, dict[str, Any]]) -> Callable[..., ModelMixin]:
    """``build`` for a model without ``from_preset``: preset arguments from ``presets``, then ``kwargs``."""

    def build(preset: str | None, kwargs: dict[str, Any]) -> ModelMixin:
        return model_cls(**{**(presets[preset] if preset else {}), **kwargs})

    return build


def from_preset_builder(model_cls: Any) -> Callable[..., ModelMixin]:
    """``build`` for an ssmgen model: ``model_cls.from_preset(preset, **kwargs)``, or the class itself."""

    def build(preset: str | None, kwargs: dict[str, Any]) -> ModelMixin:
        return model_cls.from_preset(preset, **kwargs) if preset else model_cls(**kwargs)

    return build


# --------------------------------------------------------------------------------------------------
# Checks and construction shared by every family
# --------------------------------------------------------------------------------------------------


def validate_config(config: TrainConfig) -> ModelFamily:
    """Every check that needs no data or weights, so a bad config fails before anything is built."""
    family = get_family(config.model.family)
    presets = list(family.preset_names())
    if config.model.preset is not None and config.model.preset not in presets:
        raise ValueError(
            f"model.preset: unknown preset {config.model.preset!r} for model.family {family.name!r}; "
            f"allowed: {', '.join(presets) or '(none)'}"
        )
    allowed_kwargs = constructor_arguments(family.model_cls)
    for key in config.model.kwargs:
        if key not in allowed_kwargs:
            raise ValueError(
                f"model.kwargs.{key}: {family.model_cls.__name__} has no argument {key!r}; "
                f"allowed: {', '.join(allowed_kwargs)}"
            )
    if config.objective.name not in OBJECTIVES:
        raise ValueError(
            f"objective.name: unknown objective {config.objective.name!r}; allowed: {', '.join(OBJECTIVES)}"
        )
    if config.objective.name not in family.objectives:
        raise ValueError(
            f"objective.name: {config.objective.name!r} is not supported by model.family {family.name!r}; "
            f"allowed: {', '.join(family.objectives)}"
        )
    spec = check_data_config(config.data)
    if spec.kind not in family.data_kinds:
        raise ValueError(
            f"data.dataset: {config.data.dataset!r} holds {spec.kind} data, "
            f"which model.family {family.name!r} "
            f"cannot train on; it takes: {', '.join(family.data_kinds)}"
        )
    for key in OPTIONAL_MODEL_KEYS:
        if getattr(config.model, key) is not None and key not in family.config_keys:
            raise ValueError(f"model.{key}: model.family {family.name!r} does not use it; remove it")
    check_numbers(config)
    if family.check_config is not None:
        family.check_config(config)
    return family


OPTIONAL_MODEL_KEYS = ("vae", "text_encoder")


def check_numbers(config: TrainConfig) -> None:
    """Ranges of the numeric settings (types were checked when the config was read)."""
    positive = {
        "max_steps": config.max_steps,
        "optim.lr": config.optim.lr,
        "optim.gradient_accumulation_steps": config.optim.gradient_accumulation_steps,
        "objective.num_train_timesteps": config.objective.num_train_timesteps,
        "logging.every_steps": config.logging.every_steps,
        "logging.num_samples": config.logging.num_samples,
        "logging.sample_inference_steps": config.logging.sample_inference_steps,
    }
    non_negative = {
        "optim.weight_decay": config.optim.weight_decay,
        "optim.warmup_steps": config.optim.warmup_steps,
        "checkpoint.every_steps": config.checkpoint.every_steps,
        "checkpoint.export_every_steps": config.checkpoint.export_every_steps,
        "logging.sample_every_steps": config.logging.sample_every_steps,
        "objective.vlb_weight": config.objective.vlb_weight,
        "objective.kl_weight": config.objective.kl_weight,
        "objective.joints_weight": config.objective.joints_weight,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ValueError(f"{key} must be > 0, got {value}")
    for key, value in non_negative.items():
        if value < 0:
            raise ValueError(f"{key} must be >= 0, got {value}")
    if config.optim.max_grad_norm is not None and config.optim.max_grad_norm <= 0:
        raise ValueError(f"optim.max_grad_norm must be > 0 or null, got {config.optim.max_grad_norm}")
    if config.checkpoint.total_limit is not None and config.checkpoint.total_limit < 1:
        raise ValueError(f"checkpoint.total_limit must be >= 1 or null, got {config.checkpoint.total_limit}")
    if not 0.0 <= config.model.cond_dropout_prob < 1.0:
        raise ValueError(f"model.cond_dropout_prob must be in [0, 1), got {config.model.cond_dropout_prob}")
    if not 0.0 <= config.ema.decay < 1.0:
        raise ValueError(f"ema.decay must be in [0, 1), got {config.ema.decay}")


def constructor_arguments(model_cls: type) -> list[str]:
    """Names ``model_cls.__init__`` accepts (what ``model.kwargs`` may set)."""
    parameters = inspect.signature(model_cls.__init__).parameters
    return [name for name, p in parameters.items() if name != "self" and p.kind is not p.VAR_KEYWORD]


def build_model(family: ModelFamily, config: TrainConfig, implied: dict[str, Any]) -> ModelMixin:
    """The family's model from ``model.preset`` and ``model.kwargs`` with the constructor arguments the data
    (and frozen parts) imply, which ``model.kwargs`` may not contradict."""
    for key, value in config.model.kwargs.items():
        if key in implied and implied[key] != value:
            raise ValueError(
                f"model.kwargs.{key}={value!r} contradicts the data/objective, "
                f"which need {key}={implied[key]!r}; "
                "remove it from model.kwargs"
            )
    return family.build(config.model.preset, {**config.model.kwargs, **implied})


def image_model_kwargs(family: ModelFamily, config: TrainConfig, data_info: DataInfo, objective: Objective):
    """The constructor arguments an image family's data imply (after checking it gets the labels it needs)."""
    if family.class_labels == "required" and data_info.num_classes is None:
        raise ValueError(
            f"model.family {family.name!r} is class-conditional but data.dataset {config.data.dataset!r} "
            "has no "
            "class labels (put the images in one subfolder per class)"
        )
    return family.data_kwargs(data_info, objective, config.model.cond_dropout_prob)


def uses_class_labels(family: ModelFamily, data_info: DataInfo) -> bool:
    """Whether the model is trained (and sampled) with the data's class labels."""
    return family.class_labels != "ignored" and data_info.num_classes is not None


def predict(
    model: torch.nn.Module, sample: torch.Tensor, timesteps: torch.Tensor, batch: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Model output for ``sample`` at ``timesteps``, with the batch's ``class_labels`` if it carries them."""
    if "class_labels" in batch:
        return model(sample, timesteps, class_labels=batch["class_labels"], return_dict=False)[0]
    return model(sample, timesteps, return_dict=False)[0]


# --------------------------------------------------------------------------------------------------
# Baselines: diffusers' UNet2DModel (DDPM) and DiTTransformer2DModel (DiT)
# --------------------------------------------------------------------------------------------------

UNET2D_PRESETS: dict[str, dict[str, Any]] = {
    # Smallest useful U-Net: two resolutions, attention at the lower one. For tests and the digits demo.
    "tiny": {
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
        "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
        "norm_num_groups": 8,
        "attention_head_dim": 16,
    },
    # The layout of DDPM's CIFAR-10 network (Ho et al. 2020): channel multipliers (1, 2, 2, 2), two residual
    # blocks per resolution, single-head self-attention at 16x16, dropout 0.1.
    "ddpm-cifar10": {
        "block_out_channels": (128, 256, 256, 256),
        "layers_per_block": 2,
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        "attention_head_dim": None,
        "dropout": 0.1,
    },
}


def unet2d_data_kwargs(data: DataInfo, objective: Objective, cond_dropout_prob: float) -> dict[str, Any]:
    channels = data.channels
    return {
        "sample_size": data.sample_size,
        "in_channels": channels,
        "out_channels": objective.output_channels(channels),
    }


def export_ddpm_pipeline(model: ModelMixin, objective: Objective, data: DataInfo) -> DiffusionPipeline:
    """diffusers' ``DDPMPipeline``; pixel data is in [-1, 1], so the scheduler clips its x0 predictions."""
    return DDPMPipeline(unet=model, scheduler=objective.make_scheduler(pixel_space=True))


register_family(
    ModelFamily(
        name="unet2d",
        model_cls=UNet2DModel,
        build=table_builder(UNet2DModel, UNET2D_PRESETS),
        preset_names=lambda: list(UNET2D_PRESETS),
        data_kwargs=unet2d_data_kwargs,
        objectives=("eps", "eps_vlb"),
        data_kinds=("image",),
        class_labels="ignored",
        export_pipeline=export_ddpm_pipeline,
    )
)


def class_conditional_unet2d_data_kwargs(data: DataInfo, objective: Objective, cond_dropout_prob: float) -> dict:
    """diffusers' UNet2DModel adds a class embedding to the timestep embedding; one row more holds the null
    class the loop drops labels to."""
    return unet2d_data_kwargs(data, objective, cond_dropout_prob) | {"num_class_embeds": data.num_classes + 1}


# DiT sizes from Peebles & Xie 2023, Table 1 (hidden = heads x head_dim), with patch sizes 2, 4 and 8.
DIT_SIZES = {"S": (12, 6, 64), "B": (12, 12, 64), "L": (24, 16, 64), "XL": (28, 16, 72)}
DIT_PRESETS: dict[str, dict[str, Any]] = {
    f"DiT-{size}/{patch}": {
        "num_layers": depth,
        "num_attention_heads": heads,
        "attention_head_dim": head_dim,
        "patch_size": patch,
    }
    for size, (depth, heads, head_dim) in DIT_SIZES.items()
    for patch in (2, 4, 8)
}
DIT_PRESETS["tiny"] = {"num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 16, "patch_size": 2}


def dit_data_kwargs(data: DataInfo, objective: Objective, cond_dropout_prob: float) -> dict[str, Any]:
    return {
        "sample_size": data.sample_size,
        "in_channels": data.channels,
        "out_channels": objective.output_channels(data.channels),
        "num_embeds_ada_norm": data.num_classes,
    }


def build_dit(preset: str | None, kwargs: dict[str, Any]) -> DiTTransformer2DModel:
    """diffusers' DiT with its label dropout switched off: the loop drops labels instead.

    diffusers' DiT gives every block its own label embedder, each dropping labels independently in ``train()``
    with a fixed probability of 0.1; the original DiT drops a label once for the whole network. Setting the
    embedders' probability to 0 (their null-class row, index ``num_classes``, stays) and letting the loop drop
    labels restores DiT's behaviour and makes ``model.cond_dropout_prob`` work.
    """
    model = table_builder(DiTTransformer2DModel, DIT_PRESETS)(preset, kwargs)
    for module in model.modules():
        if isinstance(module, LabelEmbedding):
            module.dropout_prob = 0.0
    return model


def class_conditional_exporter(
    pipeline_class_name: str,
) -> Callable[[ModelMixin, Objective, DataInfo], DiffusionPipeline]:
    """``export_pipeline`` for an ``ssmgen.pipelines`` class-conditional image pipeline (LaMambaDiffPipeline for
    DiT-style eps / learned-sigma models, DiMSUMPipeline for flow models).

    Latent data bring the ``AutoencoderKL`` their cache names; pixel data have none. The class names become
    the pipeline's ``id2label``; the objective provides the matching sampling scheduler.
    """

    def export(model: ModelMixin, objective: Objective, data: DataInfo) -> DiffusionPipeline:
        import ssmgen.pipelines

        vae = None
        if data.kind == "latent":
            vae = AutoencoderKL.from_pretrained(data.vae, subfolder=data.vae_subfolder)
        id2label = dict(enumerate(data.class_names)) if data.class_names else None
        scheduler = objective.make_scheduler(pixel_space=data.kind == "image")
        pipeline_class = getattr(ssmgen.pipelines, pipeline_class_name)
        return pipeline_class(model=model, scheduler=scheduler, vae=vae, id2label=id2label)

    return export


export_class_conditional_pipeline = class_conditional_exporter("LaMambaDiffPipeline")


register_family(
    ModelFamily(
        name="dit",
        model_cls=DiTTransformer2DModel,
        build=build_dit,
        preset_names=lambda: list(DIT_PRESETS),
        data_kwargs=dit_data_kwargs,
        objectives=("eps", "eps_vlb"),
        data_kinds=("image", "latent"),
        class_labels="required",
        export_pipeline=export_class_conditional_pipeline,
    )
)


# --------------------------------------------------------------------------------------------------
# ssmgen models
# --------------------------------------------------------------------------------------------------


def ssmgen_image_data_kwargs(data: DataInfo, objective: Objective, cond_dropout_prob: float) -> dict[str, Any]:
    """LaMamba-Diff and DiMSUM drop labels themselves (null id ``num_classes``); ``num_classes=0`` is
    unconditional; learned sigma follows the objective."""
    return {
        "sample_size": data.sample_size,
        "in_channels": data.channels,
        "num_classes": data.num_classes or 0,
        "class_dropout_prob": cond_dropout_prob if data.num_classes else 1.0,
        "learn_sigma": objective.output_channels(data.channels) == 2 * data.channels,
    }


register_family(
    ModelFamily(
        name="lamamba_diff",
        model_cls=LaMambaDiffModel,
        build=from_preset_builder(LaMambaDiffModel),
        preset_names=lambda: list(LAMAMBA_DIFF_PRESETS),
        data_kwargs=ssmgen_image_data_kwargs,
        objectives=("eps_vlb", "eps"),
        data_kinds=("image", "latent"),
        class_labels="optional",
        export_pipeline=export_class_conditional_pipeline,
        drops_conditions_itself=True,
    )
)


register_family(
    ModelFamily(
        name="dimsum",
        model_cls=DiMSUMModel,
        build=from_preset_builder(DiMSUMModel),
        preset_names=lambda: list(DIMSUM_PRESETS),
        data_kwargs=ssmgen_image_data_kwargs,
        objectives=("flow",),
        data_kinds=("image", "latent"),
        class_labels="optional",
        export_pipeline=class_conditional_exporter("DiMSUMPipeline"),
        drops_conditions_itself=True,
    )
)


register_family(
    ModelFamily(
        name="unet2d_class",
        model_cls=UNet2DModel,
        build=table_builder(UNet2DModel, UNET2D_PRESETS),
        preset_names=lambda: list(UNET2D_PRESETS),
        data_kwargs=class_conditional_unet2d_data_kwargs,
        objectives=("eps", "eps_vlb"),
        data_kinds=("image",),
        class_labels="required",
        export_pipeline=class_conditional_exporter("LaMambaDiffPipeline"),
    )
)
