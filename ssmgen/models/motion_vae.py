"""MotionVAE: MLD's transformer motion VAE (Chen et al., CVPR 2023, ``mld/models/architectures/mld_vae.py``),
the latent space Motion Mamba denoises.

Encoder, features x (B, T, feature_dim) with lengths:

    tokens = [global_motion_token (2 latent_size, d); Linear(x)] + learned positions
    h = SkipTransformer(tokens), padded frames masked as keys
    mu, logvar = h[:, :latent_size], h[:, latent_size:2 latent_size];  z = mu + exp(logvar / 2) * eps

Decoder, latent z (B, latent_size, d) and lengths:

    queries = zeros (B, T, d) + learned positions
    h = SkipTransformer-decoder(queries, memory=z)    self-attention over the frames, cross-attention to z
    x = Linear(h), with frames past each length set to 0

MLD's layers are post-norm with GELU, dropout 0.1, 9 layers (4 + 1 + 4, ``layers.skip_transformer``), width
256, 4 heads, ff 1024; the learned position tables have 500 rows initialised U(0, 1); the global motion tokens
are N(0, 1). MLD's released latent is 1 x 256; Motion Mamba uses 2 x 256 (the default here). Training (MLD):
SmoothL1 on features + SmoothL1 on ``recover_from_ric`` joints + 1e-4 KL(q || N(0, I)).
``scaling_factor`` is diffusers' latent scale (MLD's latent is used unscaled: 1.0).
"""

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from ssmgen.layers.skip_transformer import SkipTransformer

from .motion_conditioning import check_motion_sample

PRESETS = {
    "paper": dict(),  # Motion Mamba's VAE: MLD's architecture with a 2 x 256 latent
    "mld-1": dict(latent_size=1),  # MLD's released latent size
    "tiny": dict(latent_dim=32, ff_size=64, num_layers=3, num_heads=2, dropout=0.0, max_position_embeddings=256),
}


