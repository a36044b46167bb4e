"""2-D discrete wavelet transform on feature maps, and DiMSUM's wavelet token layout.

Transform (:func:`dwt2d` / :func:`idwt2d`)
    Filters come from pywavelets (``pywt.Wavelet(name)``): analysis is a stride-2 depthwise convolution with
    the outer products of the reversed ``dec_lo`` / ``dec_hi`` filters, synthesis a stride-2 transposed
    convolution with those of ``rec_lo`` / ``rec_hi``, as in DiMSUM. The boundary is periodic, so one level
    maps (B, C, H, W) to exactly (B, 4C, H/2, W/2), equals ``pywt.dwt2(..., mode="periodization")`` per
    channel, and is inverted exactly by the synthesis for every orthogonal or biorthogonal wavelet. For Haar
    the periodic extension is never touched (no padding), so even sizes are exact with any boundary rule.

    Subbands of one level are concatenated on channels band-major, ``band * C + channel``, in the order
    ``[LL, LH, HL, HH]``: LH is high-pass along H (rows) and low-pass along W, pywt's ``cH``; HL is pywt's
    ``cV``. Several levels decompose *every* subband again (a full wavelet-packet tree, as DiMSUM does), so
    ``levels`` levels give (B, 4**levels * C, H / 2**levels, W / 2**levels) with channel index
    ``sum_l band_l * 4**(l - 1) * C + channel`` (the last level's band is the most significant digit).
    Everything is differentiable through autograd.

DiMSUM token layout (:func:`wavelet_tokens` / :func:`wavelet_tokens_inverse`)
    DiMSUM's wavelet branch (``WaveDiMBlock._dwt_fast``) maps a (B, C, H, W) token grid to H*W tokens of C
    channels:

    1. ``levels`` packet levels of Haar, then a division by ``2**levels`` (this scale is part of the layout,
       not of the transform; the inverse multiplies it back).
    2. The 4**levels pieces of C channels are reordered so the first level's band is the most significant
       digit; for 2 levels, new piece n is old piece ``(n % 4) * 4 + n // 4``.
    3. ``einops "b (c p1 p2) h w -> b (h p1 w p2) c"`` with p1 = p2 = 2**levels: token
       (row h * p + p1, col w * p + p2) takes, for output channel c, flat channel ``c * p * p + p1 * p + p2``
       at low-resolution site (h, w).

    So each p x p block of tokens belongs to one low-resolution site and mixes all subbands (the paper's
    "one window per subband" is not what the code does; checkpoints need the code's layout). Levels 1 and 2
    are the official code's layouts; more levels follow the same rule (the official code stops at 2).
"""

from __future__ import annotations

from functools import lru_cache

import pywt
import torch
import torch.nn.functional as F

SUBBANDS = ("LL", "LH", "HL", "HH")


