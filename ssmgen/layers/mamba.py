"""The Mamba-1 mixer with mamba-ssm's ``mamba_simple.Mamba`` parameter names and initialisation.

in_proj -> (x, z); x -> causal depthwise conv1d + SiLU -> x_proj -> (dt, B, C); dt -> dt_proj
(its bias is the scan's delta_bias, under softplus); y = selective_scan(x, dt, A, B, C, D, z);
out_proj. A state dict saved from ``mamba_ssm.modules.mamba_simple.Mamba`` loads as is; the
``bidirectional`` option adds Vim's (``bimamba_type="v2"``) backward-direction parameters
``conv1d_b``, ``x_proj_b``, ``dt_proj_b``, ``A_b_log``, ``D_b`` with shared in/out projections.

Options beyond mamba_simple: a scan order (a permutation of the tokens: scan in that order and
return outputs in token order) and streaming state (continue a sequence from a previous call).
"""

from typing import NamedTuple

import torch
from torch import nn

from ssmgen.kernels import ScanOrder, causal_conv1d, selective_scan

from .ssm_init import init_dt_projection, ones_D, resolve_dt_rank, s4d_real_A_log


class MambaState(NamedTuple):
    """What a Mamba mixer needs to continue a sequence: the last (d_conv - 1) conv inputs
    (batch, d_inner, d_conv - 1) and the SSM state (batch, d_inner, d_state), float32."""

    conv: torch.Tensor
    ssm: torch.Tensor


def _direction_parameters(d_inner, d_state, d_conv, dt_rank, conv_bias, dt_options):
    """The per-direction part of the mixer: (conv1d, x_proj, dt_proj, A_log, D)."""
    conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=conv_bias)
    x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
    dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
    init_dt_projection(dt_proj.weight, dt_proj.bias, dt_rank, **dt_options)
    return conv1d, x_proj, dt_proj, s4d_real_A_log(d_inner, d_state), ones_D(d_inner)


class Mamba(nn.Module):
    """Mamba-1 mixer over (batch, L, d_model) tokens.

    Args follow mamba_simple: ``d_state=16, d_conv=4, expand=2, dt_rank="auto"``, the dt init
    options, ``conv_bias=True``, ``bias=False``. ``bidirectional`` adds Vim-v2 backward
    parameters; ``bidirectional_average`` divides the sum of both directions by 2 (Vim's
    ``if_devide_out``). ``backend`` selects the selective-scan backend.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        bidirectional: bool = False,
        bidirectional_average: bool = False,
        backend: str = "auto",
    ):
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = resolve_dt_rank(dt_rank, d_model)
        self.bidirectional, self.bidirectional_average = bidirectional, bidirectional_average
        self.backend = backend
        dt_options = dict(dt_min=dt_min, dt_max=dt_max, dt_init=dt_init, dt_scale=dt_scale, dt_init_floor=dt_init_floor)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        direction = (self.d_inner, d_state, d_conv, self.dt_rank, conv_bias, dt_options)
        self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D = _direction_parameters(*direction)
        if bidirectional:
            self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b = _direction_parameters(*direction)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def forward(
        self,
        hidden_states: torch.Tensor,
        scan_order: ScanOrder | None = None,
        state: MambaState | None = None,
        return_state: bool = False,
    ):
        """hidden_states (batch, L, d_model) -> (batch, L, d_model).

        ``scan_order`` scans the tokens in ``perm`` order and returns outputs in token order.
        ``state`` continues from a previous call's returned state (``return_state=True``).
        """
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != self.d_model:
            raise ValueError(
                f"hidden_states must be (batch, L, d_model={self.d_model}), got {tuple(hidden_states.shape)}"
            )
        if self.bidirectional and (state is not None or return_state):
            raise ValueError("state: a bidirectional Mamba sees the future, so it cannot stream")
        if scan_order is not None:
            if scan_order.perm.shape != (hidden_states.shape[1],):
                raise ValueError(
                    f"scan_order must be a permutation of the {hidden_states.shape[1]} tokens, "
                    f"got perm of shape {tuple(scan_order.perm.shape)}"
                )
            hidden_states = hidden_states[:, scan_order.perm.to(hidden_states.device)]
        x, z = self.in_proj(hidden_states).transpose(1, 2).chunk(2, dim=1)  # (batch, d_inner, L) each
        parameters = (self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D)
        y, new_state = self._scan(x, z, parameters, state)
        if self.bidirectional:
            backward = (self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b)
            y_b, _ = self._scan(x.flip(-1), z.flip(-1), backward, None)
            y = y + y_b.flip(-1)
            if self.bidirectional_average:
                y = y / 2
        out = self.out_proj(y.transpose(1, 2))
        if scan_order is not None:
            out = out[:, scan_order.inverse.to(out.device)]
        return (out, new_state) if return_state else out

    def _scan(self, x, z, parameters, state):
        """One direction: conv, projections and the selective scan over (batch, d_inner, L)."""
        conv1d, x_proj, dt_proj, A_log, D = parameters
        x, conv_state = causal_conv1d(
            x,
            conv1d.weight,
            conv1d.bias,
            activation="silu",
            initial_state=state.conv if state is not None else None,
            return_final_state=True,
        )
        x_dbl = x_proj(x.transpose(1, 2))  # (batch, L, dt_rank + 2 N)
        dt, B, C = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = (dt @ dt_proj.weight.T).transpose(1, 2).to(x.dtype)  # bias applied inside the scan
        y, ssm_state = selective_scan(
            x,
            dt,
            -torch.exp(A_log.float()),
            B.transpose(1, 2),
            C.transpose(1, 2),
            D.float(),
            z=z,
            delta_bias=dt_proj.bias.float(),
            delta_softplus=True,
            return_last_state=True,
            initial_state=state.ssm if state is not None else None,
            backend=self.backend,
        )
        return y, MambaState(conv_state, ssm_state)
