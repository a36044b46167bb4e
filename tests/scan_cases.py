"""Random selective-scan problems shared by the kernel tests."""

import torch


def make_scan_inputs(
    batch: int = 2,
    dim: int = 8,
    d_state: int = 4,
    length: int = 37,
    groups: int | None = None,
    variable: bool = True,
    with_z: bool = True,
    with_D: bool = True,
    with_bias: bool = True,
    with_initial_state: bool = True,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> dict:
    """Keyword arguments for ``selective_scan``: B/C (batch, N, L), (batch, G, N, L) or (dim, N)."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0, dt=dtype):
        return (torch.randn(*shape, generator=gen) * scale).to(dt)

    if variable:
        shape = (batch, groups, d_state, length) if groups else (batch, d_state, length)
        B, C = randn(*shape), randn(*shape)
    else:
        B, C = randn(dim, d_state, dt=torch.float32), randn(dim, d_state, dt=torch.float32)
    return {
        "u": randn(batch, dim, length),
        "delta": (torch.rand(batch, dim, length, generator=gen) - 0.5).to(dtype),
        "A": -torch.exp(randn(dim, d_state, scale=0.5, dt=torch.float32)),
        "B": B,
        "C": C,
        "D": randn(dim, dt=torch.float32) if with_D else None,
        "z": randn(batch, dim, length) if with_z else None,
        "delta_bias": randn(dim, scale=0.5, dt=torch.float32) if with_bias else None,
        "initial_state": randn(batch, dim, d_state, dt=torch.float32) if with_initial_state else None,
    }


def run_with_grads(scan, inputs: dict, **kwargs):
    """Run ``scan`` with gradients on every tensor input; a fixed random loss on out and last state.

    Returns (out, last_state, {name: grad}).
    """
    leaves = {k: v.detach().clone().requires_grad_() if v is not None else None for k, v in inputs.items()}
    out, last = scan(**leaves, return_last_state=True, **kwargs)
    gen = torch.Generator().manual_seed(1)
    w_out = torch.randn(out.shape, generator=gen).to(out.device, out.dtype)
    w_last = torch.randn(last.shape, generator=gen).to(last.device)
    ((out.float() * w_out.float()).sum() + (last * w_last).sum()).backward()
    return out.detach(), last.detach(), {k: v.grad for k, v in leaves.items() if v is not None}
