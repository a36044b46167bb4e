"""Argument checks and the shared float32 views of a selective scan's inputs.

Every backend receives the same normalised arguments: u, delta, z (batch, dim, L); A (dim, N);
B and C either time-invariant (dim, N) or time-varying (batch, G, N, L) (a 3-D (batch, N, L)
input is viewed with G = 1 by the public function); D, delta_bias (dim,); initial_state
(batch, dim, N). Channel d uses group d // (dim / G), as in mamba-ssm.
"""

import torch
import torch.nn.functional as F

INPUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _shape(t: torch.Tensor | None) -> str:
    return "None" if t is None else str(tuple(t.shape))


def check_scan_arguments(u, delta, A, B, C, D, z, delta_bias, initial_state) -> None:
    """Raise ``ValueError`` naming the first argument that breaks the selective-scan contract."""
    if not isinstance(u, torch.Tensor) or u.dim() != 3:
        raise ValueError(f"u must be a (batch, dim, L) tensor, got shape {_shape(u)}")
    if u.dtype not in INPUT_DTYPES:
        raise ValueError(f"u must be float32, float16 or bfloat16, got {u.dtype}")
    batch, dim, length = u.shape
    if length == 0:
        raise ValueError("u must have a sequence length L >= 1")
    if A is None or A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A must have shape (dim, N) = ({dim}, N), got {_shape(A)}")
    if A.is_complex() or not A.is_floating_point():
        raise ValueError(f"A must be a real floating-point tensor, got {A.dtype}")
    d_state = A.shape[1]
    for name, t in (("delta", delta), ("z", z)):
        if t is None and name == "z":
            continue
        if t is None or t.shape != u.shape:
            raise ValueError(f"{name} must have u's shape {tuple(u.shape)}, got {_shape(t)}")
        if t.dtype != u.dtype:
            raise ValueError(f"{name} must have u's dtype {u.dtype}, got {t.dtype}")
    groups = {}
    for name, M in (("B", B), ("C", C)):
        if M is None or M.dim() not in (2, 3, 4):
            raise ValueError(f"{name} must be (dim, N), (batch, N, L) or (batch, G, N, L), got {_shape(M)}")
        if not M.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {M.dtype}")
        if M.dim() == 2 and M.shape != (dim, d_state):
            raise ValueError(f"{name} time-invariant must have shape ({dim}, {d_state}), got {_shape(M)}")
        if M.dim() == 3 and M.shape != (batch, d_state, length):
            expected = (batch, d_state, length)
            raise ValueError(f"{name} must have shape (batch, N, L) = {expected}, got {_shape(M)}")
        if M.dim() == 4:
            if M.shape[0] != batch or M.shape[2:] != (d_state, length):
                raise ValueError(
                    f"{name} grouped must have shape (batch, G, N, L) = ({batch}, G, {d_state}, {length}), "
                    f"got {_shape(M)}"
                )
            if dim % M.shape[1]:
                raise ValueError(f"{name}'s group count G={M.shape[1]} must divide dim={dim}")
        if M.dim() > 2:
            groups[name] = 1 if M.dim() == 3 else M.shape[1]
    if len(set(groups.values())) > 1:
        raise ValueError(f"B and C must have the same number of groups, got {groups}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and (t.shape != (dim,) or not t.is_floating_point()):
            raise ValueError(f"{name} must be a floating-point tensor of shape ({dim},), got {_shape(t)}")
    if initial_state is not None:
        if initial_state.shape != (batch, dim, d_state) or not initial_state.is_floating_point():
            raise ValueError(
                f"initial_state must be a floating-point tensor of shape ({batch}, {dim}, {d_state}), "
                f"got {_shape(initial_state)}"
            )
    for name, t in (("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z),
                    ("delta_bias", delta_bias), ("initial_state", initial_state)):  # fmt: skip
        if t is not None and t.device != u.device:
            raise ValueError(f"{name} must be on u's device {u.device}, got {t.device}")


class ScanInputs:
    """Normalised scan arguments (B and C already 2-D or 4-D) with their float32 views."""

    def __init__(self, u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus):
        self.u, self.delta, self.A, self.B, self.C, self.D = u, delta, A, B, C, D
        self.z, self.delta_bias, self.initial_state = z, delta_bias, initial_state
        self.delta_softplus = delta_softplus
        self.batch, self.dim, self.length = u.shape
        self.d_state = A.shape[1]
        self.variable_B, self.variable_C = B.dim() == 4, C.dim() == 4
        self.groups = B.shape[1] if self.variable_B else C.shape[1] if self.variable_C else 1

    def delta_pre_softplus(self) -> torch.Tensor:
        """delta + delta_bias in float32, (batch, dim, L)."""
        delta = self.delta.float()
        return delta + self.delta_bias.float()[:, None] if self.delta_bias is not None else delta

    def delta_fp32(self) -> torch.Tensor:
        """The step size actually used: softplus(delta + bias) or delta + bias, (batch, dim, L)."""
        delta = self.delta_pre_softplus()
        return F.softplus(delta) if self.delta_softplus else delta

    def initial_state_fp32(self) -> torch.Tensor:
        if self.initial_state is None:
            return self.u.new_zeros(self.batch, self.dim, self.d_state, dtype=torch.float32)
        return self.initial_state.float()
