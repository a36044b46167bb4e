"""Global multi-head attention layers.

* :class:`Attention`: timm's self-attention (``qkv`` with bias, ``proj``), the mixer of the DiT block.
* :class:`CrossAttentionFusion`: DiMSUM's fusion of its spatial and wavelet branches: each half's queries
  attend to the other half's keys and values, and ``proj`` mixes the concatenation.

Both use ``F.scaled_dot_product_attention`` with the default scale ``head_dim ** -0.5``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def split_heads(qkv: torch.Tensor, num_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, N, 3 * C) -> q, k, v each (B, num_heads, N, C // num_heads), in timm's channel order."""
    batch, tokens, channels3 = qkv.shape
    head_dim = channels3 // (3 * num_heads)
    q, k, v = qkv.reshape(batch, tokens, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    return q, k, v


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, num_heads, N, head_dim) -> (B, N, num_heads * head_dim)."""
    batch, heads, tokens, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, tokens, heads * head_dim)


def _check_heads(dim: int, num_heads: int, name: str = "dim") -> None:
    if num_heads <= 0 or dim <= 0 or dim % num_heads:
        raise ValueError(f"{name} ({dim}) must be a positive multiple of num_heads ({num_heads})")


class Attention(nn.Module):
    """Multi-head self-attention over tokens: (B, N, dim) -> (B, N, dim).

    Parameters ``qkv`` (dim -> 3 dim) and ``proj`` (dim -> dim), as in timm's ``Attention``.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        _check_heads(dim, num_heads)
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = split_heads(self.qkv(x), self.num_heads)
        return self.proj(merge_heads(F.scaled_dot_product_attention(q, k, v)))


class CrossAttentionFusion(nn.Module):
    """DiMSUM's swapped-query cross-attention that fuses two branches of ``dim // 2`` channels each.

    ``q1, k1, v1 = qkv1(x1)``, ``q2, k2, v2 = qkv2(x2)``; ``x12 = attn(q1, k2, v2)``,
    ``x21 = attn(q2, k1, v1)``; output ``proj(cat[x12, x21])``. Heads have ``dim // 2 // num_heads``
    channels; attention is global over the N tokens, without positional information.

    Args:
        dim: channels of the fused output (the two inputs have ``dim // 2`` each).
        num_heads: heads of each of the two attentions.
        qkv_bias: bias of ``qkv1`` and ``qkv2`` (DiMSUM passes True).
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"dim must be even (two halves), got {dim}")
        _check_heads(dim // 2, num_heads, name="dim // 2")
        half = dim // 2
        self.num_heads = num_heads
        self.qkv1 = nn.Linear(half, 3 * half, bias=qkv_bias)
        self.qkv2 = nn.Linear(half, 3 * half, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """x1, x2: (B, N, dim // 2) -> (B, N, dim)."""
        if x1.shape != x2.shape:
            raise ValueError(f"x1 and x2 must have the same shape, got {tuple(x1.shape)} and {tuple(x2.shape)}")
        q1, k1, v1 = split_heads(self.qkv1(x1), self.num_heads)
        q2, k2, v2 = split_heads(self.qkv2(x2), self.num_heads)
        x12 = merge_heads(F.scaled_dot_product_attention(q1, k2, v2))
        x21 = merge_heads(F.scaled_dot_product_attention(q2, k1, v1))
        return self.proj(torch.cat([x12, x21], dim=-1))
