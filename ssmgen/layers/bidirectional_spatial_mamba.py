"""Bidirectional Spatial Mamba (BSM), Motion Mamba's channel mixer (Zhang et al., ECCV 2024, Alg. 2).

The token and channel axes are swapped, so the scan runs over the *channels* and each step's feature is
the group of tokens (Motion Mamba's latent: the 2 latent tokens plus the 2 condition tokens; frame mode:
one frame). Along that channel sequence a Mamba mixer scans forward, and a second one with its own conv,
x projection, dt projection, A and D scans backward; both outputs are gated by the shared z and summed
before the out projection (Vim's ``bimamba_type="v2"``, ssmgen's ``Mamba(bidirectional=True)``):

    h = RMSNorm(x)                         (batch, tokens, channels), normalised over the channels
    s = h^T                                (batch, channels, tokens): a sequence of `channels` steps
    out = out_proj((y_fwd(s) + flip(y_bwd(flip(s)))) * silu(z))   then transposed back

Alg. 2 normalises after the rearrangement, over the token features; with 1 to 4 features per step that
norm would be (nearly) degenerate, so here the RMSNorm runs over the channels of each token before it.
"""

import torch
from torch import nn

from .mamba import Mamba
from .norms import RMSNorm


class BidirectionalSpatialMamba(nn.Module):
    """BSM over (batch, tokens, channels): a bidirectional Mamba along the channel axis.

    Args:
        tokens: tokens per group, the feature width of each channel step (the Mamba's d_model).
        channels: channel count, the scanned sequence length (and the RMSNorm's width).
        d_state, d_conv, expand: the Mamba options (d_inner = expand * tokens).
        backend: selective-scan backend.
    """

    def __init__(
        self,
        tokens: int,
        channels: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        backend: str = "auto",
    ):
        super().__init__()
        self.tokens, self.channels = tokens, channels
        self.norm = RMSNorm(channels)
        self.mamba = Mamba(tokens, d_state=d_state, d_conv=d_conv, expand=expand, bidirectional=True, backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, tokens, channels) -> (batch, tokens, channels)."""
        if x.dim() != 3 or x.shape[1:] != (self.tokens, self.channels):
            raise ValueError(f"x must be (batch, tokens={self.tokens}, channels={self.channels}), got {tuple(x.shape)}")
        return self.mamba(self.norm(x).transpose(1, 2)).transpose(1, 2)
