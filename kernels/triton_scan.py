"""The ``triton`` backend: fused selective-scan forward and backward kernels.

One program owns (batch b, a block of BLOCK_D channels) and keeps their (BLOCK_D, N) state in
registers while it walks the sequence, so the state never touches global memory. The forward
writes only the output, the last state, and the state at the start of every CHUNK steps; the
backward walks the chunks from last to first, recomputes each chunk's states from its saved
start into a small scratch buffer (the CUDA kernel's recomputation), then walks the chunk
backwards with the adjoint g_t = a_{t+1} g_{t+1} + C_t dy_t in registers.

With a permutation table ``perm`` (K, L), channel block k of the folded (K * dim) channels reads
step l at token ``perm[k, l]`` and writes there too: K scan orders run in one launch without
permuted copies of u, delta, B or C. u is then shared by the K directions: (batch, dim, L).

All offsets are int64. The kernels avoid ``tl.associative_scan`` and extern math so they run
under ``TRITON_INTERPRET=1`` on CPU tensors (fp32 and fp16; bf16 needs a GPU).
"""

import torch
import triton
import triton.language as tl

from .scan_inputs import ScanInputs

# Steps between saved states: the backward's recompute length and scratch depth. Read at each
# forward call (tests lower it to cross chunk boundaries with short sequences).
CHUNK = 128


@triton.jit
def _load_state(ptr, mask, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, PRESENT: tl.constexpr):
    """A (BLOCK_D, BLOCK_N) float32 state block (initial state or last-state gradient), zeros if absent."""
    if PRESENT:
        block = tl.load(ptr, mask=mask, other=0.0).to(tl.float32)
    else:
        block = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    return block


@triton.jit
def _program_block(
    A_ptr, B_ptr, C_ptr, D_ptr, dim, d_state, u_dim, per_group,
    HAS_D: tl.constexpr, VARIABLE_B: tl.constexpr, VARIABLE_C: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """This program's (batch, channel block): indices, masks, and its A, time-invariant B/C and D."""
    b = tl.program_id(0).to(tl.int64)
    d = tl.program_id(1).to(tl.int64) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    d_mask, n_mask = d < dim, n < d_state
    dn_mask = d_mask[:, None] & n_mask[None, :]
    dn = d[:, None] * d_state + n[None, :]
    A = tl.load(A_ptr + dn, mask=dn_mask, other=0.0).to(tl.float32)
    B_static = _load_static(B_ptr + dn, dn_mask, BLOCK_D, BLOCK_N, VARIABLE_B)
    C_static = _load_static(C_ptr + dn, dn_mask, BLOCK_D, BLOCK_N, VARIABLE_C)
    Dv = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + d, mask=d_mask, other=0.0).to(tl.float32)
    return b, d, n, d_mask, n_mask, dn_mask, dn, d // per_group, d % u_dim, A, B_static, C_static, Dv


@triton.jit
def _load_static(ptr, mask, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, VARIABLE: tl.constexpr):
    """A time-invariant (dim, N) B or C block; zeros when the operand is time-varying."""
    if VARIABLE:
        block = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    else:
        block = tl.load(ptr, mask=mask, other=0.0).to(tl.float32)
    return block


