"""Feed-forward layers.

* :class:`Mlp`: timm's two-layer MLP (``fc1`` -> activation -> ``fc2``). LaMamba-Diff uses it with exact GELU
  (the default), DiT with ``tanh_gelu``.
* :class:`GatedMLP`: DiMSUM's gated-GELU MLP: ``w3(gelu_tanh(a) * b)`` with ``(a, b) = w12(x).chunk(2)``.
  DiMSUM passes ``hidden_features = 4 * dim``, so for DiM-L/2 the shapes are 1024 -> 8192 (w12) and
  4096 -> 1024 (w3).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def tanh_gelu() -> nn.Module:
    """GELU with the tanh approximation, the activation of DiT's and DiMSUM's MLPs."""
    return nn.GELU(approximate="tanh")


def _check_sizes(in_features: int, hidden_features: int, out_features: int) -> None:
    for name, value in (
        ("in_features", in_features),
        ("hidden_features", hidden_features),
        ("out_features", out_features),
    ):
        if value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value}")


class Mlp(nn.Module):
    """``fc2(act(fc1(x)))`` on the last dimension: (..., in_features) -> (..., out_features).

    Args:
        in_features: input channels.
        hidden_features: width of the hidden layer (DiT / LaMamba: ``mlp_ratio * in_features``).
        out_features: output channels, ``in_features`` when None.
        act_layer: factory of the activation module; ``nn.GELU`` (exact, timm / LaMamba-Diff) or
            :func:`tanh_gelu` (DiT).
        bias: biases on both linear layers.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int | None = None,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        bias: bool = True,
    ) -> None:
        super().__init__()
        out_features = out_features or in_features
        _check_sizes(in_features, hidden_features, out_features)
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class GatedMLP(nn.Module):
    """DiMSUM's gated MLP: ``w3(act(a) * b)`` where ``a, b = w12(x).chunk(2, dim=-1)``.

    Args:
        in_features: input channels.
        hidden_features: width of the gated product; ``w12`` maps to ``2 * hidden_features``.
        out_features: output channels, ``in_features`` when None.
        act_layer: factory of the activation applied to the first half (DiMSUM: :func:`tanh_gelu`).
        bias: biases on ``w12`` and ``w3``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int | None = None,
        act_layer: Callable[[], nn.Module] = tanh_gelu,
        bias: bool = True,
    ) -> None:
        super().__init__()
        out_features = out_features or in_features
        _check_sizes(in_features, hidden_features, out_features)
        self.w12 = nn.Linear(in_features, 2 * hidden_features, bias=bias)
        self.act = act_layer()
        self.w3 = nn.Linear(hidden_features, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.w12(x).chunk(2, dim=-1)
        return self.w3(self.act(value) * gate)
