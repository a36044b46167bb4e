"""Wavelet transform against pywavelets, exact inverses, gradients, and DiMSUM's token layout."""

import itertools

import numpy as np
import pytest
import pywt
import torch

from ssmgen.layers.wavelet import dwt2d, idwt2d, wavelet_tokens, wavelet_tokens_inverse


def _pywt_subbands(image: np.ndarray, wavelet: str) -> list[np.ndarray]:
    """[LL, LH, HL, HH] of one 2-D array, from pywt.dwt2 (cA, (cH, cV, cD))."""
    approximation, (horizontal, vertical, diagonal) = pywt.dwt2(image, wavelet, mode="periodization")
    return [approximation, horizontal, vertical, diagonal]


@pytest.mark.parametrize("wavelet", ["haar", "db2", "bior2.2"])
def test_one_level_matches_pywt_per_channel(wavelet):
    x = torch.randn(2, 3, 8, 12, dtype=torch.float64)
    coeffs = dwt2d(x, wavelet)
    assert coeffs.shape == (2, 12, 4, 6)
    for b, channel in itertools.product(range(2), range(3)):
        for band, expected in enumerate(_pywt_subbands(x[b, channel].numpy(), wavelet)):
            np.testing.assert_allclose(coeffs[b, band * 3 + channel].numpy(), expected, atol=1e-12)


def test_two_levels_decompose_every_subband_again():
    channels = 2
    x = torch.randn(1, channels, 8, 8, dtype=torch.float64)
    coeffs = dwt2d(x, "haar", levels=2)
    assert coeffs.shape == (1, 16 * channels, 2, 2)
    for channel in range(channels):
        for band1, first in enumerate(_pywt_subbands(x[0, channel].numpy(), "haar")):
            for band2, second in enumerate(_pywt_subbands(first, "haar")):
                index = band2 * 4 * channels + band1 * channels + channel
                np.testing.assert_allclose(coeffs[0, index].numpy(), second, atol=1e-12)


@pytest.mark.parametrize(
    "wavelet, levels, size",
    [
        ("haar", 1, (6, 10)),
        ("haar", 2, (8, 12)),
        ("haar", 3, (8, 16)),
        ("db2", 2, (8, 8)),
        ("sym4", 1, (4, 6)),
    ],
)
def test_perfect_reconstruction(wavelet, levels, size):
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    coeffs = dwt2d(x, wavelet, levels)
    torch.testing.assert_close(idwt2d(coeffs, wavelet, levels), x, rtol=0, atol=1e-10)
    torch.testing.assert_close(dwt2d(idwt2d(coeffs, wavelet, levels), wavelet, levels), coeffs, rtol=0, atol=1e-10)


def test_haar_is_orthonormal_in_float32():
    x = torch.randn(2, 4, 16, 16)
    coeffs = dwt2d(x, "haar", levels=2)
    torch.testing.assert_close(coeffs.square().sum(), x.square().sum(), rtol=1e-5, atol=0)
    torch.testing.assert_close(idwt2d(coeffs, "haar", levels=2), x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("wavelet", ["haar", "db2"])
def test_gradcheck(wavelet):
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: dwt2d(v, wavelet, levels=1), (x,))
    coeffs = torch.randn(1, 8, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: idwt2d(v, wavelet, levels=1), (coeffs,))


def test_gradcheck_token_layout():
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: wavelet_tokens(v, levels=2), (x,))
    tokens = torch.randn(1, 16, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: wavelet_tokens_inverse(v, 4, 4, levels=2), (tokens,))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*levels = 4"):
        dwt2d(torch.randn(1, 1, 6, 8), levels=2)
    with pytest.raises(ValueError, match="discrete wavelet"):
        dwt2d(torch.randn(1, 1, 4, 4), "not-a-wavelet")
    with pytest.raises(ValueError, match="levels"):
        dwt2d(torch.randn(1, 1, 4, 4), levels=0)
    with pytest.raises(ValueError, match="\\(B, C, H, W\\)"):
        dwt2d(torch.randn(4, 4))
    with pytest.raises(ValueError, match="coeffs"):
        idwt2d(torch.randn(1, 6, 2, 2))
    with pytest.raises(ValueError, match="divisible"):
        wavelet_tokens(torch.randn(1, 4, 6, 6), levels=2)
    with pytest.raises(ValueError, match="height \\* width"):
        wavelet_tokens_inverse(torch.randn(1, 15, 4), 4, 4)


