"""The ``torch`` backend: a chunked selective scan in pure PyTorch with its own backward.

The sequence of length L is cut into C chunks of T ~ sqrt(L) steps. Every recurrence below runs
T Python steps over all chunks at once (states of shape (batch, G, E, C, N): the dim channels
split into G groups of E, then the chunks, then the N states), plus a C-step carry across chunk
boundaries, so a scan costs about 2 sqrt(L) Python steps instead of L.

Forward:   1. local pass: every chunk from a zero state -> its end state;
           2. carry: the state entering chunk c+1 is P_c h_c + end_c, where P_c = exp(A * sum of
              delta over chunk c) is the chunk's total decay;
           3. readout pass: every chunk again from its entering state, y_t = <C_t, h_t>.
Backward:  the adjoint g_t = dL/dh_t = a_{t+1} g_{t+1} + C_t dy_t, a_t = exp(delta_t A), runs the
           same local pass + carry backwards in time; the states are recomputed from the saved
           chunk-entering states; a last backward walk accumulates every gradient.

Only the decays of single steps and of whole chunks are exponentiated (arguments <= 0 when
A <= 0), never a quotient of cumulative decays, so long sequences with strong decay stay
finite. All state math is float32. Per-step operands are stored step-major, (T, batch, G, E, C)
(see ``step_layout``); with per-group scan orders the layout reads and writes through them, so
a multi-direction scan runs here without permuted copies, like the Triton kernels.
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .scan_inputs import ScanInputs
from .step_layout import StepLayout


class _Operands(NamedTuple):
    """A scan's float32 operands, step-major; padding steps have delta = 0 and x = 0. The forward
    builds them once and saves them, so the backward repeats neither the transposes nor the softplus."""

    layout: StepLayout
    dt: torch.Tensor  # (T, batch, G, E, C): the step size after bias and softplus
    x: torch.Tensor  # (T, batch, G, E, C): delta * u
    A: torch.Tensor  # (G, E, 1, N)
    B: torch.Tensor  # (T, batch, G, 1, C, N) if time-varying, else (G, E, 1, N)
    C: torch.Tensor  # same layout as B


def _operands(
    inp: ScanInputs,
    u: torch.Tensor,
    perm: torch.Tensor | None,
    dt: torch.Tensor | None = None,
    x: torch.Tensor | None = None,
) -> _Operands:
    """Build the operands (or wrap the saved step-major ``dt`` and ``x``). ``u`` is (batch, dim, L),
    or (batch, dim / G, L) shared by the G groups when each group has its own scan order."""
    lay = StepLayout(inp.batch, inp.groups, inp.length, inp.batch * inp.dim * inp.d_state, perm)
    if dt is None:
        dt = lay.split(inp.delta_fp32())
        x = dt * lay.split(u.float(), shared=u.shape[1] != inp.dim)
    A = inp.A.float().view(inp.groups, -1, 1, inp.d_state)

    def state_operand(M: torch.Tensor, variable: bool) -> torch.Tensor:
        return lay.split_states(M.float()) if variable else M.float().view_as(A)

    return _Operands(lay, dt, x, A, state_operand(inp.B, inp.variable_B), state_operand(inp.C, inp.variable_C))


def _at(M: torch.Tensor, t: int) -> torch.Tensor:
    """Step t of a time-varying B/C operand; a time-invariant one is the same at every step."""
    return M[t] if M.dim() == 6 else M


def _decay(ops: _Operands, t: int) -> torch.Tensor:
    """a_t = exp(delta_t * A): (batch, G, E, C, N)."""
    return torch.exp(ops.dt[t, ..., None] * ops.A)


def _chunk_decay(ops: _Operands) -> torch.Tensor:
    """P_c = exp(A * sum of delta over chunk c): (batch, G, E, C, N)."""
    return torch.exp(ops.dt.sum(0)[..., None] * ops.A)


def _carry(chunk_decay: torch.Tensor, chunk_end: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """States entering each chunk: h_0 = start, h_{c+1} = P_c h_c + end_c. Shapes (batch, G, E, C, N)."""
    entering = torch.empty_like(chunk_end)
    h = start
    for c in range(chunk_end.shape[-2]):
        entering[..., c, :] = h
        h = chunk_decay[..., c, :] * h + chunk_end[..., c, :]
    return entering


def _state_shape(ops: _Operands) -> tuple[int, ...]:
    return (*ops.x.shape[1:], ops.A.shape[-1])


def _entering_states(ops: _Operands, start: torch.Tensor) -> torch.Tensor:
    """The state entering every chunk (batch, G, E, C, N), from the initial state (batch, G, E, N)."""
    if ops.layout.chunks == 1:
        return start[..., None, :].clone()
    local_end = ops.x.new_zeros(_state_shape(ops))
    for t in range(ops.layout.steps):
        local_end.mul_(_decay(ops, t)).addcmul_(ops.x[t, ..., None], _at(ops.B, t))
    return _carry(_chunk_decay(ops), local_end, start)


def _readout(ops: _Operands, entering: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run every chunk from its entering state: y_t = <C_t, h_t> (T, batch, G, E, C) and the
    end state of every chunk (batch, G, E, C, N)."""
    h = entering.clone()
    y = torch.empty_like(ops.x)
    for t in range(ops.layout.steps):
        h.mul_(_decay(ops, t)).addcmul_(ops.x[t, ..., None], _at(ops.B, t))
        torch.sum(h * _at(ops.C, t), dim=-1, out=y[t])
    return y, h


