"""The Mamba mixer and SS2D against unfused constructions written out here."""

import pytest
import torch
import torch.nn.functional as F

from ssmgen.kernels import LAMAMBA_SNAKE_SPECS, scan_order, scan_order_from_spec, selective_scan_reference
from ssmgen.layers.mamba import Mamba
from ssmgen.layers.ss2d import SS2D
from ssmgen.layers.ssm_init import exempt_from_weight_decay

# mamba_ssm.modules.mamba_simple.Mamba(d_model=8, d_state=4, d_conv=4, expand=2): keys and shapes.
MAMBA_SIMPLE_KEYS = {
    "in_proj.weight": (32, 8),
    "conv1d.weight": (16, 1, 4),
    "conv1d.bias": (16,),
    "x_proj.weight": (1 + 2 * 4, 16),
    "dt_proj.weight": (16, 1),
    "dt_proj.bias": (16,),
    "A_log": (16, 4),
    "D": (16,),
    "out_proj.weight": (8, 16),
}


def unfused_mamba(m: Mamba, x: torch.Tensor) -> torch.Tensor:
    """mamba_simple's slow path: nn.Conv1d truncated, SiLU, projections, sequential scan."""
    xz = m.in_proj(x).transpose(1, 2)
    u, z = xz.chunk(2, dim=1)
    u = F.silu(m.conv1d(u)[..., : u.shape[-1]])
    dt, B, C = m.x_proj(u.transpose(1, 2)).split([m.dt_rank, m.d_state, m.d_state], dim=-1)
    y = selective_scan_reference(
        u, m.dt_proj(dt).transpose(1, 2), -torch.exp(m.A_log), B.transpose(1, 2), C.transpose(1, 2), m.D,
        z=z, delta_softplus=True,
    )  # fmt: skip
    return m.out_proj(y.transpose(1, 2))


def test_mamba_state_dict_layout_is_mamba_simple():
    m = Mamba(8, d_state=4)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == MAMBA_SIMPLE_KEYS
    m.load_state_dict({k: torch.randn(s) for k, s in MAMBA_SIMPLE_KEYS.items()})


def test_mamba_initialisation_follows_mamba_simple():
    m = Mamba(32, d_state=8, dt_min=0.002, dt_max=0.05)
    dt = F.softplus(m.dt_proj.bias)
    assert dt.min() >= 0.002 * 0.999 and dt.max() <= 0.05 * 1.001
    torch.testing.assert_close(-torch.exp(m.A_log), -torch.arange(1.0, 9.0).repeat(64, 1))
    assert torch.equal(m.D, torch.ones(64))
    assert m.dt_proj.weight.abs().max() <= m.dt_rank**-0.5
    names = [n for n, _ in m.named_parameters() if exempt_from_weight_decay(n)]
    assert names == ["A_log", "D"]


def test_mamba_matches_unfused_slow_path_with_gradients():
    torch.manual_seed(0)
    m = Mamba(8, d_state=4)
    x = torch.randn(2, 23, 8, requires_grad=True)
    out = m(x)
    expected = unfused_mamba(m, x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    (gx,) = torch.autograd.grad((out * expected.detach()).sum(), x)
    (gx_ref,) = torch.autograd.grad((expected * expected.detach()).sum(), x)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-4, atol=1e-5)


def test_mamba_streaming_equals_one_pass():
    torch.manual_seed(0)
    m = Mamba(8, d_state=4)
    x = torch.randn(2, 30, 8)
    full = m(x)
    first, state = m(x[:, :11], return_state=True)
    second, _ = m(x[:, 11:], state=state, return_state=True)
    torch.testing.assert_close(torch.cat([first, second], 1), full, rtol=1e-5, atol=1e-5)


def test_mamba_scan_order_is_permute_scan_unpermute():
    torch.manual_seed(0)
    m = Mamba(8, d_state=4)
    order = scan_order("col_snake", 3, 4)
    x = torch.randn(1, 12, 8)
    expected = m(x[:, order.perm])[:, order.inverse]
    torch.testing.assert_close(m(x, scan_order=order), expected)


def test_mamba_is_causal_and_bidirectional_sees_the_future():
    torch.manual_seed(0)
    x = torch.randn(1, 10, 8)
    later = x.clone()
    later[:, 7] += 1.0
    causal = Mamba(8, d_state=4)
    assert torch.equal(causal(x)[:, :7], causal(later)[:, :7])
    bi = Mamba(8, d_state=4, bidirectional=True)
    assert not torch.allclose(bi(x)[:, :7], bi(later)[:, :7])
    assert {"conv1d_b.weight", "x_proj_b.weight", "dt_proj_b.bias", "A_b_log", "D_b"} <= set(bi.state_dict())