def test_token_layout_two_levels_matches_the_dimsum_formula():
    """Reference §1.6 step 3: token (h*4+p1, w*4+p2), channel c' holds
    piece[c' // (C/16)][channel 16 * (c' % (C/16)) + 4 * p1 + p2] at low-res site (h, w), where piece
    n = band1 * 4 + band2 (first-level band major) and the Haar coefficients are divided by 4."""
    channels, height, width = 32, 8, 8
    x = torch.randn(2, channels, height, width, dtype=torch.float64)
    tokens = wavelet_tokens(x, levels=2)
    assert tokens.shape == (2, height * width, channels)
    per_piece = channels // 16
    for b in range(2):
        subbands = [
            [[_pywt_subbands(first, "haar") for first in _pywt_subbands(x[b, ch].numpy(), "haar")]]
            for ch in range(channels)
        ]  # subbands[ch][0][band1][band2] -> (2, 2)
        expected = np.zeros((height * width, channels))
        for h, w, p1, p2, c in itertools.product(range(2), range(2), range(4), range(4), range(channels)):
            piece, source_channel = c // per_piece, 16 * (c % per_piece) + 4 * p1 + p2
            band1, band2 = divmod(piece, 4)
            token = (h * 4 + p1) * width + (w * 4 + p2)
            expected[token, c] = subbands[source_channel][0][band1][band2][h, w] / 4
        np.testing.assert_allclose(tokens[b].numpy(), expected, atol=1e-12)


def test_token_layout_one_level_matches_the_einops_grouping():
    """One level (no reordering): flat channel m = c * 4 + p1 * 2 + p2 of the band-major coefficients / 2."""
    channels = 3  # not a multiple of 4: pieces straddle tokens
    x = torch.randn(1, channels, 4, 6, dtype=torch.float64)
    tokens = wavelet_tokens(x, levels=1)
    bands = [_pywt_subbands(x[0, ch].numpy(), "haar") for ch in range(channels)]
    for h, w, p1, p2, c in itertools.product(range(2), range(3), range(2), range(2), range(channels)):
        band, source_channel = divmod(c * 4 + p1 * 2 + p2, channels)
        token = (h * 2 + p1) * 6 + (w * 2 + p2)
        assert tokens[0, token, c].item() == pytest.approx(bands[source_channel][band][h, w] / 2, abs=1e-12)


@pytest.mark.parametrize("levels, size", [(1, (4, 6)), (2, (8, 8)), (2, (8, 16)), (3, (8, 8))])
def test_token_layout_round_trips(levels, size):
    x = torch.randn(2, 5, *size, dtype=torch.float64)
    tokens = wavelet_tokens(x, levels)
    torch.testing.assert_close(wavelet_tokens_inverse(tokens, *size, levels=levels), x, rtol=0, atol=1e-12)
    random_tokens = torch.randn_like(tokens)
    back = wavelet_tokens(wavelet_tokens_inverse(random_tokens, *size, levels=levels), levels)
    torch.testing.assert_close(back, random_tokens, rtol=0, atol=1e-12)


def test_each_token_block_belongs_to_one_low_resolution_site():
    """The code's layout (not the paper's): changing the input inside one 4x4 block of the 8x8 grid only
    changes the tokens of the matching 4x4 token block, because Haar does not mix sites."""
    x = torch.randn(1, 16, 8, 8, dtype=torch.float64)
    changed = x.clone()
    changed[0, :, 4:8, 0:4] += 1.0  # low-res site (1, 0)
    difference = (wavelet_tokens(changed, 2) - wavelet_tokens(x, 2)).abs().sum(-1).view(8, 8)
    assert difference[4:8, 0:4].gt(0).any()
    difference[4:8, 0:4] = 0
    assert torch.all(difference == 0)
