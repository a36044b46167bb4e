"""The step-major layout of the ``torch`` backend: (batch, rows, L) <-> (T, batch, G, rows / G, C).

The chunked scan walks T steps over all C chunks at once, so every per-step operand is stored
with the step first and the chunk last. Without scan orders this is one 2-D transpose of
(batch * rows * C, T). With per-group scan orders ``perm`` (G, L) -- group g scans its tokens in
the order ``perm[g]`` -- the layout is read and written through cached flat indices instead
(``index_select`` / ``index_copy_`` / ``index_add_``), so putting tokens into scan order and
back costs no separate pass; a ``shared`` input (batch, rows / G, L) is read by every group
without being copied G times. Sequences are zero-padded to C * T steps at their end.
"""

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F

# Chunking costs two extra passes (forward and backward local passes) to cut the number of Python
# steps; it pays only while each step's tensors are too small to amortise an op's fixed cost.
SINGLE_CHUNK_STATE_SIZE = 32_768
_INDEX_CACHE: OrderedDict = OrderedDict()
_INDEX_CACHE_SIZE = 64  # a few dozen (shape, table) pairs per model: every stage of a U-Net has its own


def chunk_length(length: int, state_size: int) -> int:
    """T for a sequence of ``length`` whose per-step state holds ``state_size`` = batch * dim * N
    numbers: the whole sequence when that is large, else about sqrt(L) so the loops balance."""
    if state_size >= SINGLE_CHUNK_STATE_SIZE:
        return length
    return max(1, min(256, math.ceil(math.sqrt(length))))


class StepLayout:
    """Step-major layout for ``batch`` sequences of ``length`` in ``groups`` channel groups."""

    def __init__(self, batch: int, groups: int, length: int, state_size: int, perm: torch.Tensor | None = None):
        self.batch, self.groups, self.perm = batch, groups, perm
        self.length, self.steps = length, chunk_length(length, state_size)
        self.chunks = math.ceil(length / self.steps)
        self.padded = self.chunks * self.steps
        # In the last chunk, steps from here on are padding.
        self.pad_from = length - (self.chunks - 1) * self.steps

    def split(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """(batch, rows, L) -> (T, batch, G, E, C) with E = rows / G, or E = rows when ``shared``
        (every group reads the same rows). Padding steps are zero."""
        rows = x.shape[1]
        per_group = rows if shared else rows // self.groups
        shape = (self.steps, self.batch, self.groups, per_group, self.chunks)
        if self.perm is None:
            if shared and self.groups > 1:
                raise ValueError("shared inputs need per-group scan orders")
            if self.padded != self.length:
                x = F.pad(x, (0, self.padded - self.length))
            return x.reshape(-1, self.steps).t().contiguous().view(shape)
        index = self._index(per_group, shared, trash_padding=False, device=x.device)
        out = x.reshape(-1).index_select(0, index).view(shape)
        if self.padded != self.length:
            out[self.pad_from :, ..., -1] = 0
        return out

    def merge(self, x: torch.Tensor, sum_groups: bool = False) -> torch.Tensor:
        """(T, batch, G, E, C) -> (batch, G * E, L), or (batch, E, L) summed over the groups (the
        gradient of a ``shared`` input)."""
        per_group = x.shape[3]
        if self.perm is None:
            x = x.reshape(self.steps, -1).t().contiguous().view(self.batch, -1, self.padded)
            return x[..., : self.length]
        rows = per_group if sum_groups else self.groups * per_group
        size = self.batch * rows * self.length
        index = self._index(per_group, sum_groups, trash_padding=True, device=x.device)
        out = x.new_zeros(size + 1) if sum_groups else x.new_empty(size + 1)  # the last slot takes padding
        if sum_groups:
            out.index_add_(0, index, x.reshape(-1))
        else:
            out.index_copy_(0, index, x.reshape(-1))
        return out[:size].view(self.batch, rows, self.length)

    def split_states(self, M: torch.Tensor) -> torch.Tensor:
        """Time-varying B or C (batch, G, N, L) -> (T, batch, G, 1, C, N)."""
        return self.split(M.flatten(1, 2)).transpose(-1, -2).unsqueeze(3).contiguous()

    def merge_states(self, M: torch.Tensor) -> torch.Tensor:
        """Per-step B or C gradients (T, batch, G, C, N) -> (batch, G, N, L)."""
        return self.merge(M.transpose(-1, -2)).reshape(self.batch, self.groups, -1, self.length)

    def _index(self, per_group: int, shared: bool, trash_padding: bool, device: torch.device) -> torch.Tensor:
        """Flat positions (T * batch * G * E * C,) in a (batch, rows, L) tensor, cached per shape and table.

        Padding steps point at position 0 (reads, zeroed afterwards) or one past the end (writes).
        """
        key = (
            id(self.perm),
            device,
            self.batch,
            self.groups,
            per_group,
            self.length,
            self.steps,
            shared,
            trash_padding,
        )
        cached = _INDEX_CACHE.get(key)
        if cached is not None and cached[0] is self.perm:
            _INDEX_CACHE.move_to_end(key)
            return cached[1]
        steps = torch.arange(self.padded, device=device)
        valid = steps < self.length
        positions = torch.where(valid, self.perm[:, steps.clamp(max=self.length - 1)], 0)  # (G, padded)
        positions = positions.view(self.groups, self.chunks, self.steps).permute(2, 0, 1)  # (T, G, C)
        rows = per_group if shared else self.groups * per_group
        group_rows = 0 if shared else per_group
        b = torch.arange(self.batch, device=device).view(1, -1, 1, 1, 1)
        g = torch.arange(self.groups, device=device).view(1, 1, -1, 1, 1)
        e = torch.arange(per_group, device=device).view(1, 1, 1, -1, 1)
        index = (b * rows + g * group_rows + e) * self.length + positions[:, None, :, None, :]
        if trash_padding:
            padding = ~valid.view(self.chunks, self.steps).t()  # (T, C)
            index = torch.where(padding[:, None, None, None, :], self.batch * rows * self.length, index)
        index = index.reshape(-1)
        _INDEX_CACHE[key] = (self.perm, index)
        if len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:
            _INDEX_CACHE.popitem(last=False)
        return index