def _adjoint_entering_ends(ops: _Operands, dy: torch.Tensor, end_adjoint: torch.Tensor) -> torch.Tensor:
    """The adjoint entering every chunk's last step from the future (batch, G, E, C, N): each
    chunk's local adjoint from a zero end, pushed past its first decay, carried backwards."""
    if ops.layout.chunks == 1:
        return end_adjoint[..., None, :].clone()
    g = dy.new_zeros(_state_shape(ops))
    for t in reversed(range(ops.layout.steps)):
        g.addcmul_(dy[t, ..., None], _at(ops.C, t)).mul_(_decay(ops, t))
    return _carry(_chunk_decay(ops).flip(-2), g.flip(-2), end_adjoint).flip(-2).contiguous()


def _recompute_states(ops: _Operands, entering: torch.Tensor) -> torch.Tensor:
    """Every chunk's state before its first step and after each step: (T + 1, batch, G, E, C, N)."""
    states = entering.new_empty(ops.layout.steps + 1, *entering.shape)
    states[0] = entering
    for t in range(ops.layout.steps):
        torch.addcmul(states[t] * _decay(ops, t), ops.x[t, ..., None], _at(ops.B, t), out=states[t + 1])
    return states


def _skip(u: torch.Tensor, D: torch.Tensor, groups: int) -> torch.Tensor:
    """D u as (batch, dim, L); a shared u (batch, dim / G, L) meets each group's own D."""
    batch, rows, length = u.shape
    if D.shape[0] == rows:
        return D.float()[:, None] * u.float()
    return (D.float().view(groups, rows, 1) * u.float()[:, None]).reshape(batch, -1, length)


