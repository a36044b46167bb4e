"""Motion Mamba's layers against independent oracles: HTM (k isolated SSMs, streaming), BSM (a bidirectional
scan over channels), and MLD's skip-connected transformer stack."""

import pytest
import torch
import torch.nn.functional as F
from model_cases import randomize_

from ssmgen.layers.bidirectional_spatial_mamba import BidirectionalSpatialMamba
from ssmgen.layers.hierarchical_temporal_mamba import HierarchicalTemporalMamba
from ssmgen.layers.mamba import Mamba
from ssmgen.layers.skip_transformer import SkipTransformer


def perturbed(module: torch.nn.Module) -> torch.nn.Module:
    """Every parameter moved a little, so no two SSM modules share their initial values."""
    return randomize_(module, scale=0.1, seed=0)


def sequential_ssm(u, dt, A, B, C, D):
    """h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t, y_t = C_t . h_t + D u_t, one step at a time.
    u, dt (batch, E, L); A (E, N); B, C (batch, N, L); D (E,)."""
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[-1]):
        h = torch.exp(dt[..., t, None] * A) * h + dt[..., t, None] * B[:, None, :, t] * u[..., t, None]
        ys.append((h * C[:, None, :, t]).sum(-1) + D * u[..., t])
    return torch.stack(ys, dim=-1)


def htm_oracle(htm: HierarchicalTemporalMamba, hidden: torch.Tensor) -> torch.Tensor:
    """HTM written module by module: k separate convs, projections and SSMs, then the aggregation."""
    E, N, R, K = htm.d_inner, htm.d_state, htm.dt_rank, htm.d_conv
    x, z = htm.in_proj(hidden).chunk(2, dim=-1)  # (batch, L, E)
    x = x.transpose(1, 2)
    outputs = []
    for i in range(htm.num_scans):
        rows = slice(i * E, (i + 1) * E)
        conv = F.conv1d(F.pad(x, (K - 1, 0)), htm.conv1d.weight[rows], htm.conv1d.bias[rows], groups=E)
        u = F.silu(conv)  # (batch, E, L)
        proj = u.transpose(1, 2) @ htm.x_proj_weight[i].T  # (batch, L, R + 2N)
        dt_low, B, C = proj.split([R, N, N], dim=-1)
        dt = F.softplus(dt_low @ htm.dt_projs_weight[i].T + htm.dt_projs_bias[i]).transpose(1, 2)
        A = -torch.exp(htm.A_logs[rows])
        y = sequential_ssm(u, dt, A, B.transpose(1, 2), C.transpose(1, 2), htm.Ds[rows])
        outputs.append(y.transpose(1, 2) * F.silu(z))
    combined = sum(outputs) if htm.aggregation == "sum" else torch.cat(outputs, dim=-1)
    return htm.out_proj(combined)