def test_mamba_bidirectional_is_sum_of_directions():
    torch.manual_seed(0)
    bi = Mamba(8, d_state=4, bidirectional=True, bidirectional_average=True)
    fwd, bwd = Mamba(8, d_state=4), Mamba(8, d_state=4)
    shared = {k: v for k, v in bi.state_dict().items() if "_b" not in k}
    fwd.load_state_dict(shared)
    bwd.load_state_dict(shared | {k.replace("_b.", ".").replace("A_b_log", "A_log").replace("D_b", "D"): v
                                  for k, v in bi.state_dict().items() if "_b" in k})  # fmt: skip
    x = torch.randn(2, 9, 8)
    # out_proj is linear: out_proj((y_f + y_b) / 2) = (out_f + out_b) / 2 with the shared projections
    expected = (fwd(x) + bwd(x.flip(1)).flip(1)) / 2
    torch.testing.assert_close(bi(x), expected, rtol=1e-5, atol=1e-5)


def test_mamba_bad_input():
    m = Mamba(8, d_state=4)
    with pytest.raises(ValueError, match="hidden_states"):
        m(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match="scan_order"):
        m(torch.randn(1, 5, 8), scan_order=scan_order("row", 2, 2))
    with pytest.raises(ValueError, match="state"):
        Mamba(8, bidirectional=True)(torch.randn(1, 5, 8), return_state=True)


def unfused_ss2d(m: SS2D, x: torch.Tensor) -> torch.Tensor:
    """VMamba's cross-scan path: K permuted copies, one reference scan each, merged by inverse."""
    batch, H, W, _ = x.shape
    u, z = m.in_proj(x).chunk(2, dim=-1)
    u = F.silu(m.conv2d(u.permute(0, 3, 1, 2))).flatten(2)
    y = 0
    for k, spec in enumerate(m.directions):
        order = scan_order_from_spec(spec, H, W)
        xs = u[..., order.perm]
        dt, B, C = torch.einsum("bdl,cd->bcl", xs, m.x_proj_weight[k]).split([m.dt_rank, m.d_state, m.d_state], 1)
        ch = slice(k * m.d_inner, (k + 1) * m.d_inner)
        ys = selective_scan_reference(
            xs, torch.einsum("brl,dr->bdl", dt, m.dt_projs_weight[k]), -torch.exp(m.A_logs[ch]), B, C,
            m.Ds[ch],
            delta_bias=m.dt_projs_bias[k], delta_softplus=True,
        )  # fmt: skip
        y = y + ys[..., order.inverse]
    y = m.out_norm(y.transpose(1, 2)).view(batch, H, W, -1)
    return m.out_proj(y * F.silu(z))


@pytest.mark.parametrize("directions", [("row", "col", "row_reverse", "col_reverse"), LAMAMBA_SNAKE_SPECS])
def test_ss2d_matches_cross_scan_construction(directions):
    torch.manual_seed(0)
    m = SS2D(8, d_state=2, directions=directions, conv_bias=False)
    x = torch.randn(2, 4, 6, 8)
    torch.testing.assert_close(m(x), unfused_ss2d(m, x), rtol=1e-5, atol=1e-5)


def test_ss2d_parameter_layout_is_vmamba():
    m = SS2D(16, d_state=1, directions=LAMAMBA_SNAKE_SPECS, conv_bias=False)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        "in_proj.weight": (64, 16),
        "conv2d.weight": (32, 1, 3, 3),
        "x_proj_weight": (4, 1 + 2, 32),
        "dt_projs_weight": (4, 32, 1),
        "dt_projs_bias": (4, 32),
        "A_logs": (128, 1),
        "Ds": (128,),
        "out_norm.weight": (32,),
        "out_norm.bias": (32,),
        "out_proj.weight": (16, 32),
    }
    torch.testing.assert_close(m.A_logs, torch.zeros(128, 1))  # A = -1 for d_state = 1


def test_ss2d_bad_arguments():
    with pytest.raises(ValueError, match="scan order spec"):
        SS2D(8, directions=("diagonal",))
    with pytest.raises(ValueError, match="x must be"):
        SS2D(8)(torch.randn(1, 4, 4, 7))
