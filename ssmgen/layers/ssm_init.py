"""Parameter initialisation of selective-state-space layers, as in mamba-ssm's ``mamba_simple``.

- dt projection: weight U(-s, s) with s = dt_rank^-0.5 * dt_scale (or constant s); bias the
  inverse softplus of dt ~ exp(U[log dt_min, log dt_max]) clamped at ``dt_init_floor``, so
  softplus(bias) starts in [dt_min, dt_max].
- A_log = log(1..N) per channel (S4D-real: A = -exp(A_log) = -(1..N)); D = 1.
mamba-ssm marks A_log and D ``_no_weight_decay`` with a tensor attribute; such attributes break
accelerate's empty-weight loading, so ssmgen names them instead: see :func:`exempt_from_weight_decay`.
"""

import math

import torch
from torch import nn


def resolve_dt_rank(dt_rank: int | str, d_model: int) -> int:
    """``"auto"`` means ceil(d_model / 16)."""
    if dt_rank == "auto":
        return math.ceil(d_model / 16)
    if not isinstance(dt_rank, int) or dt_rank < 1:
        raise ValueError(f"dt_rank must be 'auto' or a positive integer, got {dt_rank!r}")
    return dt_rank


@torch.no_grad()
def init_dt_projection(
    weight: torch.Tensor,
    bias: torch.Tensor,
    dt_rank: int,
    dt_min: float = 0.001,
    dt_max: float = 0.1,
    dt_init: str = "random",
    dt_scale: float = 1.0,
    dt_init_floor: float = 1e-4,
) -> None:
    """Initialise a dt projection in place: weight (..., d_inner, dt_rank), bias (..., d_inner)."""
    std = dt_rank**-0.5 * dt_scale
    if dt_init == "constant":
        weight.fill_(std)
    elif dt_init == "random":
        weight.uniform_(-std, std)
    else:
        raise ValueError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
    dt = torch.exp(
        torch.rand_like(bias, dtype=torch.float32) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
    )
    dt = dt.clamp(min=dt_init_floor)
    bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus


def s4d_real_A_log(d_inner: int, d_state: int, copies: int = 1) -> nn.Parameter:
    """A_log (copies * d_inner, d_state) with A = -(1..N) per channel, float32."""
    A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(copies * d_inner, 1)
    return nn.Parameter(torch.log(A))


def ones_D(size: int) -> nn.Parameter:
    """The skip connection D (size,) = 1, float32."""
    return nn.Parameter(torch.ones(size))


# Parameter names (last component) that mamba-ssm keeps out of weight decay.
NO_WEIGHT_DECAY_NAMES = ("A_log", "A_b_log", "A_logs", "D", "D_b", "Ds")


def exempt_from_weight_decay(parameter_name: str) -> bool:
    """Whether a parameter (by its ``named_parameters`` name) is an SSM A_log or D."""
    return parameter_name.rsplit(".", 1)[-1] in NO_WEIGHT_DECAY_NAMES
