"""Swin (shifted-)window attention with relative position bias, as LaMamba-Diff's local mixer uses it.

* :class:`WindowAttention`: multi-head attention inside pre-partitioned windows (Swin's ``W-MSA``), with
  the official parameter names ``qkv``, ``proj``, ``relative_position_bias_table`` ((2w-1)**2, heads) and
  the ``relative_position_index`` buffer (w*w, w*w).
* :class:`ShiftedWindowAttention`: the same parameters, applied to a channels-last map (B, H, W, C):
  partition into ``window_size`` windows, optional cyclic shift with Swin's attention mask, merge back.

Map sizes are never refused:

* Along an axis no longer than the window, the window shrinks to the whole axis and that axis is not
  shifted. For square maps this is LaMamba-Diff's rule (``input_resolution <= window_size`` means one window
  covering the map and no shift); rectangles are handled per axis. The bias of a shrunk window is read from
  the same table at the same relative offsets.
* Otherwise the map is zero-padded at the bottom / right to a multiple of the window, padded keys are masked
  out for real queries, and the result is cropped.

Masked entries are ``-inf`` (Swin uses -100, whose weight ``exp(-100)`` is below float32 resolution next to
unmasked logits); every query keeps at least itself, so no softmax row is empty.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from ssmgen.layers.attention import merge_heads, split_heads


@lru_cache(maxsize=64)
def relative_position_index(window_h: int, window_w: int, table_window: int) -> torch.Tensor:
    """(window_h * window_w, window_h * window_w) indices into a ((2 * table_window - 1) ** 2)-row bias table.

    Entry (i, j) is ``(dy + table_window - 1) * (2 * table_window - 1) + (dx + table_window - 1)`` where
    (dy, dx) is the offset of token i from token j inside the window (row-major token order), as in Swin.
    """
    rows, cols = torch.meshgrid(torch.arange(window_h), torch.arange(window_w), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()])  # (2, N)
    offsets = coords[:, :, None] - coords[:, None, :] + (table_window - 1)  # (2, N, N), each in [0, 2w-2]
    return offsets[0] * (2 * table_window - 1) + offsets[1]


def window_partition(x: torch.Tensor, window_h: int, window_w: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, window_h * window_w, C); windows and the tokens inside them row-major."""
    batch, height, width, channels = x.shape
    x = x.view(batch, height // window_h, window_h, width // window_w, window_w, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_h * window_w, channels)


def window_merge(windows: torch.Tensor, window_h: int, window_w: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, window_h * window_w, C) -> (B, H, W, C)."""
    channels = windows.shape[-1]
    grid_h, grid_w = height // window_h, width // window_w
    x = windows.view(-1, grid_h, grid_w, window_h, window_w, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)


def _shift_regions(size: int, window: int, shift: int) -> torch.Tensor:
    """Swin's region label per position along one axis of the rolled map: 0, 1, 2 for the slices
    ``[0, size - window)``, ``[size - window, size - shift)``, ``[size - shift, size)``."""
    labels = torch.zeros(size, dtype=torch.long)
    if shift > 0:
        labels[size - window : size - shift] = 1
        labels[size - shift :] = 2
    return labels


@lru_cache(maxsize=64)
def shifted_window_mask(
    height: int,
    width: int,
    window_h: int,
    window_w: int,
    shift_h: int,
    shift_w: int,
    device: torch.device | None = None,
) -> torch.Tensor | None:
    """Additive attention mask (nW, N, N) for a (height, width) map (before padding), or None if not needed.

    Built on the padded, rolled map. Query i may not attend key j when they lie in different Swin shift
    regions (tokens that were not neighbours before the cyclic shift), or when j is padding and i is not.
    The float32 result lives on ``device`` and is cached: treat it as read-only.
    """
    padded_h = height + (-height) % window_h
    padded_w = width + (-width) % window_w
    if shift_h == shift_w == 0 and (padded_h, padded_w) == (height, width):
        return None
    regions = _shift_regions(padded_h, window_h, shift_h)[:, None] * 3 + _shift_regions(padded_w, window_w, shift_w)
    is_padding = torch.zeros(padded_h, padded_w, dtype=torch.bool)
    is_padding[height:, :] = True
    is_padding[:, width:] = True
    is_padding = torch.roll(is_padding, shifts=(-shift_h, -shift_w), dims=(0, 1))
    regions = window_partition(regions[None, :, :, None], window_h, window_w)[..., 0]  # (nW, N)
    is_padding = window_partition(is_padding[None, :, :, None], window_h, window_w)[..., 0]
    blocked = regions[:, :, None] != regions[:, None, :]
    blocked |= is_padding[:, None, :] & ~is_padding[:, :, None]
    mask = torch.zeros(blocked.shape)
    return mask.masked_fill_(blocked, float("-inf")).to(device)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with Swin's learned relative position bias.

    Args:
        dim: channels.
        window_size: side of the (square) windows the bias table is sized for.
        num_heads: attention heads; ``dim`` must be a multiple.
        qkv_bias: bias of the ``qkv`` projection.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if window_size <= 0:
            raise ValueError(f"window_size must be positive, got {window_size}")
        if num_heads <= 0 or dim <= 0 or dim % num_heads:
            raise ValueError(f"dim ({dim}) must be a positive multiple of num_heads ({num_heads})")
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer(
            "relative_position_index", relative_position_index(window_size, window_size, window_size).clone()
        )
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def relative_position_bias(self, window_h: int, window_w: int) -> torch.Tensor:
        """(num_heads, N, N) bias for windows of window_h x window_w tokens (each at most ``window_size``)."""
        if (window_h, window_w) == (self.window_size, self.window_size):
            index = self.relative_position_index
        else:
            index = relative_position_index(window_h, window_w, self.window_size).to(self.qkv.weight.device)
        tokens = window_h * window_w
        bias = self.relative_position_bias_table[index.reshape(-1)].view(tokens, tokens, self.num_heads)
        return bias.permute(2, 0, 1)

    def forward(
        self,
        windows: torch.Tensor,
        window_hw: tuple[int, int] | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attention inside each window.

        Args:
            windows: (B * nW, N, dim) tokens of nW windows per sample, N = window_h * window_w.
            window_hw: (window_h, window_w); (window_size, window_size) when None.
            mask: additive (nW, N, N) mask shared by all samples (0 or -inf), or None.

        Returns:
            (B * nW, N, dim).
        """
        window_h, window_w = window_hw or (self.window_size, self.window_size)
        if not (0 < window_h <= self.window_size and 0 < window_w <= self.window_size):
            raise ValueError(f"window_hw must lie in [1, {self.window_size}] per axis, got {window_hw}")
        num_windows_total, tokens, _ = windows.shape
        if tokens != window_h * window_w:
            raise ValueError(f"windows must hold {window_h}x{window_w} tokens, got {tokens}")
        q, k, v = split_heads(self.qkv(windows), self.num_heads)
        attn_mask = self.relative_position_bias(window_h, window_w).to(q.dtype)[None]  # (1, heads, N, N)
        if mask is not None:
            num_windows = mask.shape[0]
            if num_windows_total % num_windows:
                raise ValueError(f"mask has {num_windows} windows, which does not divide {num_windows_total}")
            per_window = attn_mask + mask.to(q.dtype)[:, None]  # (nW, heads, N, N)
            batch = num_windows_total // num_windows
            attn_mask = per_window.expand(batch, -1, -1, -1, -1).reshape(num_windows_total, *per_window.shape[1:])
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(merge_heads(out))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}"


