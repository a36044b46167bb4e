"""Feature statistics files that know the protocol they were computed with.

An ssmgen stats file is an ``.npz`` holding ``mu`` (D,), ``sigma`` (D, D), ``num_samples`` and the
:class:`FeatureProtocol` (extractor id, weights sha256, resize mode, quantisation), plus optionally
a subset of the raw ``features`` for precision/recall. Comparing two files whose protocols differ
raises :class:`ProtocolMismatchError` instead of producing a number that means nothing.

Foreign formats: pytorch-fid's ``.npz`` (``mu``, ``sigma``) and the ADM evaluator's batches
(``arr_0``: uint8 NHWC images, optionally ``mu``/``sigma``). Neither records its protocol, so
importing one requires saying which protocol produced it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from ssmgen.eval.frechet import frechet_distance, mean_and_covariance

STATS_FORMAT = "ssmgen-fid-stats-v1"
QUANTIZATION_MODES = ("round", "truncate", "uint8")
UNKNOWN_NUM_SAMPLES = -1


class ProtocolMismatchError(ValueError):
    """Two sets of statistics were computed with different feature protocols."""


@dataclass(frozen=True)
class FeatureProtocol:
    """How images became features.

    Attributes:
        extractor: network and layer, e.g. ``"inception-v3-fid/2048"`` or ``"digits-classifier/..."``.
        weights_sha256: :func:`ssmgen.eval.assets.weights_fingerprint` of the extractor's weights.
        resize: resize protocol (``"tf"``, ``"pytorch-fid"``, or ``"none"``).
        quantization: how float samples became uint8: ``"round"`` (``round(255 x)``, diffusers'
            PIL conversion), ``"truncate"`` (``floor(255 x)``, ADM/DiT sample scripts), or
            ``"uint8"`` for images that were uint8 to begin with (files, datasets).
    """

    extractor: str
    weights_sha256: str
    resize: str
    quantization: str

    def __post_init__(self):
        if self.quantization not in QUANTIZATION_MODES:
            raise ValueError(f"quantization must be one of {QUANTIZATION_MODES}, got {self.quantization!r}")

    def mismatches(self, other: FeatureProtocol) -> list[str]:
        """Fields that make the two protocols incomparable.

        Quantisation matters only between two quantised sets: real uint8 images are compatible
        with samples quantised either way.
        """
        differing = []
        for name in ("extractor", "weights_sha256", "resize"):
            if getattr(self, name) != getattr(other, name):
                differing.append(f"{name}: {getattr(self, name)!r} vs {getattr(other, name)!r}")
        if "uint8" not in (self.quantization, other.quantization) and self.quantization != other.quantization:
            differing.append(f"quantization: {self.quantization!r} vs {other.quantization!r}")
        return differing

    def check_compatible(self, other: FeatureProtocol) -> None:
        differing = self.mismatches(other)
        if differing:
            raise ProtocolMismatchError(
                "Statistics computed with different protocols cannot be compared: " + "; ".join(differing)
            )


@dataclass
class FIDStatistics:
    """Gaussian fit of a feature set: mu (D,), sigma (D, D), its sample count and protocol.

    ``features`` (M, D) optionally keeps raw features (e.g. 10k, as the ADM reference batches do)
    for precision/recall. ``num_samples`` is ``UNKNOWN_NUM_SAMPLES`` for imported foreign stats.
    """

    mu: np.ndarray
    sigma: np.ndarray
    num_samples: int
    protocol: FeatureProtocol
    features: np.ndarray | None = None

    @classmethod
    def from_features(cls, features, protocol: FeatureProtocol, keep_features: int = 0) -> FIDStatistics:
        """Fit features (N, D); keep the first ``keep_features`` rows for precision/recall."""
        if keep_features < 0:
            raise ValueError(f"keep_features must be >= 0, got {keep_features}")
        mu, sigma = mean_and_covariance(features)
        kept = np.asarray(features, dtype=np.float32)[:keep_features] if keep_features else None
        return cls(mu=mu, sigma=sigma, num_samples=len(features), protocol=protocol, features=kept)

    def frechet_distance(self, other: FIDStatistics) -> float:
        """FID between two stats of the same protocol (raises ``ProtocolMismatchError`` otherwise)."""
        self.protocol.check_compatible(other.protocol)
        return frechet_distance(self.mu, self.sigma, other.mu, other.sigma)

    def save(self, path: str | os.PathLike) -> None:
        arrays = dict(
            format=np.array(STATS_FORMAT),
            mu=self.mu,
            sigma=self.sigma,
            num_samples=np.array(self.num_samples, dtype=np.int64),
            **{f"protocol_{k}": np.array(v) for k, v in asdict(self.protocol).items()},
        )
        if self.features is not None:
            arrays["features"] = self.features
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> FIDStatistics:
        with np.load(path, allow_pickle=False) as data:
            if "format" not in data or str(data["format"]) != STATS_FORMAT:
                hint = (
                    "; it looks like a pytorch-fid file: use load_pytorch_fid_stats(path, protocol)"
                    if {"mu", "sigma"} <= set(data.files)
                    else ""
                )
                raise ValueError(f"{path} is not an ssmgen stats file ({STATS_FORMAT}){hint}")
            protocol = FeatureProtocol(**{f.name: str(data[f"protocol_{f.name}"]) for f in fields(FeatureProtocol)})
            return cls(
                mu=data["mu"].astype(np.float64),
                sigma=data["sigma"].astype(np.float64),
                num_samples=int(data["num_samples"]),
                protocol=protocol,
                features=data["features"] if "features" in data.files else None,
            )


def load_pytorch_fid_stats(path: str | os.PathLike, protocol: FeatureProtocol) -> FIDStatistics:
    """Import a pytorch-fid ``.npz`` (``mu``, ``sigma``), declaring the protocol it was computed with.

    pytorch-fid itself computes features with ``resize="pytorch-fid"``.
    """
    with np.load(path, allow_pickle=False) as data:
        if not {"mu", "sigma"} <= set(data.files):
            raise ValueError(f"{path} has no 'mu' and 'sigma' arrays (keys: {data.files})")
        mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
    return FIDStatistics(mu=mu, sigma=sigma, num_samples=UNKNOWN_NUM_SAMPLES, protocol=protocol)


def save_pytorch_fid_stats(stats: FIDStatistics, path: str | os.PathLike) -> None:
    """Export ``mu`` and ``sigma`` in pytorch-fid's format (the protocol is not recorded there)."""
    np.savez_compressed(path, mu=stats.mu, sigma=stats.sigma)