@pytest.mark.parametrize("aggregation", ["sum", "concat"])
@pytest.mark.parametrize("num_scans", [1, 3])
def test_htm_equals_k_isolated_ssms(aggregation, num_scans):
    htm = perturbed(HierarchicalTemporalMamba(8, num_scans, d_state=4, aggregation=aggregation, backend="torch"))
    hidden = torch.randn(2, 7, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(htm(hidden), htm_oracle(htm, hidden), rtol=1e-4, atol=1e-5)
    assert htm.A_logs.shape == (num_scans * 16, 4) and htm.conv1d.weight.shape[0] == num_scans * 16
    expected_in = 16 if aggregation == "sum" else num_scans * 16
    assert htm.out_proj.in_features == expected_in


def test_htm_streams_from_a_prefix_state():
    htm = perturbed(HierarchicalTemporalMamba(8, 3, d_state=4, backend="torch"))
    hidden = torch.randn(2, 11, 8, generator=torch.Generator().manual_seed(2))
    whole = htm(hidden)
    first, state = htm(hidden[:, :4], return_state=True)
    second = htm(hidden[:, 4:], state=state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, rtol=1e-5, atol=1e-6)
    assert state.conv.shape == (2, 3 * 16, 3) and state.ssm.shape == (2, 3 * 16, 4)


def test_htm_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_scans"):
        HierarchicalTemporalMamba(8, 0)
    with pytest.raises(ValueError, match="aggregation"):
        HierarchicalTemporalMamba(8, 2, aggregation="max")
    with pytest.raises(ValueError, match="hidden_states"):
        HierarchicalTemporalMamba(8, 2)(torch.randn(2, 5, 6))


def one_direction_copy(bidirectional: Mamba, backward: bool) -> Mamba:
    """A unidirectional Mamba holding one direction's parameters (and the shared projections)."""
    single = Mamba(bidirectional.d_model, d_state=bidirectional.d_state, d_conv=bidirectional.d_conv,
                   expand=bidirectional.d_inner // bidirectional.d_model, backend="reference")  # fmt: skip
    suffix = "_b" if backward else ""
    names = {"conv1d": f"conv1d{suffix}", "x_proj": f"x_proj{suffix}", "dt_proj": f"dt_proj{suffix}",
             "A_log": "A_b_log" if backward else "A_log", "D": f"D{suffix}"}  # fmt: skip
    state = bidirectional.state_dict()
    mapped = {"in_proj.weight": state["in_proj.weight"], "out_proj.weight": state["out_proj.weight"]}
    for target, source in names.items():
        for key, value in state.items():
            if key == source or key.startswith(source + "."):
                mapped[target + key[len(source) :]] = value
    single.load_state_dict(mapped)
    return single


def test_bsm_is_a_forward_plus_a_separate_backward_scan_over_the_channels():
    bsm = perturbed(BidirectionalSpatialMamba(tokens=4, channels=12, d_state=4, backend="reference"))
    assert bsm.mamba.A_log.data_ptr() != bsm.mamba.A_b_log.data_ptr()  # separate parameters
    x = torch.randn(3, 4, 12, generator=torch.Generator().manual_seed(3))
    h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * bsm.norm.weight  # RMSNorm over channels
    sequence = h.transpose(1, 2)  # (batch, 12 channel steps, 4 token features)
    forward = one_direction_copy(bsm.mamba, backward=False)(sequence)
    backward = one_direction_copy(bsm.mamba, backward=True)(sequence.flip(1)).flip(1)
    torch.testing.assert_close(bsm(x), (forward + backward).transpose(1, 2), rtol=1e-4, atol=1e-5)


def test_bsm_backward_direction_sees_the_future_channels():
    bsm = perturbed(BidirectionalSpatialMamba(tokens=2, channels=10, d_state=4, backend="reference"))
    sequence = torch.randn(1, 10, 2, generator=torch.Generator().manual_seed(4))
    changed = sequence.clone()
    changed[:, 7] += 1.0  # a later channel
    forward_only = one_direction_copy(bsm.mamba, backward=False)
    delta_both = (bsm.mamba(changed) - bsm.mamba(sequence)).abs().amax(-1)[0]
    delta_forward = (forward_only(changed) - forward_only(sequence)).abs().amax(-1)[0]
    assert (delta_forward[:7] == 0).all()  # the forward scan cannot see channel 7 before it
    assert (delta_both[:7] > 1e-6).all()  # the block can: its backward scan carries channel 7 backwards


def test_bsm_rejects_a_wrong_group_shape():
    with pytest.raises(ValueError, match="tokens=4"):
        BidirectionalSpatialMamba(tokens=4, channels=8)(torch.randn(2, 3, 8))


def test_skip_transformer_wires_mirrored_skips_and_ignores_padding():
    torch.manual_seed(5)
    stack = SkipTransformer(width=8, num_heads=2, ff_size=16, num_layers=5, dropout=0.0).eval()
    assert (len(stack.input_blocks), len(stack.output_blocks), len(stack.linear_blocks)) == (2, 2, 2)
    seen = {}
    for name in ("input_blocks.0", "input_blocks.1", "middle_block", "linear_blocks.0", "linear_blocks.1"):
        module = stack.get_submodule(name)
        if name.startswith("linear"):
            module.register_forward_hook(lambda m, args, out, n=name: seen.__setitem__(n, args[0]))
        else:
            module.register_forward_hook(lambda m, args, out, n=name: seen.__setitem__(n, out))
    x = torch.randn(2, 6, 8)
    padding = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    out = stack(x, padding_mask=padding)
    torch.testing.assert_close(seen["linear_blocks.0"], torch.cat([seen["middle_block"], seen["input_blocks.1"]], -1))
    assert seen["linear_blocks.1"][..., 8:].equal(seen["input_blocks.0"])
    changed = x.clone()
    changed[1, 4:] = 100.0  # padded tokens: never attended to
    torch.testing.assert_close(stack(changed, padding_mask=padding)[1, :4], out[1, :4])
    with pytest.raises(ValueError, match="odd"):
        SkipTransformer(8, 2, 16, num_layers=4)
