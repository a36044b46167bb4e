"""Condition and position embeddings of DiT, used unchanged by LaMamba-Diff and DiMSUM.

* :class:`TimestepEmbedder`: sinusoidal features of a scalar time -> MLP. Works for integer DDPM steps
  (LaMamba-Diff: 0..999) and for continuous flow times in [0, 1] fed unscaled (DiMSUM / SiT).
* :class:`LabelEmbedder`: class table with an extra "null" row for classifier-free guidance.
* :func:`get_2d_sincos_pos_embed`: MAE's fixed 2-D sin-cos table, for rectangular grids too.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features ``[cos(t * f_i), sin(t * f_i)]`` with ``f_i = max_period ** (-i / (dim // 2))``.

    Args:
        t: (N,) times; integer or fractional.
        dim: feature size; an odd ``dim`` gets one trailing zero column.
        max_period: the lowest frequency is ``1 / max_period``.

    Returns:
        (N, dim) float32 features.
    """
    if t.ndim != 1:
        raise ValueError(f"t must be a 1-D tensor of N times, got shape {tuple(t.shape)}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class TimestepEmbedder(nn.Module):
    """DiT's timestep embedder: sinusoid(t) (N, frequency_embedding_size) -> Linear -> SiLU -> Linear.

    Parameters ``mlp.0`` and ``mlp.2`` carry the official names. ``forward(t)``: t (N,) -> (N, hidden_size)
    in the MLP's dtype.
    """

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256) -> None:
        super().__init__()
        if hidden_size <= 0 or frequency_embedding_size <= 0:
            raise ValueError(
                "hidden_size and frequency_embedding_size must be positive, got "
                f"{hidden_size} and {frequency_embedding_size}"
            )
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        features = timestep_embedding(t, self.frequency_embedding_size)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """DiT's class embedder with label dropout for classifier-free guidance.

    The table (parameter ``embedding_table``) has ``num_classes + (dropout_prob > 0)`` rows; the extra row,
    id ``num_classes``, is the "null" class. During training each label is replaced by the null id with
    probability ``dropout_prob``; ``force_drop_ids`` (N,) drops exactly the labels where it is 1 (what a
    guidance pipeline uses for the unconditional half). Labels may be any valid row, including the null id.

    Unconditional models: DiMSUM uses ``num_classes=1, dropout_prob=0`` and feeds zeros (one learned
    constant); LaMamba-Diff uses ``num_classes=0, dropout_prob=1.0`` and feeds zeros, which is then the null
    id (also one learned constant).
    """

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float) -> None:
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if not 0.0 <= dropout_prob <= 1.0:
            raise ValueError(f"dropout_prob must be in [0, 1], got {dropout_prob}")
        num_rows = num_classes + int(dropout_prob > 0)
        if num_rows == 0:
            raise ValueError("num_classes=0 needs dropout_prob > 0 (the table would have no rows)")
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        self.embedding_table = nn.Embedding(num_rows, hidden_size)

    @property
    def null_class_id(self) -> int | None:
        """Id of the null row, or None when the table has none (``dropout_prob == 0``)."""
        return self.num_classes if self.dropout_prob > 0 else None

    def token_drop(
        self,
        labels: torch.Tensor,
        force_drop_ids: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Replace dropped labels (random, or where ``force_drop_ids == 1``) by the null id."""
        if self.null_class_id is None:
            raise ValueError("labels cannot be dropped: dropout_prob is 0, so there is no null class row")
        if force_drop_ids is None:
            uniform = torch.rand(labels.shape[0], device=labels.device, generator=generator)
            drop = uniform < self.dropout_prob
        else:
            if force_drop_ids.shape != labels.shape:
                raise ValueError(
                    f"force_drop_ids must have the labels' shape {tuple(labels.shape)}, "
                    f"got {tuple(force_drop_ids.shape)}"
                )
            drop = force_drop_ids.to(labels.device) == 1
        return torch.where(drop, torch.full_like(labels, self.num_classes), labels)

    def forward(
        self,
        labels: torch.Tensor,
        train: bool | None = None,
        force_drop_ids: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """labels (N,) int64 -> (N, hidden_size).

        ``train`` defaults to ``self.training``; random dropout happens only when training with
        ``dropout_prob > 0``. ``generator`` seeds the random dropout.
        """
        if labels.ndim != 1 or labels.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"labels must be a 1-D integer tensor, got {labels.dtype} {tuple(labels.shape)}")
        num_rows = self.embedding_table.num_embeddings
        has_data = labels.device.type != "meta"  # meta tensors (FLOP counting) carry no values
        if has_data and labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_rows):
            raise ValueError(f"labels must lie in [0, {num_rows - 1}], got range [{labels.min()}, {labels.max()}]")
        train = self.training if train is None else train
        if force_drop_ids is not None or (train and self.dropout_prob > 0):
            labels = self.token_drop(labels, force_drop_ids, generator)
        return self.embedding_table(labels)


def _sincos_1d(embed_dim: int, positions: torch.Tensor) -> torch.Tensor:
    """positions (M,) float64 -> (M, embed_dim): ``[sin(p w_k), cos(p w_k)]``, w_k = 1e4^(-2k/embed_dim)."""
    omega = 1.0 / 10000 ** (torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2))
    angles = positions[:, None] * omega[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def get_2d_sincos_pos_embed(embed_dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """MAE's 2-D sin-cos positional table for a ``grid_h x grid_w`` grid of tokens in row-major order.

    Token ``(i, j)`` (row i, column j) is row ``i * grid_w + j``. As in MAE / DiT, the first half of the
    channels encodes the column j and the second half the row i; each half is ``[sin, cos]`` of the position
    times ``10000 ** (-k / (embed_dim / 4))``, k = 0 .. embed_dim / 4 - 1.

    Returns:
        (grid_h * grid_w, embed_dim) float32 tensor.
    """
    if embed_dim <= 0 or embed_dim % 4:
        raise ValueError(f"embed_dim must be a positive multiple of 4, got {embed_dim}")
    if grid_h <= 0 or grid_w <= 0:
        raise ValueError(f"grid_h and grid_w must be positive, got {grid_h} and {grid_w}")
    rows, cols = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64), torch.arange(grid_w, dtype=torch.float64), indexing="ij"
    )
    emb_cols = _sincos_1d(embed_dim // 2, cols.reshape(-1))
    emb_rows = _sincos_1d(embed_dim // 2, rows.reshape(-1))
    return torch.cat([emb_cols, emb_rows], dim=1).float()
