"""RMSNorm, the Vim/DiMSUM add + norm, adaLN modulation, and the two MLPs, against closed forms."""

import math

import pytest
import torch
import torch.nn.functional as F

from ssmgen.layers.mlp import GatedMLP, Mlp, tanh_gelu
from ssmgen.layers.norms import RMSNorm, add_and_norm, apply_gate, modulate


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))


def test_rms_norm_matches_torch_rms_norm_and_keeps_dtype():
    torch.manual_seed(0)
    norm = RMSNorm(8, eps=1e-5)
    _randomise(norm)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    expected = F.rms_norm(x, (8,), norm.weight.double(), eps=1e-5)
    torch.testing.assert_close(norm(x), expected)
    x_bf16 = x.to(torch.bfloat16)
    out = norm(x_bf16)
    assert out.dtype == torch.bfloat16
    manual = x_bf16.float() / torch.sqrt(x_bf16.float().pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight
    torch.testing.assert_close(out, manual.to(torch.bfloat16))


def test_rms_norm_rejects_bad_arguments():
    with pytest.raises(ValueError, match="dim"):
        RMSNorm(0)
    with pytest.raises(ValueError, match="eps"):
        RMSNorm(4, eps=0.0)
    with pytest.raises(ValueError, match="channels"):
        RMSNorm(4)(torch.randn(2, 5))


def test_add_and_norm_first_block_and_later_blocks():
    torch.manual_seed(0)
    norm = RMSNorm(6)
    _randomise(norm)
    x = torch.randn(2, 3, 6)
    h, residual = add_and_norm(x, None, norm)
    torch.testing.assert_close(residual, x)
    torch.testing.assert_close(h, norm(x))

    x2 = torch.randn(2, 3, 6)
    h2, residual2 = add_and_norm(x2, residual, norm)
    torch.testing.assert_close(residual2, x + x2)
    torch.testing.assert_close(h2, norm(x + x2))


def test_add_and_norm_keeps_the_residual_stream_in_float32():
    torch.manual_seed(0)
    norm = RMSNorm(16)
    x = torch.randn(2, 4, 16).to(torch.bfloat16)
    residual = torch.randn(2, 4, 16)  # float32 stream from earlier blocks
    h, new_residual = add_and_norm(x, residual, norm, residual_in_fp32=True)
    assert new_residual.dtype == torch.float32 and h.dtype == torch.bfloat16
    exact_sum = residual + x.float()
    torch.testing.assert_close(new_residual, exact_sum, rtol=0, atol=0)
    torch.testing.assert_close(h, norm(exact_sum).to(torch.bfloat16))

    h, first = add_and_norm(x, None, norm, residual_in_fp32=False)
    assert first.dtype == torch.bfloat16
    _, first_fp32 = add_and_norm(x, None, norm, residual_in_fp32=True)
    assert first_fp32.dtype == torch.float32

    with pytest.raises(ValueError, match="residual"):
        add_and_norm(x, residual[:, :2], norm)


def test_modulate_and_gate_broadcast_over_tokens_and_channels_last_maps():
    torch.manual_seed(0)
    batch, channels = 2, 3
    shift, scale, gate = (torch.randn(batch, channels) for _ in range(3))
    tokens = torch.randn(batch, 5, channels)
    expected = torch.empty_like(tokens)
    for b in range(batch):
        for i in range(5):
            expected[b, i] = tokens[b, i] * (1 + scale[b]) + shift[b]
    torch.testing.assert_close(modulate(tokens, shift, scale), expected)

    maps = torch.randn(batch, 4, 5, channels)
    as_tokens = modulate(maps.reshape(batch, 20, channels), shift, scale).reshape(maps.shape)
    torch.testing.assert_close(modulate(maps, shift, scale), as_tokens)
    torch.testing.assert_close(modulate(maps, shift[:, None, None], scale[:, None, None]), as_tokens)
    torch.testing.assert_close(apply_gate(maps, gate), gate[:, None, None] * maps)

    with pytest.raises(ValueError, match="shift"):
        modulate(tokens, torch.randn(batch, channels + 1), scale)
    with pytest.raises(ValueError, match="gate"):
        apply_gate(tokens, torch.randn(batch + 1, channels))


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _gelu_exact(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


@pytest.mark.parametrize("act_layer, activation", [(torch.nn.GELU, _gelu_exact), (tanh_gelu, _gelu_tanh)])
def test_mlp_matches_closed_form(act_layer, activation):
    torch.manual_seed(0)
    mlp = Mlp(6, 10, act_layer=act_layer).double()
    x = torch.randn(2, 3, 6, dtype=torch.float64)
    hidden = activation(x @ mlp.fc1.weight.T + mlp.fc1.bias)
    torch.testing.assert_close(mlp(x), hidden @ mlp.fc2.weight.T + mlp.fc2.bias)
    assert set(mlp.state_dict()) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}


def test_gated_mlp_shapes_follow_dimsum_and_output_matches_closed_form():
    # DiM-L/2 passes hidden = 4 * dim: 1024 -> 8192 (w12) and 4096 -> 1024 (w3). Same ratios, tiny sizes.
    dim = 8
    mlp = GatedMLP(dim, 4 * dim).double()
    assert mlp.w12.weight.shape == (8 * dim, dim)
    assert mlp.w3.weight.shape == (dim, 4 * dim)
    assert set(mlp.state_dict()) == {"w12.weight", "w12.bias", "w3.weight", "w3.bias"}
    x = torch.randn(3, dim, dtype=torch.float64)
    both = x @ mlp.w12.weight.T + mlp.w12.bias
    value, gate = both[:, : 4 * dim], both[:, 4 * dim :]
    torch.testing.assert_close(mlp(x), (_gelu_tanh(value) * gate) @ mlp.w3.weight.T + mlp.w3.bias)


def test_mlps_reject_bad_sizes():
    with pytest.raises(ValueError, match="hidden_features"):
        Mlp(4, 0)
    with pytest.raises(ValueError, match="in_features"):
        GatedMLP(-1, 4)
