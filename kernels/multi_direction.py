"""K scan orders over the same tokens in one selective-scan call (VMamba's cross-scan).

The K directions are folded into the channel axis, (batch, K * dim, L), with one B/C group per
direction, exactly as VMamba runs SS2D. The Triton and torch backends read and write every
direction through its permutation table, so no permuted copies are made; the sequential
reference gathers the inputs into scan order and the outputs back.
"""

import torch

from .chunked_scan import ChunkedSelectiveScan
from .scan_inputs import INPUT_DTYPES, check_scan_arguments
from .scan_orders import ScanOrder
from .selective_scan import check_triton_device, resolve_backend, selective_scan


def _describe(t) -> str:
    return f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__


def multi_direction_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    orders: ScanOrder,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    backend: str = "auto",
) -> torch.Tensor:
    """Scan the tokens of u in K orders and return every direction's output in token order.

    Args:
        u: (batch, dim, L) tokens in their natural (row-major) order, shared by all directions.
        delta: (batch, K * dim, L) per-direction step sizes, in token order; u's dtype.
        A: (K * dim, N). D, delta_bias: (K * dim,).
        B, C: (batch, K, N, L) per-direction input/output matrices, in token order.
        orders: a :class:`ScanOrder` with (K, L) ``perm`` and ``inverse`` tables.

    Returns:
        (batch, K, dim, L): direction k's output at every token, in u's dtype.
    """
    if not isinstance(u, torch.Tensor) or u.dim() != 3 or u.dtype not in INPUT_DTYPES:
        raise ValueError(f"u must be a float32/float16/bfloat16 (batch, dim, L) tensor, got {_describe(u)}")
    perm, inverse = orders
    batch, dim, length = u.shape
    if perm.dim() != 2 or perm.shape[1] != length or perm.dtype != torch.long:
        raise ValueError(f"orders.perm must be (K, L={length}) int64, got {perm.dtype} {tuple(perm.shape)}")
    K = perm.shape[0]
    if delta.dim() != 3 or delta.shape != (batch, K * dim, length):
        raise ValueError(f"delta must have shape (batch, K * dim, L) = ({batch}, {K * dim}, {length}), got "
                         f"{tuple(delta.shape)}")  # fmt: skip
    for name, M in (("B", B), ("C", C)):
        if M.dim() != 4 or M.shape[:2] != (batch, K):
            raise ValueError(f"{name} must have shape (batch, K, N, L) with K={K}, got {tuple(M.shape)}")
    check_scan_arguments(delta, delta, A, B, C, D, None, delta_bias, None)
    if u.dtype != delta.dtype or u.device != delta.device:
        raise ValueError(f"u must have delta's dtype and device {delta.dtype}/{delta.device}, got {u.dtype}/{u.device}")
    perm, inverse = perm.to(u.device), inverse.to(u.device)

    backend = resolve_backend(backend, u.device)
    if backend != "reference":
        if backend == "triton":
            check_triton_device(u.device)
            from .triton_scan import TritonSelectiveScan as scan
        else:
            scan = ChunkedSelectiveScan
        out, _ = scan.apply(u, delta, A, B, C, D, None, delta_bias, None, delta_softplus, perm)
        return out.view(batch, K, dim, length)

    def to_scan_order(x: torch.Tensor, rows: int) -> torch.Tensor:
        """(batch, K, rows, L) in token order -> scan order of each direction."""
        return torch.gather(x, 3, perm[None, :, None, :].expand(batch, K, rows, length))

    N = A.shape[1]
    u_scan = to_scan_order(u[:, None].expand(batch, K, dim, length), dim).reshape(batch, K * dim, length)
    delta_scan = to_scan_order(delta.view(batch, K, dim, length), dim).reshape(batch, K * dim, length)
    y = selective_scan(
        u_scan, delta_scan, A, to_scan_order(B, N), to_scan_order(C, N), D,
        delta_bias=delta_bias, delta_softplus=delta_softplus, backend=backend,
    )  # fmt: skip
    back = inverse[None, :, None, :].expand(batch, K, dim, length)
    return torch.gather(y.view(batch, K, dim, length), 3, back)
