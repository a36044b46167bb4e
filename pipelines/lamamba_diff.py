"""LaMambaDiffPipeline: class-conditional sampling of LaMamba-Diff, the DiTPipeline way."""

import torch
from diffusers import DDPMScheduler

from .class_conditional import ClassConditionalImagePipeline

LEARNED_VARIANCE_TYPES = ("learned", "learned_range")


def uses_learned_variance(scheduler) -> bool:
    """Only DDPM's step reads the model's variance channels; every other scheduler gets epsilon alone
    (DPM-Solver's own learned-variance path assumes 3 channels, so it must not see them)."""
    return isinstance(scheduler, DDPMScheduler) and scheduler.config.variance_type in LEARNED_VARIANCE_TYPES


class LaMambaDiffPipeline(ClassConditionalImagePipeline):
    """Sample a LaMambaDiffModel (epsilon + learned variance) with any diffusers noise scheduler.

    Components: ``model`` (LaMambaDiffModel, or any DiT-style model with the same call), ``scheduler``
    (DDPMScheduler with ``variance_type="learned_range"`` as trained, or DDIM, DPM-Solver++,
    Euler...), optional ``vae`` (AutoencoderKL for latent models), ``id2label``.
    """

    @torch.no_grad()
    def __call__(
        self,
        class_labels=None,
        num_inference_steps: int = 250,
        guidance_scale: float = 4.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] = ("latents",),
        batch_size: int | None = None,
        guidance_channels: int | None = None,
    ):
        """Generate images.

        Args:
            class_labels: class ids or names (one or a list); None with ``batch_size`` for an
                unconditional model.
            num_inference_steps: scheduler steps (250 as the paper samples with DDPM).
            guidance_scale: classifier-free guidance on the epsilon channels; <= 1 disables it.
            guidance_channels: guide only the first k epsilon channels (3 reproduces DiT's sampler).
            generator, latents, output_type ("pil", "np", "pt", "latent"), return_dict,
            callback_on_step_end(pipe, step, timestep, tensors) -> tensors: as in diffusers.
        Returns:
            ``ImagePipelineOutput(images)`` or a tuple.
        """
        # 1. Check inputs and encode the class conditions.
        ids, batch, use_cfg = self.check_and_prepare_labels(
            class_labels, batch_size, num_inference_steps, guidance_scale, output_type
        )
        channels = self.model.config.in_channels
        if guidance_channels is not None and not 0 < guidance_channels <= channels:
            raise ValueError(f"guidance_channels must be in 1..{channels}, got {guidance_channels!r}")
        model_labels = self.labels_for_model(ids, batch, use_cfg)
        learned_variance = uses_learned_variance(self.scheduler)

        # 2. Prepare the noise and the timesteps.
        latents = self.prepare_latents(batch, latents, generator)
        self.scheduler.set_timesteps(num_inference_steps, device=self._execution_device)
        step_kwargs = self.scheduler_step_kwargs(generator)

        # 3. Denoise.
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            model_input = torch.cat([latents, latents]) if use_cfg else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            timesteps = t.expand(model_input.shape[0])  # diffusers' DiT wants one per sample
            output = self.model(model_input, timesteps, model_labels).sample
            eps, variance = output[:, :channels], output[:, channels:]
            if use_cfg:
                cond, uncond = eps.chunk(2)
                k = guidance_channels or channels
                guided = uncond[:, :k] + guidance_scale * (cond[:, :k] - uncond[:, :k])
                eps = torch.cat([guided, cond[:, k:]], dim=1)
                variance = variance.chunk(2)[0]
            has_variance = variance.shape[1] == channels
            model_output = torch.cat([eps, variance], dim=1) if learned_variance and has_variance else eps
            latents = self.scheduler.step(model_output, t, latents, **step_kwargs).prev_sample
            if callback_on_step_end is not None:
                latents = self.run_callback(callback_on_step_end, i, t, latents, callback_on_step_end_tensor_inputs)

        # 4. Decode and post-process.
        return self.finish(self.decode(latents, output_type), return_dict)
