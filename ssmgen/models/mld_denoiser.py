"""MLDDenoiser: MLD's transformer denoiser (Chen et al., CVPR 2023,
``mld/models/architectures/mld_denoiser.py``, ``arch: trans_enc``, ``SKIP_CONNECT: True``), Motion Mamba's
baseline, with MotionMambaModel's interface.

    c = [time token, text token]                  MLD's condition embedding (see motion_conditioning)
    x = [z (B, latent_size, latent_dim); c] + learned positions
    h = SkipTransformer(x)                         9 post-norm layers (4 + 1 + 4), final LayerNorm
    eps = h[:, :latent_size]                       no output projection (MLD's last op is the LayerNorm)

MLD's sizes: width = latent_dim = 256, 4 heads, ff 1024, dropout 0.1, GELU, 768-d timestep features,
768-d CLIP text. Its released latent is 1 x 256 (preset ``paper``); Motion Mamba's comparison uses the
same latent for both models (pass ``latent_size=2``). The learned positions start U(0, 1) as MLD's.
"""

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ssmgen.layers.skip_transformer import SkipTransformer

from .motion_conditioning import (
    MotionConditionEmbedder,
    MotionDenoiserOutput,
    check_motion_sample,
    condition_tokens,
)

PRESETS = {
    "paper": dict(),
    "tiny": dict(
        latent_size=2,
        latent_dim=16,
        ff_size=32,
        num_layers=3,
        num_heads=2,
        dropout=0.0,
        text_dim=16,
        time_embed_dim=32,
    ),
}


class MLDDenoiser(ModelMixin, ConfigMixin):
    """MLD's denoiser: (z (B, latent_size, latent_dim), DDPM timestep, pooled text) -> predicted noise.

    Args:
        latent_size, latent_dim: the VAE latent (the width is latent_dim, as in MLD).
        ff_size, num_layers (odd), num_heads, dropout: the skip-connected transformer.
        text_dim: pooled text size. time_embed_dim: sinusoidal timestep features.
    """

    _supports_gradient_checkpointing = False
    frame_mode = False

    @register_to_config
    def __init__(
        self,
        latent_size: int = 1,
        latent_dim: int = 256,
        ff_size: int = 1024,
        num_layers: int = 9,
        num_heads: int = 4,
        dropout: float = 0.1,
        text_dim: int = 768,
        time_embed_dim: int = 768,
    ):
        super().__init__()
        self.condition = MotionConditionEmbedder(latent_dim, text_dim, time_embed_dim)
        self.query_pos = nn.Parameter(torch.rand(latent_size + 2, latent_dim))
        self.encoder = SkipTransformer(latent_dim, num_heads, ff_size, num_layers, dropout)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "MLDDenoiser":
        """``paper`` (MLD-1 as released), ``tiny``."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
        return cls(**(PRESETS[name] | overrides))

    def sample_shape(self, batch_size: int, num_frames: int) -> tuple[int, int, int]:
        """The latent's shape; the motion length only matters to the VAE decoder."""
        return (batch_size, self.config.latent_size, self.config.latent_dim)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        encoder_hidden_states: torch.Tensor,
        return_dict: bool = True,
    ):
        """sample (B, latent_size, latent_dim); timestep scalar or (B,); encoder_hidden_states (B, text_dim)
        or (B, 1, text_dim). Returns ``MotionDenoiserOutput(sample)`` or ``(sample,)``."""
        latent_size = self.config.latent_size
        check_motion_sample(sample, (latent_size, self.config.latent_dim), "latent_size, latent_dim")
        condition = condition_tokens(self.condition, timestep, encoder_hidden_states, sample)
        x = torch.cat([sample, condition], dim=1) + self.query_pos.to(sample.dtype)
        out = self.encoder(x)[:, :latent_size]
        return MotionDenoiserOutput(sample=out) if return_dict else (out,)
