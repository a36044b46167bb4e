"""DiT's adaLN-Zero transformer block and final layer (Peebles & Xie, 2023).

DiMSUM calls one shared :class:`DiTBlock` (with :class:`~ssmgen.layers.mlp.GatedMLP`) after every fourth
Mamba block and ends with :class:`FinalLayer`. The initialisation helpers sit next to the layers they
initialise: :func:`xavier_init_linears` (DiT's basic init) and the ``zero_init_*`` methods.
"""

from __future__ import annotations

import torch
from torch import nn

from ssmgen.layers.attention import Attention
from ssmgen.layers.mlp import GatedMLP, Mlp, tanh_gelu
from ssmgen.layers.norms import apply_gate, modulate


def xavier_init_linears(module: nn.Module) -> None:
    """DiT's basic init: xavier-uniform weights and zero biases for every ``nn.Linear`` inside ``module``."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def _zero_linear(layer: nn.Linear) -> None:
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class DiTBlock(nn.Module):
    """adaLN-Zero block: tokens (B, N, hidden_size), condition c (B, hidden_size) -> (B, N, hidden_size).

    ``shift1, scale1, gate1, shift2, scale2, gate2 = adaLN_modulation(c).chunk(6)``;
    ``x = x + gate1 * attn(modulate(norm1(x), shift1, scale1))``;
    ``x = x + gate2 * mlp(modulate(norm2(x), shift2, scale2))``.
    Norms are LayerNorms without affine parameters (eps 1e-6); the MLP uses tanh-GELU and is DiT's
    :class:`Mlp` (``fc1``, ``fc2``) or, with ``gated_mlp=True``, DiMSUM's :class:`GatedMLP` (``w12``, ``w3``).
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, gated_mlp: bool = False) -> None:
        super().__init__()
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be positive, got {mlp_ratio}")
        mlp_hidden = int(hidden_size * mlp_ratio)
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads=num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        mlp_cls = GatedMLP if gated_mlp else Mlp
        self.mlp = mlp_cls(hidden_size, mlp_hidden, act_layer=tanh_gelu)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def zero_init_adaln(self) -> None:
        """Zero the modulation so the block starts as the identity (DiT's adaLN-Zero)."""
        _zero_linear(self.adaLN_modulation[-1])

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + apply_gate(self.attn(modulate(self.norm1(x), shift_msa, scale_msa)), gate_msa)
        return x + apply_gate(self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp)), gate_mlp)


class FinalLayer(nn.Module):
    """DiT's output head: tokens (B, N, hidden_size), c (B, hidden_size) -> (B, N, patch**2 * out_channels).

    ``linear(modulate(norm_final(x), shift, scale))`` with ``shift, scale = adaLN_modulation(c).chunk(2)``;
    ``norm_final`` is a LayerNorm without affine parameters (eps 1e-6). The caller unpatchifies.
    """

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int) -> None:
        super().__init__()
        if patch_size <= 0 or out_channels <= 0:
            raise ValueError(f"patch_size and out_channels must be positive, got {patch_size} and {out_channels}")
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def zero_init(self) -> None:
        """Zero the modulation and the output projection, so the model starts by predicting 0 (DiT)."""
        _zero_linear(self.adaLN_modulation[-1])
        _zero_linear(self.linear)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))