@lru_cache(maxsize=32)
def _filter_banks(wavelet: str, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(analysis, synthesis) banks, each (4, 1, L, L) in the order LL, LH, HL, HH (first factor along H)."""
    try:
        w = pywt.Wavelet(wavelet)
    except ValueError as error:
        raise ValueError(
            f"wavelet must name a discrete wavelet of pywavelets (see pywt.wavelist(kind='discrete')), got {wavelet!r}"
        ) from error
    if w.dec_len % 2 or w.rec_len != w.dec_len:
        raise ValueError(f"wavelet {wavelet!r} has filters of lengths {w.dec_len}/{w.rec_len}; even, equal needed")

    def bank(lo: list[float], hi: list[float]) -> torch.Tensor:
        lo_t, hi_t = torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)
        pairs = [(lo_t, lo_t), (hi_t, lo_t), (lo_t, hi_t), (hi_t, hi_t)]  # (along H, along W)
        return torch.stack([torch.outer(along_h, along_w) for along_h, along_w in pairs])[:, None]

    analysis = bank(w.dec_lo[::-1], w.dec_hi[::-1])
    synthesis = bank(w.rec_lo, w.rec_hi)
    return analysis.to(device=device, dtype=dtype), synthesis.to(device=device, dtype=dtype)


def _periodic_index(size: int, filter_len: int, device: torch.device) -> torch.Tensor:
    """Map positions of the periodically extended axis (size + filter_len - 2) to positions of the axis."""
    left = filter_len // 2 - 1
    return (torch.arange(size + filter_len - 2, device=device) - left) % size


def _check_levels(levels: int) -> None:
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be an integer >= 1, got {levels!r}")


def _dwt_level(x: torch.Tensor, analysis: torch.Tensor) -> torch.Tensor:
    """One level: (B, C, H, W) -> (B, 4C, H/2, W/2), band-major.

    A depthwise convolution, written as a one-input-channel convolution over B * C single-channel maps.
    """
    batch, channels, height, width = x.shape
    filter_len = analysis.shape[-1]
    x = x.reshape(batch * channels, 1, height, width)
    if filter_len > 2:  # periodic extension by filter_len / 2 - 1 on each side (none for Haar)
        x = x.index_select(2, _periodic_index(height, filter_len, x.device))
        x = x.index_select(3, _periodic_index(width, filter_len, x.device))
    bands = F.conv2d(x, analysis, stride=2)  # (B * C, 4, H/2, W/2)
    bands = bands.view(batch, channels, 4, height // 2, width // 2).transpose(1, 2)
    return bands.reshape(batch, 4 * channels, height // 2, width // 2)


def _idwt_level(coeffs: torch.Tensor, synthesis: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_dwt_level`: (B, 4C, h, w) -> (B, C, 2h, 2w), a depthwise transposed convolution."""
    batch, channels4, low_h, low_w = coeffs.shape
    channels, filter_len = channels4 // 4, synthesis.shape[-1]
    bands = coeffs.view(batch, 4, channels, low_h, low_w).transpose(1, 2).reshape(-1, 4, low_h, low_w)
    x = F.conv_transpose2d(bands, synthesis, stride=2)  # (B * C, 1, 2h + L - 2, 2w + L - 2)
    height, width = 2 * low_h, 2 * low_w
    if filter_len > 2:  # fold the periodic overhang back onto the axis
        x = x.new_zeros(x.shape[0], 1, height, x.shape[3]).index_add(
            2, _periodic_index(height, filter_len, x.device), x
        )
        x = x.new_zeros(x.shape[0], 1, height, width).index_add(3, _periodic_index(width, filter_len, x.device), x)
    return x.view(batch, channels, height, width)


def dwt2d(x: torch.Tensor, wavelet: str = "haar", levels: int = 1) -> torch.Tensor:
    """Wavelet-packet analysis of every channel.

    (B, C, H, W) -> (B, 4**levels * C, H / 2**levels, W / 2**levels); H and W must be divisible by
    ``2**levels``. See the module docstring for the channel order.
    """
    _check_levels(levels)
    if x.ndim != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[-2] % 2**levels or x.shape[-1] % 2**levels:
        raise ValueError(
            f"x's height and width must be divisible by 2**levels = {2**levels}, got {tuple(x.shape[-2:])}"
        )
    analysis, _ = _filter_banks(wavelet, x.device, x.dtype)
    for _ in range(levels):
        x = _dwt_level(x, analysis)
    return x


def idwt2d(coeffs: torch.Tensor, wavelet: str = "haar", levels: int = 1) -> torch.Tensor:
    """Exact inverse of :func:`dwt2d`: (B, 4**levels * C, h, w) -> (B, C, h * 2**levels, w * 2**levels)."""
    _check_levels(levels)
    if coeffs.ndim != 4 or coeffs.shape[1] % 4**levels:
        raise ValueError(f"coeffs must be (B, 4**{levels} * C, h, w), got shape {tuple(coeffs.shape)}")
    _, synthesis = _filter_banks(wavelet, coeffs.device, coeffs.dtype)
    for _ in range(levels):
        coeffs = _idwt_level(coeffs, synthesis)
    return coeffs


def _reverse_band_digits(flat: torch.Tensor, levels: int, channels: int) -> torch.Tensor:
    """Reverse the order of the ``levels`` band digits of the piece index on the channel axis.

    (B, 4**levels * channels, h, w) -> same shape. An involution: DiMSUM's piece reordering and its inverse.
    """
    batch, _, low_h, low_w = flat.shape
    pieces = flat.view(batch, *([4] * levels), channels, low_h, low_w)
    order = (0, *range(levels, 0, -1), levels + 1, levels + 2, levels + 3)
    return pieces.permute(order).reshape(flat.shape)


def wavelet_tokens(x: torch.Tensor, levels: int = 2, wavelet: str = "haar") -> torch.Tensor:
    """DiMSUM's wavelet tokens of a token grid: (B, C, H, W) -> (B, H * W, C). See the module docstring."""
    if x.ndim != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
    batch, channels, height, width = x.shape
    coeffs = dwt2d(x, wavelet, levels) / 2**levels
    patch, low_h, low_w = 2**levels, height // 2**levels, width // 2**levels
    grouped = _reverse_band_digits(coeffs, levels, channels).view(batch, channels, patch, patch, low_h, low_w)
    return grouped.permute(0, 4, 2, 5, 3, 1).reshape(batch, height * width, channels)


def wavelet_tokens_inverse(
    tokens: torch.Tensor, height: int, width: int, levels: int = 2, wavelet: str = "haar"
) -> torch.Tensor:
    """Exact inverse of :func:`wavelet_tokens`: (B, height * width, C) -> (B, C, height, width)."""
    _check_levels(levels)
    patch = 2**levels
    if tokens.ndim != 3 or tokens.shape[1] != height * width:
        raise ValueError(f"tokens must be (B, height * width = {height * width}, C), got {tuple(tokens.shape)}")
    if height % patch or width % patch:
        raise ValueError(f"height and width must be divisible by 2**levels = {patch}, got {(height, width)}")
    batch, _, channels = tokens.shape
    low_h, low_w = height // patch, width // patch
    grouped = tokens.view(batch, low_h, patch, low_w, patch, channels).permute(0, 5, 2, 4, 1, 3)
    coeffs = _reverse_band_digits(grouped.reshape(batch, patch * patch * channels, low_h, low_w), levels, channels)
    return idwt2d(coeffs * patch, wavelet, levels)
