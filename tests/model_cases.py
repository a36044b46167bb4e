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
