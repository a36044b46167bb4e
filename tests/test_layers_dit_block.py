"""DiT block and final layer: adaLN-Zero identity at init, the adaLN formula, official parameter names."""

import math

import pytest
import torch
import torch.nn.functional as F

from ssmgen.layers.dit_block import DiTBlock, FinalLayer, xavier_init_linears


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))


@pytest.mark.parametrize("gated_mlp", [False, True])
def test_zero_initialised_block_is_the_identity(gated_mlp):
    torch.manual_seed(0)
    block = DiTBlock(16, num_heads=4, gated_mlp=gated_mlp)
    _randomise(block)
    block.zero_init_adaln()
    x, c = torch.randn(2, 5, 16), torch.randn(2, 16)
    torch.testing.assert_close(block(x, c), x, rtol=0, atol=0)


def test_block_follows_the_adaln_formula():
    torch.manual_seed(0)
    block = DiTBlock(8, num_heads=2, mlp_ratio=2.0).double()
    _randomise(block)
    x, c = torch.randn(2, 3, 8, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)
    chunks = (F.silu(c) @ block.adaLN_modulation[1].weight.T + block.adaLN_modulation[1].bias).split(8, dim=-1)
    shift1, scale1, gate1, shift2, scale2, gate2 = (t[:, None] for t in chunks)

    def layer_norm(v):
        return (v - v.mean(-1, keepdim=True)) / torch.sqrt(v.var(-1, unbiased=False, keepdim=True) + 1e-6)

    expected = x + gate1 * block.attn(layer_norm(x) * (1 + scale1) + shift1)
    hidden = (layer_norm(expected) * (1 + scale2) + shift2) @ block.mlp.fc1.weight.T + block.mlp.fc1.bias
    hidden = F.gelu(hidden, approximate="tanh") @ block.mlp.fc2.weight.T + block.mlp.fc2.bias
    torch.testing.assert_close(block(x, c), expected + gate2 * hidden)


def test_block_parameter_names_match_dit_and_dimsum():
    plain = set(DiTBlock(8, num_heads=2).state_dict())
    assert plain == {
        "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
        "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
        "adaLN_modulation.1.weight", "adaLN_modulation.1.bias",
    }  # fmt: skip
    gated = DiTBlock(8, num_heads=2, gated_mlp=True)
    assert {"mlp.w12.weight", "mlp.w3.weight"} <= set(gated.state_dict())
    assert gated.mlp.w12.weight.shape == (64, 8) and gated.mlp.w3.weight.shape == (8, 32)


def test_final_layer_shapes_zero_init_and_names():
    torch.manual_seed(0)
    final = FinalLayer(16, patch_size=2, out_channels=4)
    assert set(final.state_dict()) == {
        "linear.weight",
        "linear.bias",
        "adaLN_modulation.1.weight",
        "adaLN_modulation.1.bias",
    }
    x, c = torch.randn(2, 6, 16), torch.randn(2, 16)
    assert final(x, c).shape == (2, 6, 16)
    final.zero_init()
    assert torch.all(final(x, c) == 0)


def test_xavier_init_linears_sets_dit_basic_init():
    block = DiTBlock(12, num_heads=3)
    _randomise(block)
    xavier_init_linears(block)
    for layer in (block.attn.qkv, block.mlp.fc1, block.adaLN_modulation[1]):
        fan_out, fan_in = layer.weight.shape
        assert layer.weight.abs().max() <= math.sqrt(6 / (fan_in + fan_out))
        assert torch.all(layer.bias == 0)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="mlp_ratio"):
        DiTBlock(8, num_heads=2, mlp_ratio=0)
    with pytest.raises(ValueError, match="num_heads"):
        DiTBlock(8, num_heads=3)
    with pytest.raises(ValueError, match="patch_size"):
        FinalLayer(8, patch_size=0, out_channels=4)
