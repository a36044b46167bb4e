"""What the motion denoisers share: MLD's condition tokens, input checks and the output type.

MLD (``mld/models/architectures/mld_denoiser.py``) turns its two conditions into one token each:

- time: diffusers' ``Timesteps(768, flip_sin_to_cos=True, downscale_freq_shift=0)`` -> Linear(768, d) ->
  SiLU -> Linear(d, d), which is exactly ssmgen's DiT ``TimestepEmbedder(d, frequency_embedding_size=768)``
  ([cos, sin] features, max period 1e4);
- text: the pooled sentence embedding (CLIP ``get_text_features``, 768-d) -> ReLU -> Linear(768, d).
"""

from dataclasses import dataclass

import torch
from diffusers.utils import BaseOutput
from torch import nn

from ssmgen.layers.embeddings import TimestepEmbedder

from .conditioning import broadcast_timesteps


@dataclass
class MotionDenoiserOutput(BaseOutput):
    """``sample``: the predicted noise, shaped like the input sample. ``state``: with ``return_state``
    (frame mode), one ``MambaState`` per HTM layer to continue the sequence from."""

    sample: torch.Tensor
    state: tuple | None = None


class MotionConditionEmbedder(nn.Module):
    """MLD's condition tokens: (timestep (B,), pooled text (B, text_dim)) -> (B, 2, hidden) = [time, text]."""

    def __init__(self, hidden_size: int, text_dim: int, time_embed_dim: int = 768):
        super().__init__()
        self.text_dim = text_dim
        self.time_embedding = TimestepEmbedder(hidden_size, frequency_embedding_size=time_embed_dim)
        self.text_proj = nn.Sequential(nn.ReLU(), nn.Linear(text_dim, hidden_size))

    def forward(self, timestep: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.time_embedding(timestep).to(text.dtype), self.text_proj(text)], dim=1)


def pooled_text(encoder_hidden_states: torch.Tensor, batch: int, text_dim: int) -> torch.Tensor:
    """(B, text_dim) or MLD's (B, 1, text_dim) pooled text embeddings -> (B, text_dim), checked."""
    h = encoder_hidden_states
    if isinstance(h, torch.Tensor) and h.dim() == 3 and h.shape[1] == 1:
        h = h[:, 0]
    if not isinstance(h, torch.Tensor) or h.shape != (batch, text_dim) or not h.is_floating_point():
        shape = tuple(encoder_hidden_states.shape) if isinstance(encoder_hidden_states, torch.Tensor) else None
        raise ValueError(
            f"encoder_hidden_states must be a float (batch={batch}, text_dim={text_dim}) or (batch, 1, "
            f"text_dim) pooled text embedding, got {shape or type(encoder_hidden_states).__name__}"
        )
    return h


def check_motion_sample(sample: torch.Tensor, shape_tail: tuple, what: str, name: str = "sample") -> None:
    """Raise ValueError unless argument ``name`` is a float (batch, *shape_tail) tensor (None: any size)."""
    ok = (
        isinstance(sample, torch.Tensor)
        and sample.is_floating_point()
        and sample.dim() == 1 + len(shape_tail)
        and all(want is None or got == want for got, want in zip(sample.shape[1:], shape_tail, strict=True))
    )
    if not ok:
        shape = tuple(sample.shape) if isinstance(sample, torch.Tensor) else type(sample).__name__
        dims = ", ".join("any" if d is None else str(d) for d in shape_tail)
        raise ValueError(f"{name} must be a float (batch, {dims}) tensor ({what}), got {shape}")


def condition_tokens(
    embedder: MotionConditionEmbedder, timestep, encoder_hidden_states: torch.Tensor, sample: torch.Tensor
) -> torch.Tensor:
    """The checked [time, text] tokens (B, 2, hidden) for a sample batch."""
    batch = sample.shape[0]
    text = pooled_text(encoder_hidden_states, batch, embedder.text_dim).to(sample.dtype)
    return embedder(broadcast_timesteps(timestep, batch, sample.device), text)
