"""Fréchet distance between Gaussians, in float64, via symmetric eigendecompositions (no scipy).

FID = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).

For positive semi-definite S1, S2 the eigenvalues of S1 S2 equal those of the symmetric PSD matrix
S1^(1/2) S2 S1^(1/2), so tr((S1 S2)^(1/2)) is the sum of the square roots of its eigenvalues. Two
``eigh`` calls replace scipy's ``sqrtm``, whose results and signature changed across releases
(the 1.11.2-1.12 regression, ``disp`` removed in 1.18), and need no imaginary-part heuristics.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


def _as_float64(array, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def mean_and_covariance(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) in float64 of features (N, D), N >= 2.

    Warns when N <= D: the covariance is then rank-deficient and FID is strongly biased upwards
    (papers report FID-50K).
    """
    features = _as_float64(features, "features")
    if features.ndim != 2:
        raise ValueError(f"features must have shape (N, D), got {features.shape}")
    num_samples, dim = features.shape
    if num_samples < 2:
        raise ValueError(f"features must hold at least 2 samples to estimate a covariance, got {num_samples}")
    if num_samples <= dim:
        warnings.warn(
            f"{num_samples} samples for {dim}-d features: the covariance is rank-deficient and the "
            "Fréchet distance is biased; use more samples than dimensions (FID-50K is the convention).",
            stacklevel=2,
        )
    mu = features.mean(axis=0)
    centred = features - mu
    sigma = centred.T @ centred / (num_samples - 1)
    return mu, sigma


def _psd_sqrt(sigma: np.ndarray, name: str) -> np.ndarray:
    """Symmetric square root of a PSD matrix; rejects matrices with clearly negative eigenvalues."""
    eigenvalues, eigenvectors = np.linalg.eigh(sigma)
    tolerance = 1e-8 * max(1.0, float(np.abs(eigenvalues).max()))
    if eigenvalues.min() < -tolerance:
        raise ValueError(f"{name} is not positive semi-definite (smallest eigenvalue {eigenvalues.min():.3g})")
    roots = np.sqrt(np.clip(eigenvalues, 0.0, None))  # removes round-off negatives only
    return (eigenvectors * roots) @ eigenvectors.T


def trace_sqrt_product(sigma1, sigma2) -> float:
    """tr((sigma1 @ sigma2)^(1/2)) for PSD (D, D) matrices, in float64."""
    sigma1 = _as_float64(sigma1, "sigma1")
    sigma2 = _as_float64(sigma2, "sigma2")
    root1 = _psd_sqrt(sigma1, "sigma1")
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); mu (D,), sigma (D, D)."""
    mu1, mu2 = _as_float64(mu1, "mu1"), _as_float64(mu2, "mu2")
    sigma1, sigma2 = _as_float64(sigma1, "sigma1"), _as_float64(sigma2, "sigma2")
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 must be vectors of the same length, got {mu1.shape} and {mu2.shape}")
    dim = mu1.shape[0]
    for name, sigma in (("sigma1", sigma1), ("sigma2", sigma2)):
        if sigma.shape != (dim, dim):
            raise ValueError(f"{name} must have shape ({dim}, {dim}) to match mu, got {sigma.shape}")
        scale = max(1.0, float(np.abs(sigma).max()))
        if not np.allclose(sigma, sigma.T, rtol=0.0, atol=1e-8 * scale):
            raise ValueError(f"{name} must be symmetric")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return float(value)