def load_adm_batch(path: str | os.PathLike) -> np.ndarray:
    """Images ``arr_0`` (N, H, W, 3) uint8 of an ADM evaluator batch (reference or samples)."""
    with np.load(path, allow_pickle=False) as data:
        if "arr_0" not in data.files:
            raise ValueError(f"{path} is not an ADM batch: no 'arr_0' array (keys: {data.files})")
        images = data["arr_0"]
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"{path}: arr_0 must be uint8 (N, H, W, C), got {images.dtype} {images.shape}")
    return images


def load_adm_reference_stats(path: str | os.PathLike, protocol: FeatureProtocol) -> FIDStatistics:
    """The precomputed ``mu``/``sigma`` of an ADM reference batch (TF graph: ``resize="tf"``)."""
    with np.load(path, allow_pickle=False) as data:
        if not {"mu", "sigma"} <= set(data.files):
            raise ValueError(f"{path} holds no precomputed 'mu'/'sigma'; compute them from load_adm_batch(path)")
        mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
    return FIDStatistics(mu=mu, sigma=sigma, num_samples=UNKNOWN_NUM_SAMPLES, protocol=protocol)


def save_adm_batch(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray | None = None) -> None:
    """Write uint8 images (N, H, W, 3) as ``arr_0`` (and class labels as ``arr_1``) for the ADM evaluator."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if labels is None:
        np.savez(path, images)
    else:
        np.savez(path, images, np.asarray(labels))