@triton.jit
def _step_inputs(
    u_ptr, delta_ptr, bias_ptr, B_ptr, C_ptr, perm_ptr,
    b, d, u_row, group, n, d_mask, dn_mask, t, length,
    stride_ub, stride_ud, stride_db, stride_dd,
    stride_Bb, stride_Bg, stride_Bn, stride_Cb, stride_Cg, stride_Cn,
    B_static, C_static,
    HAS_BIAS: tl.constexpr, HAS_PERM: tl.constexpr, VARIABLE_B: tl.constexpr, VARIABLE_C: tl.constexpr,
    SOFTPLUS: tl.constexpr,
):  # fmt: skip
    """Load step t of one channel block: position, u, delta before/after softplus, B_t, C_t."""
    if HAS_PERM:
        pos = tl.load(perm_ptr + group * length + t, mask=d_mask, other=0).to(tl.int64)
    else:
        pos = tl.zeros_like(d) + t
    u = tl.load(u_ptr + b * stride_ub + u_row * stride_ud + pos, mask=d_mask, other=0.0).to(tl.float32)
    dt_pre = tl.load(delta_ptr + b * stride_db + d * stride_dd + pos, mask=d_mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt_pre += tl.load(bias_ptr + d, mask=d_mask, other=0.0).to(tl.float32)
    dt = dt_pre
    if SOFTPLUS:  # threshold 20, as F.softplus
        dt = tl.where(dt_pre <= 20.0, tl.log(1.0 + tl.exp(dt_pre)), dt_pre)
    dt = tl.where(d_mask, dt, 0.0)
    if VARIABLE_B:
        B_off = b * stride_Bb + group[:, None] * stride_Bg + n[None, :] * stride_Bn + pos[:, None]
        Bt = tl.load(B_ptr + B_off, mask=dn_mask, other=0.0).to(tl.float32)
    else:
        Bt = B_static
    if VARIABLE_C:
        C_off = b * stride_Cb + group[:, None] * stride_Cg + n[None, :] * stride_Cn + pos[:, None]
        Ct = tl.load(C_ptr + C_off, mask=dn_mask, other=0.0).to(tl.float32)
    else:
        Ct = C_static
    return pos, u, dt_pre, dt, Bt, Ct


@triton.jit
def _scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr, perm_ptr,
    out_ptr, last_ptr, chunk_ptr,
    dim, length, d_state, u_dim, per_group, n_chunks,
    stride_ub, stride_ud, stride_db, stride_dd,
    stride_Bb, stride_Bg, stride_Bn, stride_Cb, stride_Cg, stride_Cn,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr,
    HAS_PERM: tl.constexpr, VARIABLE_B: tl.constexpr, VARIABLE_C: tl.constexpr, SOFTPLUS: tl.constexpr,
    CHUNK_SIZE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    b, d, n, d_mask, n_mask, dn_mask, dn, group, u_row, A, B_static, C_static, Dv = _program_block(
        A_ptr, B_ptr, C_ptr, D_ptr, dim, d_state, u_dim, per_group,
        HAS_D, VARIABLE_B, VARIABLE_C, BLOCK_D, BLOCK_N,
    )  # fmt: skip
    h = _load_state(h0_ptr + b * dim * d_state + dn, dn_mask, BLOCK_D, BLOCK_N, HAS_H0)
    for c in range(0, n_chunks):
        chunk_off = (b * dim * n_chunks + d[:, None] * n_chunks + c) * d_state + n[None, :]
        tl.store(chunk_ptr + chunk_off, h, mask=dn_mask)
        for t in range(c * CHUNK_SIZE, tl.minimum((c + 1) * CHUNK_SIZE, length)):
            pos, u, dt_pre, dt, Bt, Ct = _step_inputs(
                u_ptr, delta_ptr, bias_ptr, B_ptr, C_ptr, perm_ptr,
                b, d, u_row, group, n, d_mask, dn_mask, t, length,
                stride_ub, stride_ud, stride_db, stride_dd, stride_Bb, stride_Bg, stride_Bn,
                stride_Cb, stride_Cg, stride_Cn, B_static, C_static,
                HAS_BIAS, HAS_PERM, VARIABLE_B, VARIABLE_C, SOFTPLUS,
            )  # fmt: skip
            h = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * Bt
            y = tl.sum(h * Ct, axis=1) + Dv * u
            row = b * stride_db + d * stride_dd + pos
            if HAS_Z:
                zt = tl.load(z_ptr + row, mask=d_mask, other=0.0).to(tl.float32)
                y = y * zt / (1.0 + tl.exp(-zt))
            tl.store(out_ptr + row, y.to(out_ptr.dtype.element_ty), mask=d_mask)
    tl.store(last_ptr + b * dim * d_state + dn, h, mask=dn_mask)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, perm_ptr, chunk_ptr, dout_ptr, dlast_ptr,
    scratch_ptr, du_ptr, ddelta_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr, dh0_ptr,
    dim, length, d_state, u_dim, per_group, n_chunks, n_blocks,
    stride_ub, stride_ud, stride_db, stride_dd,
    stride_Bb, stride_Bg, stride_Bn, stride_Cb, stride_Cg, stride_Cn,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_DLAST: tl.constexpr,
    HAS_PERM: tl.constexpr, VARIABLE_B: tl.constexpr, VARIABLE_C: tl.constexpr, SOFTPLUS: tl.constexpr,
    CHUNK_SIZE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    b, d, n, d_mask, n_mask, dn_mask, dn, group, u_row, A, B_static, C_static, Dv = _program_block(
        A_ptr, B_ptr, C_ptr, D_ptr, dim, d_state, u_dim, per_group,
        HAS_D, VARIABLE_B, VARIABLE_C, BLOCK_D, BLOCK_N,
    )  # fmt: skip
    block = tl.program_id(1).to(tl.int64)
    g = _load_state(dlast_ptr + b * dim * d_state + dn, dn_mask, BLOCK_D, BLOCK_N, HAS_DLAST)
    dA = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dB_static = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dC_static = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dD = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias = tl.zeros([BLOCK_D], dtype=tl.float32)
    scratch = scratch_ptr + (b * dim + d[:, None]) * (CHUNK_SIZE + 1) * d_state + n[None, :]
    # Partial dB/dC rows of this channel block: (batch, n_blocks, N, L).
    part_row = (b * n_blocks + block) * d_state * length + n * length
    for c_rev in range(0, n_chunks):
        c = n_chunks - 1 - c_rev
        start, stop = c * CHUNK_SIZE, tl.minimum((c + 1) * CHUNK_SIZE, length)
        # Recompute the chunk's states: scratch[i] = state before step start + i.
        chunk_off = (b * dim * n_chunks + d[:, None] * n_chunks + c) * d_state + n[None, :]
        h = tl.load(chunk_ptr + chunk_off, mask=dn_mask, other=0.0)
        tl.store(scratch, h, mask=dn_mask)
        for t in range(start, stop):
            pos, u, dt_pre, dt, Bt, Ct = _step_inputs(
                u_ptr, delta_ptr, bias_ptr, B_ptr, C_ptr, perm_ptr,
                b, d, u_row, group, n, d_mask, dn_mask, t, length,
                stride_ub, stride_ud, stride_db, stride_dd, stride_Bb, stride_Bg, stride_Bn,
                stride_Cb, stride_Cg, stride_Cn, B_static, C_static,
                HAS_BIAS, HAS_PERM, VARIABLE_B, VARIABLE_C, SOFTPLUS,
            )  # fmt: skip
            h = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * Bt
            tl.store(scratch + (t - start + 1) * d_state, h, mask=dn_mask)
        tl.debug_barrier()
        # Walk the chunk backwards with the adjoint g = dL/dh_t.
        for i in range(0, stop - start):
            t = stop - 1 - i
            pos, u, dt_pre, dt, Bt, Ct = _step_inputs(
                u_ptr, delta_ptr, bias_ptr, B_ptr, C_ptr, perm_ptr,
                b, d, u_row, group, n, d_mask, dn_mask, t, length,
                stride_ub, stride_ud, stride_db, stride_dd, stride_Bb, stride_Bg, stride_Bn,
                stride_Cb, stride_Cg, stride_Cn, B_static, C_static,
                HAS_BIAS, HAS_PERM, VARIABLE_B, VARIABLE_C, SOFTPLUS,
            )  # fmt: skip
            h_t = tl.load(scratch + (t - start + 1) * d_state, mask=dn_mask, other=0.0)
            h_prev = tl.load(scratch + (t - start) * d_state, mask=dn_mask, other=0.0)
            row = b * stride_db + d * stride_dd + pos
            dy = tl.load(dout_ptr + row, mask=d_mask, other=0.0).to(tl.float32)
            if HAS_Z:
                zt = tl.load(z_ptr + row, mask=d_mask, other=0.0).to(tl.float32)
                sig = 1.0 / (1.0 + tl.exp(-zt))
                y = tl.sum(h_t * Ct, axis=1) + Dv * u
                tl.store(dz_ptr + row, (dy * y * sig * (1.0 + zt * (1.0 - sig))).to(dz_ptr.dtype.element_ty),
                         mask=d_mask)  # fmt: skip
                dy = dy * zt * sig
            g += dy[:, None] * Ct
            x = dt * u
            if VARIABLE_C:
                part_pos = tl.max(tl.where(d_mask, pos, 0), axis=0)
                tl.store(dC_ptr + part_row + part_pos, tl.sum(dy[:, None] * h_t, axis=0), mask=n_mask)
            else:
                dC_static += dy[:, None] * h_t
            if VARIABLE_B:
                part_pos = tl.max(tl.where(d_mask, pos, 0), axis=0)
                tl.store(dB_ptr + part_row + part_pos, tl.sum(g * x[:, None], axis=0), mask=n_mask)
            else:
                dB_static += g * x[:, None]
            dx = tl.sum(g * Bt, axis=1)
            a = tl.exp(dt[:, None] * A)
            g = g * a
            decay_grad = g * h_prev
            dA += decay_grad * dt[:, None]
            ddt = tl.sum(decay_grad * A, axis=1) + dx * u
            if SOFTPLUS:
                ddt = ddt * tl.where(dt_pre <= 20.0, 1.0 / (1.0 + tl.exp(-dt_pre)), 1.0)
            dbias += tl.where(d_mask, ddt, 0.0)
            dD += tl.where(d_mask, dy * u, 0.0)
            tl.store(du_ptr + row, dx * dt + Dv * dy, mask=d_mask)
            tl.store(ddelta_ptr + row, ddt, mask=d_mask)
        tl.debug_barrier()
    bdn = b * dim * d_state + dn
    tl.store(dh0_ptr + bdn, g, mask=dn_mask)
    tl.store(dA_ptr + bdn, dA, mask=dn_mask)
    if not VARIABLE_B:
        tl.store(dB_ptr + bdn, dB_static, mask=dn_mask)
    if not VARIABLE_C:
        tl.store(dC_ptr + bdn, dC_static, mask=dn_mask)
    tl.store(dD_ptr + b * dim + d, dD, mask=d_mask)
    tl.store(dbias_ptr + b * dim + d, dbias, mask=d_mask)


def _block_d(dim: int, per_group: int) -> int:
    """Channels per program: a power of two <= 32 that divides the channels of one group."""
    block = 32
    while per_group % block:
        block //= 2
    return min(block, triton.next_power_of_2(dim))


class TritonSelectiveScan(torch.autograd.Function):
    """Autograd function over the normalised arguments of ``selective_scan``.

    ``perm`` (K, L) int64 optionally makes the channels K scan directions (one B/C group each)
    over a shared u of shape (batch, dim / K, L). Returns (out, last_state float32).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus, perm=None):
        ctx.set_materialize_grads(False)
        inp = ScanInputs(delta, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus)
        batch, dim, length = delta.shape
        u, delta = u.contiguous(), delta.contiguous()
        B, C = B.contiguous(), C.contiguous()
        z = z.contiguous() if z is not None else None
        per_group = dim // inp.groups
        block_d = _block_d(dim, per_group)
        chunk = CHUNK
        n_chunks = triton.cdiv(length, chunk)
        out = torch.empty_like(delta)
        last = delta.new_empty(batch, dim, inp.d_state, dtype=torch.float32)
        chunk_states = delta.new_empty(batch, dim, n_chunks, inp.d_state, dtype=torch.float32)
        dummy = delta.new_empty(1, dtype=torch.float32)
        grid = (batch, triton.cdiv(dim, block_d))
        _scan_fwd_kernel[grid](
            u, delta, A.contiguous(), B, C, _or(D, dummy), _or(z, dummy), _or(delta_bias, dummy),
            _or(initial_state, dummy, contiguous=True), _or(perm, dummy), out, last, chunk_states,
            dim, length, inp.d_state, u.shape[1], per_group, n_chunks, *_strides(u, delta, B, C),
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            HAS_H0=initial_state is not None, HAS_PERM=perm is not None, VARIABLE_B=inp.variable_B,
            VARIABLE_C=inp.variable_C, SOFTPLUS=delta_softplus, CHUNK_SIZE=chunk, BLOCK_D=block_d,
            BLOCK_N=triton.next_power_of_2(inp.d_state),
        )  # fmt: skip
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, initial_state, perm, chunk_states)
        ctx.delta_softplus, ctx.chunk = delta_softplus, chunk
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, B, C, D, z, delta_bias, initial_state, perm, chunk_states = ctx.saved_tensors
        inp = ScanInputs(delta, delta, A, B, C, D, z, delta_bias, initial_state, ctx.delta_softplus)
        batch, dim, length = delta.shape
        N = inp.d_state
        per_group = dim // inp.groups
        block_d = _block_d(dim, per_group)
        n_blocks, n_chunks = triton.cdiv(dim, block_d), chunk_states.shape[2]
        f32 = {"dtype": torch.float32, "device": delta.device}
        dout = torch.zeros_like(delta) if dout is None else dout.contiguous()
        du = torch.empty(batch, dim, length, **f32)
        ddelta = torch.empty(batch, dim, length, **f32)
        dz = torch.empty(batch, dim, length, **f32) if z is not None else None
        state_part = (batch, n_blocks, N, length)
        dB = torch.empty(state_part if inp.variable_B else (batch, dim, N), **f32)
        dC = torch.empty(state_part if inp.variable_C else (batch, dim, N), **f32)
        dA, dh0 = torch.empty(batch, dim, N, **f32), torch.empty(batch, dim, N, **f32)
        dD, dbias = torch.empty(batch, dim, **f32), torch.empty(batch, dim, **f32)
        scratch = torch.empty(batch, dim, ctx.chunk + 1, N, **f32)
        dummy = delta.new_empty(1, dtype=torch.float32)
        _scan_bwd_kernel[(batch, n_blocks)](
            u, delta, A.contiguous(), B, C, _or(D, dummy), _or(z, dummy), _or(delta_bias, dummy),
            _or(perm, dummy), chunk_states, dout, _or(dlast, dummy, contiguous=True), scratch,
            du, ddelta, _or(dz, dummy), dB, dC, dA, dD, dbias, dh0,
            dim, length, N, u.shape[1], per_group, n_chunks, n_blocks, *_strides(u, delta, B, C),
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            HAS_DLAST=dlast is not None, HAS_PERM=perm is not None, VARIABLE_B=inp.variable_B,
            VARIABLE_C=inp.variable_C, SOFTPLUS=ctx.delta_softplus, CHUNK_SIZE=ctx.chunk, BLOCK_D=block_d,
            BLOCK_N=triton.next_power_of_2(N),
        )  # fmt: skip
        if u.shape[1] != dim:  # K directions share u: fold their contributions
            du = du.view(batch, dim // u.shape[1], u.shape[1], length).sum(1)
        return (
            du.to(u.dtype),
            ddelta.to(delta.dtype),
            dA.sum(0).to(A.dtype),
            _state_grad(dB, B, per_group // block_d),
            _state_grad(dC, C, per_group // block_d),
            dD.sum(0).to(D.dtype) if D is not None else None,
            dz.to(z.dtype) if z is not None else None,
            dbias.sum(0).to(delta_bias.dtype) if delta_bias is not None else None,
            dh0.to(initial_state.dtype) if initial_state is not None else None,
            None,
            None,
        )


def _state_grad(grad: torch.Tensor, like: torch.Tensor, blocks_per_group: int) -> torch.Tensor:
    """Sum the per-block partials of dB/dC into ``like``'s shape and dtype."""
    if like.dim() == 4:
        batch, groups, N, length = like.shape
        grad = grad.view(batch, groups, blocks_per_group, N, length).sum(2)
    else:
        grad = grad.sum(0)
    return grad.to(like.dtype)


def _or(t: torch.Tensor | None, dummy: torch.Tensor, contiguous: bool = False) -> torch.Tensor:
    """A kernel pointer argument: the tensor, or a placeholder the kernel never reads."""
    if t is None:
        return dummy
    return t.contiguous() if contiguous else t


def _strides(u, delta, B, C) -> tuple[int, ...]:
    """Batch/channel strides of u and delta and batch/group/state strides of variable B and C."""
    B_strides = B.stride()[:3] if B.dim() == 4 else (0, 0, 0)
    C_strides = C.stride()[:3] if C.dim() == 4 else (0, 0, 0)
    return (u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), *B_strides, *C_strides)
