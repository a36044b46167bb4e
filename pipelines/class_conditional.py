"""What the class-conditional image pipelines share: labels, latents, decoding, output types.

LaMambaDiffPipeline and DiMSUMPipeline differ only in their denoising loop; everything around it
(class ids or names, classifier-free guidance batching, checks, latents, the optional
AutoencoderKL, post-processing) lives here once.
"""

import inspect

import numpy as np
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from .arguments import check_sampling_arguments

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


class ClassConditionalImagePipeline(DiffusionPipeline):
    """Base of the image pipelines: components ``model``, ``scheduler`` and an optional ``vae``.

    ``id2label`` maps class ids to names (comma-separated synonyms allowed, as in DiTPipeline) so
    ``class_labels`` may be names; it is saved with the pipeline.
    """

    model_cpu_offload_seq = "model->vae"
    _optional_components = ["vae"]
    _callback_tensor_inputs = ["latents"]

    def __init__(self, model, scheduler, vae=None, id2label: dict | None = None):
        super().__init__()
        self.register_modules(model=model, scheduler=scheduler, vae=vae)
        id2label = {int(k): v for k, v in (id2label or {}).items()}
        self.register_to_config(id2label={str(k): v for k, v in id2label.items()} or None)
        self.labels = {}
        for key, value in id2label.items():
            for name in value.split(","):
                self.labels[name.strip()] = key

    @property
    def num_classes(self) -> int:
        """Classes of the model, in ssmgen's convention (``num_classes``, null id = ``num_classes``) or the
        diffusers baselines' (DiT's ``num_embeds_ada_norm``; UNet2DModel's ``num_class_embeds`` with its
        last row as the null class, as ssmgen's training loop builds it)."""
        config = self.model.config
        if "num_classes" in config:
            return config.num_classes
        if config.get("num_embeds_ada_norm") is not None:
            return config.num_embeds_ada_norm
        if config.get("num_class_embeds") is not None:
            return config.num_class_embeds - 1
        return 0

    def class_ids(self, class_labels) -> list[int]:
        """Class ids from ids or names (a single one or a list); raises ValueError on unknown ones."""
        items = class_labels.tolist() if isinstance(class_labels, torch.Tensor) else class_labels
        items = items if isinstance(items, list | tuple) else [items]
        ids = []
        for item in items:
            if isinstance(item, str):
                if item not in self.labels:
                    raise ValueError(f"class_labels: unknown label {item!r}; known labels: {sorted(self.labels)}")
                item = self.labels[item]
            if isinstance(item, bool) or not isinstance(item, int | np.integer):
                raise ValueError(f"class_labels must be class ids or names, got {item!r}")
            if not 0 <= item < self.num_classes:
                raise ValueError(f"class_labels: id {item} is outside [0, {self.num_classes - 1}]")
            ids.append(int(item))
        if not ids:
            raise ValueError("class_labels must name at least one class")
        return ids

    def check_and_prepare_labels(self, class_labels, batch_size, num_inference_steps, guidance_scale, output_type):
        """Validate the shared arguments; return (class ids tensor or None, batch size, use CFG)."""
        check_sampling_arguments(num_inference_steps, guidance_scale, output_type, OUTPUT_TYPES)
        if self.num_classes == 0:
            if class_labels is not None:
                raise ValueError("class_labels: this model is unconditional; pass batch_size instead")
            if not isinstance(batch_size, int) or batch_size <= 0:
                raise ValueError(
                    f"batch_size must be a positive integer for an unconditional model, got {batch_size!r}"
                )
            return None, batch_size, False
        if class_labels is None:
            raise ValueError("class_labels are required: this model is class-conditional")
        ids = torch.tensor(self.class_ids(class_labels), device=self._execution_device)
        return ids, len(ids), guidance_scale > 1

    def labels_for_model(self, ids: torch.Tensor | None, batch_size: int, use_cfg: bool) -> torch.Tensor:
        """(B,) or, with guidance, (2B,) labels: the conditional half first, then the null class."""
        if ids is None:
            return torch.zeros(batch_size, dtype=torch.long, device=self._execution_device)
        if not use_cfg:
            return ids
        return torch.cat([ids, torch.full_like(ids, self.num_classes)])

    def prepare_latents(self, batch_size, latents, generator) -> torch.Tensor:
        """Initial noise (B, C, S, S) scaled by the scheduler, or the given latents after a shape check."""
        config = self.model.config
        shape = (batch_size, config.in_channels, config.sample_size, config.sample_size)
        dtype = self.model.dtype
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self._execution_device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        else:
            latents = latents.to(device=self._execution_device, dtype=dtype)
        return latents * self.scheduler.init_noise_sigma

    def scheduler_step_kwargs(self, generator) -> dict:
        """Pass ``generator`` to schedulers whose step is stochastic (DDPM, DDIM with eta...)."""
        return {"generator": generator} if "generator" in inspect.signature(self.scheduler.step).parameters else {}

    def run_callback(self, callback, step: int, timestep, latents: torch.Tensor, tensor_inputs) -> torch.Tensor:
        """diffusers' ``callback_on_step_end(pipe, step, timestep, {"latents": ...})``; it may replace latents."""
        unknown = set(tensor_inputs) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs: only {self._callback_tensor_inputs} are available")
        return callback(self, step, timestep, {"latents": latents}).get("latents", latents)

    def decode(self, latents: torch.Tensor, output_type: str):
        """Latents -> images in the requested output type (VAE decoding when a VAE is present)."""
        if output_type == "latent":
            return latents
        if self.vae is not None:
            latents = latents / self.vae.config.scaling_factor
            images = self.vae.decode(latents.to(self.vae.dtype)).sample
        else:
            images = latents
        images = (images.float() / 2 + 0.5).clamp(0, 1)
        if output_type == "pt":
            return images
        images = images.permute(0, 2, 3, 1).cpu().numpy()
        return self.numpy_to_pil(images) if output_type == "pil" else images

    def finish(self, images, return_dict: bool):
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)
