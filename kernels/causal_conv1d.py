"""Causal depthwise 1-D convolution in the layout of the Mamba block, with streaming state.

Matches ``causal_conv1d_fn`` from Dao-AILab/causal-conv1d (and mamba_simple's slow path):
out[b, d, t] = bias[d] + sum_k weight[d, k] * x[b, d, t - (K - 1) + k], with x before the
sequence taken from ``initial_state`` (the last K - 1 inputs of a previous chunk) or zeros.
"""

import torch
import torch.nn.functional as F

MAX_KERNEL_SIZE = 4


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
):
    """Depthwise causal convolution over (batch, dim, L).

    Args:
        x: (batch, dim, L). weight: (dim, K) or nn.Conv1d's (dim, 1, K), K <= 4. bias: (dim,).
        activation: None or "silu".
        initial_state: (batch, dim, K - 1) inputs preceding x (streaming continuation).
    Returns:
        out (batch, dim, L), and with ``return_final_state`` the last K - 1 inputs
        (batch, dim, K - 1) to continue from.
    """
    if x.dim() != 3:
        raise ValueError(f"x must be (batch, dim, L), got shape {tuple(x.shape)}")
    batch, dim, _ = x.shape
    if weight.dim() == 3:
        weight = weight.squeeze(1)
    if weight.dim() != 2 or weight.shape[0] != dim or not 1 <= weight.shape[1] <= MAX_KERNEL_SIZE:
        raise ValueError(f"weight must be (dim={dim}, K) with 1 <= K <= {MAX_KERNEL_SIZE}, got {tuple(weight.shape)}")
    if bias is not None and bias.shape != (dim,):
        raise ValueError(f"bias must have shape ({dim},), got {tuple(bias.shape)}")
    if activation not in (None, "silu"):
        raise ValueError(f"activation must be None or 'silu', got {activation!r}")
    width = weight.shape[1]
    if initial_state is None:
        history = x.new_zeros(batch, dim, width - 1)
    elif initial_state.shape != (batch, dim, width - 1):
        raise ValueError(
            f"initial_state must have shape (batch, dim, K - 1) = ({batch}, {dim}, {width - 1}), "
            f"got {tuple(initial_state.shape)}"
        )
    else:
        history = initial_state.to(x.dtype)
    padded = torch.cat([history, x], dim=-1)
    out = F.conv1d(padded, weight[:, None, :].to(x.dtype), bias.to(x.dtype) if bias is not None else None,
                   groups=dim)  # fmt: skip
    if activation == "silu":
        out = F.silu(out)
    if return_final_state:
        return out, padded[..., padded.shape[-1] - (width - 1) :]
    return out
