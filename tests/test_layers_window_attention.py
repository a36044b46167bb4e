"""Swin (shifted-)window attention against a naive per-token loop in map coordinates.

The oracle never rolls, pads or partitions: a shifted window partition is the window grid offset by the
shift and cut at the map border, so token (y, x) belongs to window row ``floor((y - shift_h) / window_h)``
and column ``floor((x - shift_w) / window_w)``; it attends exactly to the tokens of its own window with the
bias ``table[(dy + w - 1) * (2w - 1) + dx + w - 1]``.
"""

import itertools

import pytest
import torch

from ssmgen.layers.window_attention import ShiftedWindowAttention, WindowAttention, relative_position_index


def _make(dim=8, window=4, heads=2, shift=0, seed=0) -> ShiftedWindowAttention:
    torch.manual_seed(seed)
    module = ShiftedWindowAttention(dim, window, heads, shift_size=shift).double()
    with torch.no_grad():
        module.relative_position_bias_table.normal_(0, 1.0)  # large bias so a wrong index shows
    return module


def _naive(module: ShiftedWindowAttention, x: torch.Tensor) -> torch.Tensor:
    batch, height, width, dim = x.shape
    w, heads = module.window_size, module.num_heads
    window_h, window_w = min(w, height), min(w, width)
    shift_h = module.shift_size if height > w else 0
    shift_w = module.shift_size if width > w else 0
    head_dim = dim // heads
    out = torch.zeros_like(x)
    for b, y, x_ in itertools.product(range(batch), range(height), range(width)):
        group = ((y - shift_h) // window_h, (x_ - shift_w) // window_w)
        keys = [
            (ky, kx)
            for ky, kx in itertools.product(range(height), range(width))
            if ((ky - shift_h) // window_h, (kx - shift_w) // window_w) == group
        ]
        query_qkv = module.qkv(x[b, y, x_])
        key_qkv = torch.stack([module.qkv(x[b, ky, kx]) for ky, kx in keys])
        heads_out = []
        for h in range(heads):
            q = query_qkv[h * head_dim : (h + 1) * head_dim]
            k = key_qkv[:, dim + h * head_dim : dim + (h + 1) * head_dim]
            v = key_qkv[:, 2 * dim + h * head_dim : 2 * dim + (h + 1) * head_dim]
            bias = torch.stack(
                [
                    module.relative_position_bias_table[(y - ky + w - 1) * (2 * w - 1) + (x_ - kx + w - 1), h]
                    for ky, kx in keys
                ]
            )
            weights = torch.softmax(k @ q / head_dim**0.5 + bias, dim=0)
            heads_out.append(weights @ v)
        out[b, y, x_] = module.proj(torch.cat(heads_out))
    return out


@pytest.mark.parametrize(
    "height, width, shift",
    [
        (8, 8, 0),  # plain windows
        (8, 8, 2),  # shifted windows with the Swin mask
        (6, 10, 2),  # padding + shift
        (5, 7, 0),  # padding only
        (3, 3, 2),  # map smaller than the window: one window, no shift
        (3, 9, 2),  # rectangle: clamped along H, shifted + padded along W
    ],
)
def test_matches_naive_per_token_attention(height, width, shift):
    module = _make(shift=shift)
    x = torch.randn(2, height, width, 8, dtype=torch.float64)
    with torch.no_grad():
        out = module(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    with torch.no_grad():
        torch.testing.assert_close(out, _naive(module, x))


def test_relative_position_index_matches_swin_definition():
    w = 3
    index = relative_position_index(w, w, w)
    coords = [(i, j) for i in range(w) for j in range(w)]
    for a, (ya, xa) in enumerate(coords):
        for b, (yb, xb) in enumerate(coords):
            assert index[a, b] == (ya - yb + w - 1) * (2 * w - 1) + (xa - xb + w - 1)
    module = WindowAttention(8, w, num_heads=2)
    assert module.relative_position_bias_table.shape == ((2 * w - 1) ** 2, 2)
    assert set(module.state_dict()) == {
        "relative_position_bias_table", "relative_position_index",
        "qkv.weight", "qkv.bias", "proj.weight", "proj.bias",
    }  # fmt: skip


def test_no_attention_across_the_shift_seam():
    module = _make(shift=2)
    x = torch.randn(1, 8, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        base = module(x)
        # (0, 0) and (7, 7) share the bottom-right window after the cyclic shift, but were not neighbours
        seam = x.clone()
        seam[0, 7, 7] += 5.0
        changed = module(seam)
        assert torch.equal(changed[0, 0, 0], base[0, 0, 0])
        assert not torch.allclose(changed[0, 7, 7], base[0, 7, 7])
        same_window = x.clone()
        same_window[0, 1, 1] += 5.0  # (0, 0) and (1, 1) lie in the same wrapped corner region
        assert not torch.allclose(module(same_window)[0, 0, 0], base[0, 0, 0])


def test_unshifted_windows_are_independent():
    module = _make(shift=0)
    x = torch.randn(1, 8, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        base = module(x)
        moved = x.clone()
        moved[0, 4, 4] += 5.0
        assert torch.equal(module(moved)[0, :4, :4], base[0, :4, :4])
        moved[0, 3, 3] += 5.0
        assert not torch.allclose(module(moved)[0, 0, 0], base[0, 0, 0])


def test_padding_gives_the_result_of_the_unpadded_pieces():
    # 6x6 with window 4 and no shift: the windows are the pieces [0:4], [4:6] along each axis; padding must
    # give each piece exactly what it gets when attended on its own (no leak from padded tokens).
    module = _make(shift=0)
    x = torch.randn(2, 6, 6, 8, dtype=torch.float64)
    with torch.no_grad():
        out = module(x)
        for rows, cols in itertools.product((slice(0, 4), slice(4, 6)), repeat=2):
            piece = x[:, rows, cols].contiguous()
            torch.testing.assert_close(out[:, rows, cols], module(piece))


def test_shifted_padded_path_has_finite_gradients():
    module = _make(shift=2)
    x = torch.randn(1, 6, 10, 8, dtype=torch.float64, requires_grad=True)
    module(x).square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    grad_table = module.relative_position_bias_table.grad
    assert torch.isfinite(grad_table).all() and grad_table.abs().sum() > 0


def test_float32_matches_float64():
    module = _make(shift=2)
    x = torch.randn(2, 8, 12, 8, dtype=torch.float64)
    with torch.no_grad():
        expected = module(x)
        torch.testing.assert_close(module.float()(x.float()), expected.float(), rtol=1e-4, atol=1e-5)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="shift_size"):
        ShiftedWindowAttention(8, 4, 2, shift_size=4)
    with pytest.raises(ValueError, match="window_size"):
        WindowAttention(8, 0, 2)
    with pytest.raises(ValueError, match="num_heads"):
        WindowAttention(8, 4, 3)
    with pytest.raises(ValueError, match="channels-last"):
        ShiftedWindowAttention(8, 4, 2)(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match="window_hw"):
        WindowAttention(8, 4, 2)(torch.randn(2, 25, 8), window_hw=(5, 5))
