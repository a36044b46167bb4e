"""The ``torch`` backend: a chunked selective scan in pure PyTorch with its own backward.

The sequence of length L is cut into C chunks of T ~ sqrt(L) steps. Every recurrence below runs
T Python steps over all chunks at once (state tensors of shape (batch, C, G, E, N), where the
dim channels are split into G groups of E), plus a C-step carry across chunk boundaries, so a
scan costs about 2 sqrt(L) Python steps instead of L.

Forward:   1. local pass: every chunk from a zero state -> its end state;
           2. carry: the state entering chunk c+1 is P_c h_c + end_c, where P_c = exp(A * sum of
              delta over chunk c) is the chunk's total decay;
           3. readout pass: every chunk again from its entering state, y_t = <C_t, h_t>.
Backward:  the states are recomputed from the saved chunk-entering states (kept for one pass),
           then the adjoint g_t = dL/dh_t = a_{t+1} g_{t+1} + C_t dy_t, a_t = exp(delta_t A),
           runs the same local pass + carry backwards in time, and a last backward walk
           accumulates every gradient.

Only the decays of single steps and of whole chunks are exponentiated (arguments <= 0 when
A <= 0), never a quotient of cumulative decays, so long sequences with strong decay stay
finite. All state math is float32; the state of the Python loops lives in one preallocated
tensor updated in place.
"""

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .scan_inputs import ScanInputs, softplus_grad


def chunk_length(length: int) -> int:
    """T for a sequence of ``length``: about sqrt(L), so the T- and C-step loops balance."""
    return max(1, min(256, math.ceil(math.sqrt(length))))


class _Layout:
    """Rearranges a scan's tensors step-major: (batch, dim, L) <-> (T, batch, C, G, E)."""

    def __init__(self, batch: int, groups: int, dim: int, length: int):
        self.batch, self.groups = batch, groups
        self.length, self.steps = length, chunk_length(length)
        self.chunks = math.ceil(length / self.steps)
        self.padded = self.chunks * self.steps

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, dim or G*N, L) -> (T, batch, C, G, E or N), zero-padded at the end."""
        x = F.pad(x, (0, self.padded - self.length))
        x = x.reshape(self.batch, self.groups, -1, self.chunks, self.steps)
        return x.permute(4, 0, 3, 1, 2).contiguous()

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """(T, batch, C, G, E or N) -> (batch, G*E or G, N?, L) flattened to (batch, -1, L)."""
        x = x.permute(1, 3, 4, 2, 0).reshape(self.batch, -1, self.padded)
        return x[..., : self.length]


class _Operands(NamedTuple):
    """A scan's float32 operands, step-major. Padding steps have delta = 0 and x = 0."""

    layout: _Layout
    dt_flat: torch.Tensor  # (batch, dim, L) the step size after bias and softplus
    dt: torch.Tensor  # (T, batch, C, G, E)
    x: torch.Tensor  # (T, batch, C, G, E) delta * u
    A: torch.Tensor  # (G, E, N)
    B: torch.Tensor  # (T, batch, C, G, 1, N) if variable else (G, E, N)
    C: torch.Tensor  # same layout as B


def _operands(inp: ScanInputs) -> _Operands:
    lay = _Layout(inp.batch, inp.groups, inp.dim, inp.length)
    dt_flat = inp.delta_fp32()
    A = inp.A.float().view(inp.groups, -1, inp.d_state)

    def state_operand(M: torch.Tensor, variable: bool) -> torch.Tensor:
        return lay.split(M.float().flatten(1, 2)).unsqueeze(-2) if variable else M.float().view_as(A)

    return _Operands(
        lay,
        dt_flat,
        lay.split(dt_flat),
        lay.split(dt_flat * inp.u.float()),
        A,
        state_operand(inp.B, inp.variable_B),
        state_operand(inp.C, inp.variable_C),
    )


def _at(M: torch.Tensor, t: int) -> torch.Tensor:
    """Step t of a time-varying B/C operand; a time-invariant one is the same at every step."""
    return M[t] if M.dim() == 6 else M


