"""Input checks and timestep handling shared by the image denoisers."""

import torch


def check_sample(sample: torch.Tensor, in_channels: int) -> None:
    """Raise ValueError unless ``sample`` is a floating (B, in_channels, H, W) tensor."""
    if not isinstance(sample, torch.Tensor) or sample.dim() != 4 or sample.shape[1] != in_channels:
        shape = tuple(sample.shape) if isinstance(sample, torch.Tensor) else type(sample).__name__
        raise ValueError(f"sample must be (batch, {in_channels}, height, width), got {shape}")
    if not sample.is_floating_point():
        raise ValueError(f"sample must be a floating-point tensor, got {sample.dtype}")


def broadcast_timesteps(timestep: torch.Tensor | int | float, batch: int, device: torch.device) -> torch.Tensor:
    """A scalar or (batch,) timestep as a (batch,) tensor on ``device`` (integer steps or continuous t)."""
    t = torch.as_tensor(timestep, device=device)
    if t.dim() == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"timestep must be a scalar or have shape ({batch},), got {tuple(t.shape)}")
    return t
