"""Hierarchical Temporal Mamba (HTM), Motion Mamba's temporal mixer (Zhang et al., ECCV 2024, Alg. 1).

One in-projection gives x and the gate z (width E = expand * d_model); then k *isolated* SSM modules read
the same x, each with its own depthwise causal conv, x projection (dt, B, C), dt projection, A and D:

    y_i = SSM_{A_i}(silu(conv_i(x)))            i = 1..k, each (batch, E, L)
    aggregation "sum":    out = out_proj(sum_i y_i * silu(z))          out_proj: E -> d_model
    aggregation "concat": out = out_proj(cat_i(y_i * silu(z)))         out_proj: k E -> d_model

The paper draws the aggregation as a sum followed by a Linear; the unofficial re-implementation
concatenates. All k modules run as one selective scan over k * E channels with k groups of B and C (the
conv is one depthwise conv over x repeated k times), so k costs no extra kernel launches. Parameter names
follow VMamba's stacked layout (``x_proj_weight`` (k, dt_rank + 2N, E), ``dt_projs_weight`` (k, E, dt_rank),
``dt_projs_bias`` (k, E), ``A_logs`` (k E, N), ``Ds`` (k E)) and are initialised as mamba_simple's.

Every scan runs forward along the sequence, so HTM streams: ``state`` continues a sequence from the
``MambaState`` a previous call returned (conv inputs and SSM state), exactly as one longer call would.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ssmgen.kernels import causal_conv1d, selective_scan

from .mamba import MambaState
from .ssm_init import init_dt_projection, ones_D, resolve_dt_rank, s4d_real_A_log

AGGREGATIONS = ("sum", "concat")


class HierarchicalTemporalMamba(nn.Module):
    """HTM over (batch, L, d_model) tokens with ``num_scans`` isolated SSM modules.

    Args:
        d_model: token width. num_scans: k, the number of isolated SSMs (Motion Mamba: 2(N - i + 1) - 1
            at level i from the outside of its U-Net).
        d_state, d_conv, expand, dt_rank and the dt init options: as mamba_simple's, per module.
        aggregation: "sum" (the paper's figure) or "concat" (concatenate, then the out projection).
        backend: selective-scan backend.
    """

    def __init__(
        self,
        d_model: int,
        num_scans: int,
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
        aggregation: str = "sum",
        backend: str = "auto",
    ):
        super().__init__()
        if not isinstance(num_scans, int) or num_scans < 1:
            raise ValueError(f"num_scans must be a positive integer, got {num_scans!r}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.num_scans, self.aggregation, self.backend = num_scans, aggregation, backend
        self.d_inner = int(expand * d_model)
        self.dt_rank = resolve_dt_rank(dt_rank, d_model)
        k, inner = num_scans, self.d_inner
        self.in_proj = nn.Linear(d_model, 2 * inner, bias=bias)
        self.conv1d = nn.Conv1d(k * inner, k * inner, d_conv, groups=k * inner, padding=d_conv - 1, bias=conv_bias)
        bound = inner**-0.5  # nn.Linear's default init, per module
        self.x_proj_weight = nn.Parameter(torch.empty(k, self.dt_rank + 2 * d_state, inner).uniform_(-bound, bound))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, inner, self.dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, inner))
        init_dt_projection(
            self.dt_projs_weight,
            self.dt_projs_bias,
            self.dt_rank,
            dt_min=dt_min,
            dt_max=dt_max,
            dt_init=dt_init,
            dt_scale=dt_scale,
            dt_init_floor=dt_init_floor,
        )
        self.A_logs = s4d_real_A_log(inner, d_state, copies=k)
        self.Ds = ones_D(k * inner)
        self.out_proj = nn.Linear(inner if aggregation == "sum" else k * inner, d_model, bias=bias)

    def forward(self, hidden_states: torch.Tensor, state: MambaState | None = None, return_state: bool = False):
        """hidden_states (batch, L, d_model) -> (batch, L, d_model), and with ``return_state`` the
        ``MambaState`` (conv (batch, k E, d_conv - 1), ssm (batch, k E, N) float32) to continue from."""
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != self.d_model:
            raise ValueError(
                f"hidden_states must be (batch, L, d_model={self.d_model}), got {tuple(hidden_states.shape)}"
            )
        batch, length, _ = hidden_states.shape
        k, inner = self.num_scans, self.d_inner
        x, z = self.in_proj(hidden_states).transpose(1, 2).chunk(2, dim=1)  # (batch, E, L) each
        u, conv_state = causal_conv1d(
            x.repeat(1, k, 1),
            self.conv1d.weight,
            self.conv1d.bias,
            activation="silu",
            initial_state=state.conv if state is not None else None,
            return_final_state=True,
        )  # (batch, k E, L): module i's conv output in channels [i E, (i + 1) E)
        x_dbl = torch.einsum("bkel,kce->bkcl", u.view(batch, k, inner, length), self.x_proj_weight)
        dt, B, C = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=2)
        dt = torch.einsum("bkrl,ker->bkel", dt, self.dt_projs_weight).reshape(batch, k * inner, length)
        y, ssm_state = selective_scan(
            u,
            dt.to(u.dtype),
            -torch.exp(self.A_logs.float()),
            B.contiguous(),
            C.contiguous(),
            self.Ds.float(),
            delta_bias=self.dt_projs_bias.float().flatten(),
            delta_softplus=True,
            return_last_state=True,
            initial_state=state.ssm if state is not None else None,
            backend=self.backend,
        )
        y = y.view(batch, k, inner, length)
        gate = F.silu(z)[:, None]
        if self.aggregation == "sum":
            y = (y * gate).sum(1)
        else:
            y = (y * gate).reshape(batch, k * inner, length)
        out = self.out_proj(y.transpose(1, 2))
        return (out, MambaState(conv_state, ssm_state)) if return_state else out