def _decay(ops: _Operands, t: int) -> torch.Tensor:
    """a_t = exp(delta_t * A): (batch, C, G, E, N)."""
    return torch.exp(ops.dt[t, ..., None] * ops.A)


def _chunk_decay(ops: _Operands) -> torch.Tensor:
    """P_c = exp(A * sum of delta over chunk c): (batch, C, G, E, N)."""
    return torch.exp(ops.dt.sum(0)[..., None] * ops.A)


def _carry(chunk_decay: torch.Tensor, chunk_end: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """States entering each chunk: h_0 = start, h_{c+1} = P_c h_c + end_c. Shapes (batch, C, G, E, N)."""
    entering = torch.empty_like(chunk_end)
    h = start
    for c in range(chunk_end.shape[1]):
        entering[:, c] = h
        h = chunk_decay[:, c] * h + chunk_end[:, c]
    return entering


def _forward_local_ends(ops: _Operands) -> torch.Tensor:
    """Every chunk's end state from a zero start: (batch, C, G, E, N)."""
    h = ops.x.new_zeros(*ops.x.shape[1:], ops.A.shape[-1])
    for t in range(ops.layout.steps):
        h.mul_(_decay(ops, t)).addcmul_(ops.x[t, ..., None], _at(ops.B, t))
    return h


def _entering_states(ops: _Operands, start: torch.Tensor) -> torch.Tensor:
    """The state entering every chunk (batch, C, G, E, N), from the initial state (batch, G, E, N)."""
    if ops.layout.chunks == 1:
        return start[:, None].clone()
    return _carry(_chunk_decay(ops), _forward_local_ends(ops), start)


def _readout(ops: _Operands, entering: torch.Tensor, states: torch.Tensor | None = None):
    """Run every chunk from its entering state; y_t = <C_t, h_t> as (T, batch, C, G, E).

    Returns y and the end state of every chunk. With ``states`` ((T + 1, batch, C, G, E, N)),
    also keeps the state before the first step and after every step.
    """
    h = entering.clone()
    y = torch.empty_like(ops.x)
    if states is not None:
        states[0] = h
    for t in range(ops.layout.steps):
        h.mul_(_decay(ops, t)).addcmul_(ops.x[t, ..., None], _at(ops.B, t))
        torch.sum(h * _at(ops.C, t), dim=-1, out=y[t])
        if states is not None:
            states[t + 1] = h
    return y, h


def _backward_local_starts(ops: _Operands, dy: torch.Tensor) -> torch.Tensor:
    """Every chunk's adjoint from a zero end, pushed past its first decay: (batch, C, G, E, N)."""
    g = dy.new_zeros(*dy.shape[1:], ops.A.shape[-1])
    for t in reversed(range(ops.layout.steps)):
        g.addcmul_(dy[t, ..., None], _at(ops.C, t)).mul_(_decay(ops, t))
    return g


class ChunkedSelectiveScan(torch.autograd.Function):
    """Autograd function over the normalised arguments of ``selective_scan``.

    Returns (out (batch, dim, L) in u's dtype, last_state (batch, dim, N) float32).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus):
        ctx.set_materialize_grads(False)
        inp = ScanInputs(u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus)
        ops = _operands(inp)
        start = inp.initial_state_fp32().view(inp.batch, inp.groups, -1, inp.d_state)
        entering = _entering_states(ops, start)
        y, ends = _readout(ops, entering)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, initial_state, entering)
        ctx.delta_softplus = delta_softplus
        last_state = ends[:, -1].reshape(inp.batch, inp.dim, inp.d_state)
        return inp.finish_output(ops.layout.merge(y)), last_state

    @staticmethod
    def backward(ctx, dout, dlast_state):
        u, delta, A, B, C, D, z, delta_bias, initial_state, entering = ctx.saved_tensors
        inp = ScanInputs(u, delta, A, B, C, D, z, delta_bias, initial_state, ctx.delta_softplus)
        ops = _operands(inp)
        lay = ops.layout
        u32 = u.float()

        # 1. Recompute the states (kept for this backward only) and y before the z gate.
        states = ops.x.new_empty(lay.steps + 1, *entering.shape)
        y = lay.merge(_readout(ops, entering, states)[0])
        if D is not None:
            y = y + D.float()[:, None] * u32
        dy = torch.zeros_like(u32) if dout is None else dout.float()
        dz = None
        if z is not None:
            z32 = z.float()
            sig = torch.sigmoid(z32)
            dz = (dy * y * sig * (1 + z32 * (1 - sig))).to(z.dtype)
            dy = dy * z32 * sig
        dD = (dy * u32).sum((0, 2)).to(D.dtype) if D is not None else None
        du = dy * D.float()[:, None] if D is not None else torch.zeros_like(u32)

        # 2. The adjoint entering every chunk's last step: local pass + carry, backwards in time.
        dy = lay.split(dy)
        g_end = torch.zeros_like(entering[:, 0])
        if dlast_state is not None:
            g_end = dlast_state.float().view_as(g_end)
        if lay.chunks == 1:
            g = g_end[:, None].clone()
        else:
            adjoint_starts = _backward_local_starts(ops, dy)
            g = _carry(_chunk_decay(ops).flip(1), adjoint_starts.flip(1), g_end).flip(1).contiguous()

        # 3. One more backward walk accumulates every gradient.
        dx, ddt = torch.empty_like(ops.x), torch.empty_like(ops.x)
        per_step = (*ops.x.shape[:4], inp.d_state)
        dB = ops.x.new_empty(per_step) if inp.variable_B else torch.zeros_like(g)
        dC = ops.x.new_empty(per_step) if inp.variable_C else torch.zeros_like(g)
        dA = torch.zeros_like(g)
        for t in reversed(range(lay.steps)):
            g.addcmul_(dy[t, ..., None], _at(ops.C, t))
            if inp.variable_C:
                torch.sum(dy[t, ..., None] * states[t + 1], dim=-2, out=dC[t])
            else:
                dC.addcmul_(dy[t, ..., None], states[t + 1])
            if inp.variable_B:
                torch.sum(g * ops.x[t, ..., None], dim=-2, out=dB[t])
            else:
                dB.addcmul_(g, ops.x[t, ..., None])
            torch.sum(g * _at(ops.B, t), dim=-1, out=dx[t])
            a = _decay(ops, t)
            decay_grad = g.mul_(a) * states[t]  # g now holds a_t g_t, the adjoint of h_{t-1}
            torch.sum(decay_grad * ops.A, dim=-1, out=ddt[t])
            dA.addcmul_(decay_grad, ops.dt[t, ..., None])

        dx = lay.merge(dx)
        du = du + dx * ops.dt_flat
        ddelta = lay.merge(ddt) + dx * u32
        if ctx.delta_softplus:
            ddelta = ddelta * softplus_grad(inp.delta_pre_softplus())
        return (
            du.to(u.dtype),
            ddelta.to(delta.dtype),
            dA.sum((0, 1)).reshape(A.shape).to(A.dtype),
            _state_grad(dB, B, lay),
            _state_grad(dC, C, lay),
            dD,
            dz,
            ddelta.sum((0, 2)).to(delta_bias.dtype) if delta_bias is not None else None,
            _initial_state_grad(g[:, 0], initial_state),
            None,
        )


def _initial_state_grad(grad: torch.Tensor, initial_state: torch.Tensor | None) -> torch.Tensor | None:
    """The adjoint entering the first chunk, as the gradient of ``initial_state`` (batch, dim, N)."""
    if initial_state is None:
        return None
    return grad.reshape(initial_state.shape).to(initial_state.dtype)


def _state_grad(grad: torch.Tensor, like: torch.Tensor, lay: _Layout) -> torch.Tensor:
    """dB or dC back in the caller's layout: (batch, G, N, L) or (dim, N)."""
    if like.dim() == 4:
        return lay.merge(grad).reshape(like.shape).to(like.dtype)
    return grad.sum((0, 1)).reshape(like.shape).to(like.dtype)
