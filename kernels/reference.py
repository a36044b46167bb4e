"""Sequential selective scan: the oracle every other backend is tested against.

It follows the equations of mamba-ssm's ``selective_scan_ref`` one time step at a time, in
float32, and relies on autograd for gradients. It is slow on purpose: clarity over speed.
"""

import torch
import torch.nn.functional as F


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: torch.Tensor | None = None,
):
    """Run h_t = exp(delta_t * A) h_{t-1} + delta_t * B_t * u_t, y_t = <C_t, h_t> step by step.

    Shapes: u, delta, z (batch, dim, L); A (dim, N); B, C (dim, N), (batch, N, L) or
    (batch, G, N, L); D, delta_bias (dim,); initial_state (batch, dim, N).
    Returns out (batch, dim, L) in u's dtype, and the last state (batch, dim, N) in float32
    when ``return_last_state``.
    """
    batch, dim, length = u.shape
    d_state = A.shape[1]
    out_dtype = u.dtype
    u, delta, A = u.float(), delta.float(), A.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)  # threshold 20, as in mamba-ssm

    def per_channel(M: torch.Tensor) -> torch.Tensor:
        """B or C as (batch, dim, N, L): groups own contiguous blocks of channels."""
        M = M.float()
        if M.dim() == 2:
            return M[None, :, :, None].expand(batch, dim, d_state, length)
        if M.dim() == 3:
            M = M[:, None]
        groups = M.shape[1]
        return M.repeat_interleave(dim // groups, dim=1)

    B, C = per_channel(B), per_channel(C)
    if initial_state is None:
        h = u.new_zeros(batch, dim, d_state)
    else:
        h = initial_state.float()
    ys = []
    for t in range(length):
        decay = torch.exp(delta[:, :, t, None] * A)
        h = decay * h + (delta[:, :, t] * u[:, :, t])[:, :, None] * B[..., t]
        ys.append((h * C[..., t]).sum(-1))
    out = torch.stack(ys, dim=-1)
    if D is not None:
        out = out + D.float()[:, None] * u
    if z is not None:
        out = out * F.silu(z.float())
    out = out.to(out_dtype)
    return (out, h) if return_last_state else out
