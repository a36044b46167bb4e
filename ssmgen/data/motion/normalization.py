"""Feature statistics: HumanML3D's ``Mean.npy`` / ``Std.npy`` with group-averaged standard deviations.

``cal_mean_variance.ipynb`` takes the per-dimension mean and (population) standard deviation over every
frame of every motion, then replaces the std of each feature group (root rotation velocity, root linear
velocity, root height, ric positions, 6-D rotations, local velocities, foot contacts) by the group's
average std, so that all dimensions of a group are scaled alike.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .features import feature_slices, num_joints_from_feature_dim

__all__ = ["compute_mean_std", "denormalize", "load_mean_std", "normalize", "save_mean_std"]


def compute_mean_std(
    features: np.ndarray | Sequence[np.ndarray], constant_std: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and group-averaged std (D,) float32 over all frames of features (N, D) or [(T_i, D), ...].

    A group that is constant over all frames (e.g. foot contacts of a few motions that never lift a
    foot) has std 0: that raises, unless ``constant_std`` gives the std to use for it instead.
    """
    arrays = [features] if isinstance(features, np.ndarray) else list(features)
    if not arrays:
        raise ValueError("features must contain at least one motion")
    dims = {a.shape[-1] if a.ndim == 2 else None for a in arrays}
    if len(dims) != 1 or None in dims:
        raise ValueError(
            f"features must all be 2-D (frames, dim) with one dim, got shapes {[a.shape for a in arrays[:5]]}"
        )
    data = np.concatenate(arrays, axis=0).astype(np.float64)
    if not np.isfinite(data).all():
        raise ValueError("features contain NaN or infinite values")
    mean, std = data.mean(axis=0), data.std(axis=0)
    for name, group in feature_slices(num_joints_from_feature_dim(data.shape[-1])).items():
        std[group] = std[group].mean()
        if std[group][0] <= 0:
            if constant_std is None:
                raise ValueError(f"feature group {name!r} is constant over all frames; its std would be 0")
            std[group] = constant_std
    return mean.astype(np.float32), std.astype(np.float32)


def _check_stats(mean, std, dim: int) -> None:
    if tuple(mean.shape) != (dim,) or tuple(std.shape) != (dim,):
        raise ValueError(f"mean and std must have shape ({dim},), got {tuple(mean.shape)} and {tuple(std.shape)}")


def normalize(features, mean, std):
    """``(features - mean) / std`` for features (..., D) and stats (D,); numpy or torch."""
    _check_stats(mean, std, features.shape[-1])
    if isinstance(features, torch.Tensor):
        mean, std = (torch.as_tensor(x, dtype=features.dtype, device=features.device) for x in (mean, std))
    return (features - mean) / std


def denormalize(features, mean, std):
    """``features * std + mean`` for features (..., D) and stats (D,); numpy or torch."""
    _check_stats(mean, std, features.shape[-1])
    if isinstance(features, torch.Tensor):
        mean, std = (torch.as_tensor(x, dtype=features.dtype, device=features.device) for x in (mean, std))
    return features * std + mean


def load_mean_std(directory: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and check ``Mean.npy`` and ``Std.npy`` (D,) from a dataset folder."""
    directory = Path(directory)
    stats = []
    for name in ("Mean.npy", "Std.npy"):
        path = directory / name
        if not path.is_file():
            raise ValueError(f"{path} not found: a motion dataset folder needs Mean.npy and Std.npy")
        stats.append(np.load(path, allow_pickle=False).astype(np.float32))
    mean, std = stats
    if mean.ndim != 1 or mean.shape != std.shape:
        raise ValueError(f"Mean.npy and Std.npy must be 1-D of one size, got {mean.shape} and {std.shape}")
    num_joints_from_feature_dim(mean.shape[0])
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise ValueError(f"{directory}: Mean.npy / Std.npy must be finite and Std.npy positive")
    return mean, std


def save_mean_std(directory: str | Path, mean: np.ndarray, std: np.ndarray) -> None:
    """Write ``Mean.npy`` and ``Std.npy`` (float32) into ``directory``."""
    _check_stats(mean, std, mean.shape[-1])
    np.save(Path(directory) / "Mean.npy", np.asarray(mean, dtype=np.float32))
    np.save(Path(directory) / "Std.npy", np.asarray(std, dtype=np.float32))
