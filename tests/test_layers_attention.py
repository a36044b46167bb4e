"""Self-attention and DiMSUM's cross-attention fusion against explicit per-head softmax loops."""

import pytest
import torch

from ssmgen.layers.attention import Attention, CrossAttentionFusion


def _heads(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, num_heads: int):
    """Per-head q, k, v lists from a fused qkv projection, in timm's (3, heads, head_dim) channel order."""
    qkv = x @ weight.T + bias  # (N, 3C)
    channels = qkv.shape[-1] // 3
    head_dim = channels // num_heads
    split = [qkv[:, i * channels : (i + 1) * channels] for i in range(3)]
    return [[part[:, h * head_dim : (h + 1) * head_dim] for h in range(num_heads)] for part in split]


def _softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    logits = q @ k.T / q.shape[-1] ** 0.5
    weights = torch.exp(logits - logits.max(dim=-1, keepdim=True).values)
    return (weights / weights.sum(dim=-1, keepdim=True)) @ v


def test_self_attention_matches_manual_softmax():
    torch.manual_seed(0)
    attention = Attention(8, num_heads=2).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    out = attention(x)
    for b in range(2):
        q, k, v = _heads(x[b], attention.qkv.weight, attention.qkv.bias, 2)
        merged = torch.cat([_softmax_attention(q[h], k[h], v[h]) for h in range(2)], dim=-1)
        torch.testing.assert_close(out[b], merged @ attention.proj.weight.T + attention.proj.bias)
    assert set(attention.state_dict()) == {"qkv.weight", "qkv.bias", "proj.weight", "proj.bias"}


def test_cross_attention_fusion_swaps_queries_and_matches_manual_softmax():
    torch.manual_seed(0)
    dim, heads = 12, 3
    fusion = CrossAttentionFusion(dim, num_heads=heads).double()
    assert fusion.qkv1.weight.shape == (3 * dim // 2, dim // 2) and fusion.proj.weight.shape == (dim, dim)
    x1 = torch.randn(2, 4, dim // 2, dtype=torch.float64)
    x2 = torch.randn(2, 4, dim // 2, dtype=torch.float64)
    out = fusion(x1, x2)
    assert out.shape == (2, 4, dim)
    for b in range(2):
        q1, k1, v1 = _heads(x1[b], fusion.qkv1.weight, fusion.qkv1.bias, heads)
        q2, k2, v2 = _heads(x2[b], fusion.qkv2.weight, fusion.qkv2.bias, heads)
        x12 = torch.cat([_softmax_attention(q1[h], k2[h], v2[h]) for h in range(heads)], dim=-1)
        x21 = torch.cat([_softmax_attention(q2[h], k1[h], v1[h]) for h in range(heads)], dim=-1)
        expected = torch.cat([x12, x21], dim=-1) @ fusion.proj.weight.T + fusion.proj.bias
        torch.testing.assert_close(out[b], expected)


def test_cross_attention_fusion_mixes_both_branches():
    torch.manual_seed(0)
    fusion = CrossAttentionFusion(8, num_heads=2)
    x1, x2 = torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    base = fusion(x1, x2)
    assert not torch.allclose(fusion(x1, x2 + 1.0), base)
    assert not torch.allclose(fusion(x1 + 1.0, x2), base)


def test_attention_layers_reject_bad_shapes():
    with pytest.raises(ValueError, match="num_heads"):
        Attention(10, num_heads=3)
    with pytest.raises(ValueError, match="even"):
        CrossAttentionFusion(9)
    with pytest.raises(ValueError, match="num_heads"):
        CrossAttentionFusion(12, num_heads=4)  # 6 channels per half, not divisible by 4
    with pytest.raises(ValueError, match="same shape"):
        CrossAttentionFusion(8, num_heads=2)(torch.randn(1, 3, 4), torch.randn(1, 2, 4))
