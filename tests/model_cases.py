"""Helpers shared by the model and pipeline tests."""

import torch


def randomize_(model: torch.nn.Module, scale: float = 0.05, seed: int = 1) -> torch.nn.Module:
    """Perturb every weight so that zero-initialised branches (adaLN-Zero gates, output layers) take part
    in a comparison instead of hiding behind exact zeros."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model


def image_inputs(timesteps: list, batch: int = 2, channels: int = 4, size: int = 8):
    """(sample (batch, channels, size, size), timesteps (batch,), class labels (batch,)) for a denoiser."""
    gen = torch.Generator().manual_seed(2)
    return (
        torch.randn(batch, channels, size, size, generator=gen),
        torch.tensor(timesteps[:batch]),
        torch.tensor([1, 7][:batch]),
    )


BAD_CLASS_CONDITIONAL_ARGUMENTS = [
    (dict(class_labels=[10]), "class_labels"),
    (dict(class_labels=["eleven"]), "class_labels"),
    (dict(class_labels=[]), "class_labels"),
    (dict(class_labels=None), "class_labels"),
    (dict(latents=torch.zeros(2, 3, 4, 4)), "latents"),
    (dict(num_inference_steps=0), "num_inference_steps"),
    (dict(guidance_scale=-1.0), "guidance_scale"),
    (dict(output_type="jpeg"), "output_type"),
]
"""(pipeline kwargs, the argument the ValueError must name) for a 10-class pipeline with 3x8x8 samples."""
