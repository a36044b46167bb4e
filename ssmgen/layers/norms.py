"""Normalisation helpers shared by the Mamba denoisers.

* :class:`RMSNorm`: weight-only root-mean-square norm (Mamba / Vim / DiMSUM), computed in float32.
* :func:`add_and_norm`: the "fused add + norm" of Vim and DiMSUM written as plain PyTorch. A block receives
  the previous block's output ``x`` and the running residual stream, adds them, and normalises the sum.
  The residual stream can stay in float32 while the blocks run in half precision.
* :func:`modulate` / :func:`apply_gate`: adaLN's ``x * (1 + scale) + shift`` and ``gate * x`` for token
  sequences (B, L, C) and channels-last maps (B, H, W, C).
"""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """``y = x / sqrt(mean(x**2, -1) + eps) * weight`` over the last dimension (no bias, no mean removal).

    The statistics and the product with ``weight`` are computed in float32; the result has the input's
    dtype. Parameter: ``weight`` (dim,), initialised to ones.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        if dim <= 0:
            raise ValueError(f"dim must be a positive integer, got {dim}")
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., dim) -> (..., dim) in x's dtype."""
        if x.shape[-1] != self.weight.shape[0]:
            raise ValueError(f"x must have {self.weight.shape[0]} channels in its last dim, got {tuple(x.shape)}")
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def add_and_norm(
    x: torch.Tensor,
    residual: torch.Tensor | None,
    norm: nn.Module,
    residual_in_fp32: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual add followed by a pre-norm, as Mamba's ``layer_norm_fn(..., prenorm=True)`` computes it.

    ``residual = x if residual is None else residual + x``; ``h = norm(residual)``. The sum is formed and
    normalised in float32 (as the fused Triton kernel does), so ``norm`` must accept float32 input
    (:class:`RMSNorm` does whatever its weight dtype; an ``nn.LayerNorm`` needs float32 weights or autocast).
    Stochastic depth, when used, is applied by the caller to ``x`` before this call.

    Args:
        x: (..., C) output of the previous block (or the embedded input for the first block).
        residual: (..., C) running residual stream, or None for the first block.
        norm: module mapping (..., C) -> (..., C).
        residual_in_fp32: keep the returned residual in float32; otherwise it keeps the dtype of the
            incoming residual (``x``'s dtype for the first block).

    Returns:
        ``(h, residual)``: the normalised stream in ``x``'s dtype and the updated residual stream.
    """
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"residual must have x's shape {tuple(x.shape)}, got {tuple(residual.shape)}")
    stream_dtype = x.dtype if residual is None else residual.dtype
    total = x.float() if residual is None else residual.float() + x.float()
    h = norm(total).to(x.dtype)
    return h, (total if residual_in_fp32 else total.to(stream_dtype))


def _broadcast_condition(v: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
    """(B, C) -> (B, 1, ..., 1, C) so it broadcasts against x (B, ..., C); tensors of x's rank pass."""
    if v.ndim == x.ndim:
        return v
    if v.ndim == 2 and v.shape[0] == x.shape[0] and v.shape[1] == x.shape[-1]:
        return v.view(v.shape[0], *([1] * (x.ndim - 2)), v.shape[1])
    raise ValueError(
        f"{name} must be (B, C) = ({x.shape[0]}, {x.shape[-1]}) or have x's rank {x.ndim}, got {tuple(v.shape)}"
    )


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation ``x * (1 + scale) + shift``.

    Args:
        x: tokens (B, L, C) or a channels-last map (B, H, W, C).
        shift, scale: (B, C) per-sample vectors (DiT / DiMSUM), or already broadcastable tensors of x's rank
            such as (B, 1, 1, C) (LaMamba-Diff).
    """
    return x * (1 + _broadcast_condition(scale, x, "scale")) + _broadcast_condition(shift, x, "shift")


def apply_gate(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """adaLN-Zero gating ``gate * x`` with the same broadcasting rules as :func:`modulate`."""
    return _broadcast_condition(gate, x, "gate") * x
