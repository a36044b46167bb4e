"""The public selective scan: mamba-ssm's ``selective_scan_fn`` semantics on every backend."""

import os

import torch

from .chunked_scan import ChunkedSelectiveScan
from .reference import selective_scan_reference
from .scan_inputs import check_scan_arguments

BACKENDS = ("auto", "reference", "torch", "triton")


def resolve_backend(backend: str, device: torch.device) -> str:
    """Turn ``auto`` into a concrete backend: triton on CUDA, torch elsewhere."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    return "triton" if device.type == "cuda" and triton_available() else "torch"


def triton_available() -> bool:
    """Whether Triton imports here (it is optional: the package works without it)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def check_triton_device(device: torch.device) -> None:
    """Triton kernels need a CUDA tensor, or CPU tensors under ``TRITON_INTERPRET=1``."""
    if not triton_available():
        raise ValueError("backend='triton' needs the triton package; install it or use backend='torch'")
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(
            f"backend='triton' needs CUDA tensors (got {device}); on CPU set TRITON_INTERPRET=1 before "
            "importing ssmgen.kernels to run the kernels in Triton's interpreter, or use backend='torch'"
        )


def selective_scan(
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
    backend: str = "auto",
):
    """Selective scan h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t, y_t = C_t h_t + D u_t.

    Args:
        u: (batch, dim, L) float32, float16 or bfloat16.
        delta: (batch, dim, L), u's dtype. ``delta_bias`` (dim,) is added before the softplus
            (threshold 20) applied when ``delta_softplus``.
        A: (dim, N) real; use -exp(A_log).
        B, C: time-invariant (dim, N), time-varying (batch, N, L), or grouped (batch, G, N, L)
            where channel d uses group d // (dim / G).
        D: (dim,) skip connection. z: (batch, dim, L) gate: out *= silu(z).
        initial_state: (batch, dim, N) state before the first step (ssmgen's extension for
            chunked and streaming generation); gradients flow into it.
        backend: ``reference``, ``torch``, ``triton`` or ``auto`` (triton on CUDA, else torch).

    Returns:
        out (batch, dim, L) in u's dtype, and with ``return_last_state`` also the last state
        (batch, dim, N) in float32. State math is float32 on every backend.
    """
    check_scan_arguments(u, delta, A, B, C, D, z, delta_bias, initial_state)
    backend = resolve_backend(backend, u.device)
    if backend == "reference":
        return selective_scan_reference(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, initial_state
        )
    B = B[:, None] if B.dim() == 3 else B
    C = C[:, None] if C.dim() == 3 else C
    if backend == "torch":
        scan = ChunkedSelectiveScan.apply
    else:
        check_triton_device(u.device)
        from .triton_scan import TritonSelectiveScan

        scan = TritonSelectiveScan.apply
    out, last_state = scan(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus)
    return (out, last_state) if return_last_state else out
