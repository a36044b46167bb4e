"""Inception Score and improved precision/recall, computed from extracted features like ADM's suite.

* Inception Score (Salimans et al.): ``exp(E_x KL(p(y|x) || p(y)))`` over contiguous splits
  ``[i N / s, (i + 1) N / s)`` in float64 (torch-fidelity's splits without its shuffle; with 50k
  samples and 10 splits they are ADM's 5000-sample chunks).
* Precision/recall (Kynkäänniemi et al., k = 3): each set's manifold is the union of balls around
  its points with radius the distance to the k-th nearest other point; precision is the fraction of
  generated samples inside the real manifold, recall the fraction of real samples inside the
  generated one. Distances are exact (float64 by default; ADM computes them in float16 first).
"""

from __future__ import annotations

import numpy as np
import torch


def _as_tensor(array, name: str, dtype: torch.dtype) -> torch.Tensor:
    tensor = torch.as_tensor(array)
    if tensor.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D), got {tuple(tensor.shape)}")
    tensor = tensor.to(dtype)
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor


def inception_score(logits, num_splits: int = 10) -> tuple[float, float]:
    """Mean and standard deviation over ``num_splits`` contiguous splits of logits (N, K)."""
    logits = _as_tensor(logits, "logits", torch.float64)
    if not isinstance(num_splits, int) or num_splits < 1 or num_splits > logits.shape[0]:
        raise ValueError(f"num_splits must be an integer in [1, N={logits.shape[0]}], got {num_splits!r}")
    log_p = logits.log_softmax(dim=1)
    scores = []
    bounds = [i * len(log_p) // num_splits for i in range(num_splits + 1)]  # torch-fidelity's split points
    for chunk in (log_p[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True)):
        log_marginal = chunk.exp().mean(dim=0).log()
        kl = (chunk.exp() * (chunk - log_marginal)).sum(dim=1).mean()
        scores.append(kl.exp().item())
    return float(np.mean(scores)), float(np.std(scores))


def _kth_neighbour_radii(features: torch.Tensor, k: int, batch_size: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point (the point itself is excluded)."""
    radii = []
    for rows in features.split(batch_size):
        distances = torch.cat([torch.cdist(rows, cols) for cols in features.split(batch_size)], dim=1)
        radii.append(distances.kthvalue(k + 1, dim=1).values)  # the 1st smallest is the point itself
    return torch.cat(radii)


def _fraction_inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, batch_size: int) -> float:
    """Fraction of ``points`` inside at least one ball (centres, radii)."""
    inside = []
    for rows in points.split(batch_size):
        hits = torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device)
        for cols, col_radii in zip(centres.split(batch_size), radii.split(batch_size), strict=True):
            hits |= (torch.cdist(rows, cols) <= col_radii).any(dim=1)
        inside.append(hits)
    return torch.cat(inside).double().mean().item()


def precision_recall(
    real_features,
    fake_features,
    k: int = 3,
    batch_size: int = 10_000,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[float, float]:
    """Improved precision and recall of generated features (M, D) against real features (N, D).

    Distances are computed in ``batch_size`` x ``batch_size`` blocks on ``device`` (default: where
    the features are; pass a GPU for 50k x 10k features).
    """
    real = _as_tensor(real_features, "real_features", dtype).to(device)
    fake = _as_tensor(fake_features, "fake_features", dtype).to(device)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: real {real.shape[1]}, fake {fake.shape[1]}")
    if not isinstance(k, int) or k < 1 or k >= min(len(real), len(fake)):
        raise ValueError(f"k must be an integer in [1, min(N, M) - 1], got {k!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    precision = _fraction_inside(fake, real, _kth_neighbour_radii(real, k, batch_size), batch_size)
    recall = _fraction_inside(real, fake, _kth_neighbour_radii(fake, k, batch_size), batch_size)
    return precision, recall