class ChunkedSelectiveScan(torch.autograd.Function):
    """Autograd function over the normalised arguments of ``selective_scan``.

    ``perm`` (G, L) int64 optionally gives every B/C group its own scan order over a u shared by
    the groups, (batch, dim / G, L) (the multi-direction scan; no z gate then); inputs and
    outputs stay in token order. Returns (out (batch, dim, L) in u's dtype, last_state
    (batch, dim, N) float32). Saved for the backward: the inputs, the step-major dt and x, the
    state entering every chunk, and (with a z gate) the output before the gate.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus, perm=None):
        ctx.set_materialize_grads(False)
        inp = ScanInputs(delta, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus)
        ops = _operands(inp, u, perm)
        start = inp.initial_state_fp32().view(inp.batch, inp.groups, -1, inp.d_state)
        entering = _entering_states(ops, start)
        y, ends = _readout(ops, entering)
        y = ops.layout.merge(y)
        if D is not None:
            y = y + _skip(u, D, inp.groups)
        out = y * F.silu(z.float()) if z is not None else y
        gate_input = y if z is not None else None
        ctx.save_for_backward(
            u, delta, A, B, C, D, z, delta_bias, initial_state, perm, entering, ops.dt, ops.x, gate_input
        )
        ctx.delta_softplus = delta_softplus
        last_state = ends[..., -1, :].reshape(inp.batch, inp.dim, inp.d_state)
        return out.to(u.dtype), last_state

    @staticmethod
    def backward(ctx, dout, dlast_state):
        u, delta, A, B, C, D, z, delta_bias, initial_state, perm, entering, dt, x, y = ctx.saved_tensors
        inp = ScanInputs(delta, delta, A, B, C, D, z, delta_bias, initial_state, ctx.delta_softplus)
        ops = _operands(inp, u, perm, dt, x)
        lay = ops.layout
        u32 = u.float()
        shared = u.shape[1] != inp.dim

        # 1. The gradient reaching y = C h + D u, through the z gate.
        dy = delta.new_zeros(delta.shape, dtype=torch.float32) if dout is None else dout.float()
        dz = None
        if z is not None:
            z32 = z.float()
            sig = torch.sigmoid(z32)
            dz = (dy * y * sig * (1 + z32 * (1 - sig))).to(z.dtype)
            dy = dy * z32 * sig
        dD = du = None
        if D is not None:
            per_group = dy.reshape(inp.batch, inp.groups, -1, inp.length) if shared else dy
            u_b = u32[:, None] if shared else u32
            dD = (per_group * u_b).sum((0, -1)).reshape(D.shape).to(D.dtype)
            du = (per_group * D.float().view(inp.groups, -1, 1)).sum(1) if shared else dy * D.float()[:, None]

        # 2. The adjoint entering every chunk's last step, and the states (kept for one pass).
        dy = lay.split(dy)
        end_adjoint = torch.zeros_like(entering[..., 0, :])
        if dlast_state is not None:
            end_adjoint = dlast_state.float().view_as(end_adjoint)
        g = _adjoint_entering_ends(ops, dy, end_adjoint)
        states = _recompute_states(ops, entering)

        # 3. One backward walk accumulates every gradient.
        dx, ddt = torch.empty_like(x), torch.empty_like(x)
        per_step = (lay.steps, *g.shape[:2], *g.shape[3:])  # (T, batch, G, C, N)
        dB = x.new_empty(per_step) if inp.variable_B else torch.zeros_like(g)
        dC = x.new_empty(per_step) if inp.variable_C else torch.zeros_like(g)
        dA = torch.zeros_like(g)
        for t in reversed(range(lay.steps)):
            g.addcmul_(dy[t, ..., None], _at(ops.C, t))
            if inp.variable_C:
                torch.sum(dy[t, ..., None] * states[t + 1], dim=2, out=dC[t])
            else:
                dC.addcmul_(dy[t, ..., None], states[t + 1])
            if inp.variable_B:
                torch.sum(g * x[t, ..., None], dim=2, out=dB[t])
            else:
                dB.addcmul_(g, x[t, ..., None])
            torch.sum(g * _at(ops.B, t), dim=-1, out=dx[t])
            decay_grad = g.mul_(_decay(ops, t)) * states[t]  # g now holds a_t g_t, the adjoint of h_{t-1}
            torch.sum(decay_grad * ops.A, dim=-1, out=ddt[t])
            dA.addcmul_(decay_grad, dt[t, ..., None])

        # 4. Back from (dt, x = dt u) to (delta, u), step-major, then merged once each.
        ddt.addcmul_(dx, lay.split(u32, shared=shared))
        if ctx.delta_softplus:
            ddt.mul_(-torch.expm1(-dt))  # softplus'(v) = sigmoid(v) = 1 - exp(-softplus(v))
        ddelta = lay.merge(ddt)
        du_scan = lay.merge(dx.mul_(dt), sum_groups=shared)
        du = du_scan if du is None else du + du_scan
        return (
            du.to(u.dtype),
            ddelta.to(delta.dtype),
            dA.sum((0, 3)).reshape(A.shape).to(A.dtype),
            _state_grad(dB, B, lay),
            _state_grad(dC, C, lay),
            dD,
            dz,
            ddelta.sum((0, 2)).to(delta_bias.dtype) if delta_bias is not None else None,
            _initial_state_grad(g[..., 0, :], initial_state),
            None,
            None,
        )


def _initial_state_grad(grad: torch.Tensor, initial_state: torch.Tensor | None) -> torch.Tensor | None:
    """The adjoint entering the first chunk, as the gradient of ``initial_state`` (batch, dim, N)."""
    if initial_state is None:
        return None
    return grad.reshape(initial_state.shape).to(initial_state.dtype)


def _state_grad(grad: torch.Tensor, like: torch.Tensor, lay: StepLayout) -> torch.Tensor:
    """dB or dC back in the caller's layout: (batch, G, N, L) or (dim, N)."""
    if like.dim() == 4:
        return lay.merge_states(grad).to(like.dtype)
    return grad.sum((0, 3)).reshape(like.shape).to(like.dtype)