class DiagonalGaussian:
    """q(z | x) = N(mean, exp(logvar)), each (B, latent_size, latent_dim)."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean, self.logvar = mean, logvar
        self.std = torch.exp(0.5 * logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A reparameterised draw mean + std * eps (differentiable in mean and logvar)."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per sample, summed over the latent: (B,)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).sum(dim=(1, 2))


@dataclass
class MotionVAEEncoderOutput(BaseOutput):
    latent_dist: DiagonalGaussian


@dataclass
class MotionVAEOutput(BaseOutput):
    """``sample``: decoded features (B, T, feature_dim), zero past each length; ``latent_dist``: q(z | x)."""

    sample: torch.Tensor
    latent_dist: DiagonalGaussian | None = None


def frame_mask(lengths, num_frames: int | None, batch: int, device: torch.device, limit: int) -> torch.Tensor:
    """Checked lengths (int or (B,)) -> (B, T) mask, True on real frames; T = num_frames or the longest."""
    lengths = torch.as_tensor(lengths, device=device)
    if lengths.dim() == 0:
        lengths = lengths.expand(batch)
    if lengths.shape != (batch,) or lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be an int or ({batch},) integers, got {tuple(lengths.shape)} {lengths.dtype}")
    total = int(lengths.max()) if num_frames is None else num_frames
    if int(lengths.min()) < 1 or int(lengths.max()) > min(total, limit):
        raise ValueError(
            f"lengths must lie in [1, {min(total, limit)}] (the padded frame count and the learned position "
            f"table's {limit} rows), got [{int(lengths.min())}, {int(lengths.max())}]"
        )
    return torch.arange(total, device=device)[None] < lengths[:, None]


class MotionVAE(ModelMixin, ConfigMixin):
    """MLD's motion VAE: features (B, T, feature_dim) <-> latent (B, latent_size, latent_dim).

    Args:
        feature_dim: 263 (HumanML3D) or 251 (KIT-ML). latent_size, latent_dim: the latent's tokens and width.
        ff_size, num_layers (odd), num_heads, dropout: the transformer stacks (MLD: 1024, 9, 4, 0.1).
        max_position_embeddings: rows of the learned position tables (MLD: 500); the encoder takes motions
            of up to ``max_position_embeddings - 2 latent_size`` frames, the decoder up to that many.
        scaling_factor: latents are multiplied by it for diffusion (pipelines divide before decoding).
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        feature_dim: int = 263,
        latent_size: int = 2,
        latent_dim: int = 256,
        ff_size: int = 1024,
        num_layers: int = 9,
        num_heads: int = 4,
        dropout: float = 0.1,
        max_position_embeddings: int = 500,
        scaling_factor: float = 1.0,
    ):
        super().__init__()
        if latent_size < 1 or max_position_embeddings <= 2 * latent_size:
            raise ValueError(
                f"need latent_size >= 1 and max_position_embeddings > 2 latent_size, got {latent_size}, "
                f"{max_position_embeddings}"
            )
        self.skel_embedding = nn.Linear(feature_dim, latent_dim)
        self.global_motion_token = nn.Parameter(torch.randn(2 * latent_size, latent_dim))
        self.query_pos_encoder = nn.Parameter(torch.rand(max_position_embeddings, latent_dim))
        self.encoder = SkipTransformer(latent_dim, num_heads, ff_size, num_layers, dropout)
        self.query_pos_decoder = nn.Parameter(torch.rand(max_position_embeddings, latent_dim))
        self.decoder = SkipTransformer(latent_dim, num_heads, ff_size, num_layers, dropout, decoder=True)
        self.final_layer = nn.Linear(latent_dim, feature_dim)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "MotionVAE":
        """``paper`` (MLD's VAE, 2 x 256 latent), ``mld-1`` (MLD's released 1 x 256), ``tiny``."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
        return cls(**(PRESETS[name] | overrides))

    @property
    def max_encode_frames(self) -> int:
        return self.config.max_position_embeddings - 2 * self.config.latent_size

    @property
    def max_decode_frames(self) -> int:
        return self.config.max_position_embeddings

    def encode(self, features: torch.Tensor, lengths, return_dict: bool = True):
        """features (B, T, feature_dim) (normalised, any padding past each length), lengths int or (B,).
        Returns ``MotionVAEEncoderOutput(latent_dist)`` with mean/logvar (B, latent_size, latent_dim)."""
        check_motion_sample(features, (None, self.config.feature_dim), "frames, feature_dim", "features")
        batch, frames, _ = features.shape
        mask = frame_mask(lengths, frames, batch, features.device, self.max_encode_frames)
        if not torch.isfinite(features.masked_fill(~mask[..., None], 0)).all():
            raise ValueError("features contain NaN or infinite values in the frames within the lengths")
        latent_size = self.config.latent_size
        x = self.skel_embedding(features.masked_fill(~mask[..., None], 0))
        tokens = self.global_motion_token.to(x.dtype).expand(batch, -1, -1)
        x = torch.cat([tokens, x], dim=1)
        x = x + self.query_pos_encoder[: x.shape[1]].to(x.dtype)
        padding = torch.cat([mask.new_zeros(batch, 2 * latent_size), ~mask], dim=1)
        h = self.encoder(x, padding_mask=padding)
        dist = DiagonalGaussian(h[:, :latent_size], h[:, latent_size : 2 * latent_size])
        return MotionVAEEncoderOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, latents: torch.Tensor, lengths, num_frames: int | None = None, return_dict: bool = True):
        """latents (B, latent_size, latent_dim), lengths int or (B,) -> features (B, T, feature_dim) with
        T = ``num_frames`` or the longest length, zero past each length."""
        config = self.config
        check_motion_sample(latents, (config.latent_size, config.latent_dim), "latent_size, latent_dim", "latents")
        if not torch.isfinite(latents).all():
            raise ValueError("latents contain NaN or infinite values")
        batch = latents.shape[0]
        mask = frame_mask(lengths, num_frames, batch, latents.device, self.max_decode_frames)
        queries = self.query_pos_decoder[: mask.shape[1]].to(latents.dtype).expand(batch, -1, -1)
        h = self.decoder(queries, memory=latents, padding_mask=~mask)
        out = self.final_layer(h).masked_fill(~mask[..., None], 0)
        return MotionVAEOutput(sample=out) if return_dict else (out,)

    def forward(
        self,
        features: torch.Tensor,
        lengths,
        sample_posterior: bool = True,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ):
        """Encode, draw z (or take the mean), decode: features (B, T, feature_dim) -> ``MotionVAEOutput``."""
        dist = self.encode(features, lengths).latent_dist
        z = dist.sample(generator) if sample_posterior else dist.mode()
        out = self.decode(z, lengths, num_frames=features.shape[1]).sample
        return MotionVAEOutput(sample=out, latent_dist=dist) if return_dict else (out, dist)