class ShiftedWindowAttention(WindowAttention):
    """(Shifted-)window attention on a channels-last map: (B, H, W, dim) -> (B, H, W, dim).

    Same parameters (and names) as :class:`WindowAttention`. LaMamba-Diff uses ``shift_size = 0`` in
    even blocks of a stage and ``window_size // 2`` in odd ones.

    Args:
        dim, window_size, num_heads, qkv_bias: as in :class:`WindowAttention`.
        shift_size: cyclic shift (towards the top-left) before partitioning, in [0, window_size).
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, shift_size: int = 0, qkv_bias: bool = True) -> None:
        super().__init__(dim, window_size, num_heads, qkv_bias=qkv_bias)
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size must lie in [0, window_size={window_size}), got {shift_size}")
        self.shift_size = shift_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if x.ndim != 4 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be a channels-last map (B, H, W, {self.dim}), got {tuple(x.shape)}")
        _, height, width, _ = x.shape
        window_h, window_w = min(self.window_size, height), min(self.window_size, width)
        shift_h = self.shift_size if height > self.window_size else 0
        shift_w = self.shift_size if width > self.window_size else 0
        pad_h, pad_w = (-height) % window_h, (-width) % window_w

        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        if shift_h or shift_w:
            x = torch.roll(x, shifts=(-shift_h, -shift_w), dims=(1, 2))
        mask = shifted_window_mask(height, width, window_h, window_w, shift_h, shift_w, x.device)
        windows = super().forward(window_partition(x, window_h, window_w), (window_h, window_w), mask)
        x = window_merge(windows, window_h, window_w, height + pad_h, width + pad_w)
        if shift_h or shift_w:
            x = torch.roll(x, shifts=(shift_h, shift_w), dims=(1, 2))
        return x[:, :height, :width]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, shift_size={self.shift_size}"
