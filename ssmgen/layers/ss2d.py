"""SS2D: VMamba's multi-direction 2-D selective-scan mixer (``forward_type="v2"``).

in_proj -> (x, z), z = SiLU(z); x -> depthwise KxK conv + SiLU; the tokens are scanned in K
orders, each with its own x projection (dt, B, C), dt projection, A and D; the K outputs,
back in token order, are summed -> LayerNorm -> * z -> out_proj. Parameter names are VMamba's
(``x_proj_weight`` (K, dt_rank + 2N, d_inner), ``dt_projs_weight`` (K, d_inner, dt_rank),
``dt_projs_bias`` (K, d_inner), ``A_logs`` (K * d_inner, N), ``Ds`` (K * d_inner)), so VMamba
and LaMamba-Diff checkpoints load by module prefix. The projections run once in token order
(they are per token) and the K directions run in one multi-direction scan.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ssmgen.kernels import (
    VMAMBA_CROSS_SCAN_SPECS,
    multi_direction_scan,
    parse_scan_order_spec,
    scan_order_from_spec,
    stack_scan_orders,
)

from .ssm_init import init_dt_projection, ones_D, resolve_dt_rank, s4d_real_A_log


class SS2D(nn.Module):
    """Multi-direction Mamba over channels-last maps (batch, H, W, d_model).

    Args:
        directions: scan-order specs (see ``ssmgen.kernels.scan_order_from_spec``); VMamba's
            cross-scan by default, ``LAMAMBA_SNAKE_SPECS`` for LaMamba-Diff's continuous scans.
        d_state: N (LaMamba-Diff uses 1). ssm_ratio: d_inner / d_model. d_conv: depthwise conv
            size (< 2 disables it). The dt options follow mamba_simple.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        dt_rank: int | str = "auto",
        d_conv: int = 3,
        conv_bias: bool = True,
        bias: bool = False,
        directions: tuple[str, ...] = VMAMBA_CROSS_SCAN_SPECS,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        backend: str = "auto",
    ):
        super().__init__()
        if not directions:
            raise ValueError("directions must name at least one scan order")
        for spec in directions:
            parse_scan_order_spec(spec)  # fail early on an unknown spec
        self.d_model, self.d_state = d_model, d_state
        self.d_inner = int(ssm_ratio * d_model)
        self.dt_rank = resolve_dt_rank(dt_rank, d_model)
        self.directions, self.backend = tuple(directions), backend
        K = len(directions)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv2d = None
        if d_conv > 1:
            self.conv2d = nn.Conv2d(
                self.d_inner,
                self.d_inner,
                d_conv,
                padding=(d_conv - 1) // 2,
                groups=self.d_inner,
                bias=conv_bias,
            )
        bound = self.d_inner**-0.5  # nn.Linear's default init for each direction's x projection
        self.x_proj_weight = nn.Parameter(
            torch.empty(K, self.dt_rank + 2 * d_state, self.d_inner).uniform_(-bound, bound)
        )
        self.dt_projs_weight = nn.Parameter(torch.empty(K, self.d_inner, self.dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(K, self.d_inner))
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
        self.A_logs = s4d_real_A_log(self.d_inner, d_state, copies=K)
        self.Ds = ones_D(K * self.d_inner)
        self.out_norm = nn.LayerNorm(self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, H, W, d_model) -> (batch, H, W, d_model)."""
        if x.dim() != 4 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be (batch, H, W, d_model={self.d_model}), got {tuple(x.shape)}")
        batch, height, width, _ = x.shape
        x, z = self.in_proj(x).chunk(2, dim=-1)
        z = F.silu(z)
        x = x.permute(0, 3, 1, 2).contiguous()  # NCHW: DDP expects the conv weight gradient in that layout
        if self.conv2d is not None:
            x = self.conv2d(x)
        u = F.silu(x).flatten(2).float()  # (batch, d_inner, L); VMamba v2 scans in float32
        orders = stack_scan_orders(tuple(scan_order_from_spec(s, height, width, u.device) for s in self.directions))
        x_dbl = torch.einsum("bdl,kcd->bkcl", u, self.x_proj_weight.float())
        dts, Bs, Cs = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight.float()).flatten(1, 2)
        ys = multi_direction_scan(
            u,
            dts,
            -torch.exp(self.A_logs.float()),
            Bs.contiguous(),
            Cs.contiguous(),
            orders,
            D=self.Ds.float(),
            delta_bias=self.dt_projs_bias.float().flatten(),
            delta_softplus=True,
            backend=self.backend,
        )
        y = self.out_norm(ys.sum(1).transpose(1, 2)).view(batch, height, width, self.d_inner)
        return self.out_proj(y.to(z.dtype) * z)
