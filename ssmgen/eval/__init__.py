"""Evaluation: image FID with the papers' Inception protocol, IS, precision/recall, motion metrics.

Images (:mod:`ssmgen.eval.fid` is the entry point):
    :class:`InceptionFeatureExtractor` (pytorch-fid / torch-fidelity weights from a path, ``"tf"`` or
    ``"pytorch-fid"`` resize), :func:`frechet_distance` (float64, no scipy), :class:`FIDStatistics`
    (stats files that refuse mismatched protocols), :func:`inception_score`, :func:`precision_recall`,
    distributed extraction with per-sample seeds, and the digits classifier for "digits-FID".

Motion:
    :func:`evaluate_motion` (R-precision, FID, MM-Dist, Diversity, MultiModality, repeated with 95%
    intervals), the original :class:`T2MEvaluator` and the trainable
    :class:`ContrastiveTextMotionEvaluator`.

Submodules import torch/diffusers only when used through these names.
"""

import importlib

_EXPORTS = {
    "MissingAssetError": "assets",
    "InceptionFeatureExtractor": "inception",
    "frechet_distance": "frechet",
    "mean_and_covariance": "frechet",
    "FeatureProtocol": "stats",
    "FIDStatistics": "stats",
    "ProtocolMismatchError": "stats",
    "load_pytorch_fid_stats": "stats",
    "save_pytorch_fid_stats": "stats",
    "inception_score": "image_metrics",
    "precision_recall": "image_metrics",
    "extract_generated_features": "extract",
    "extract_image_features": "extract",
    "feature_protocol": "extract",
    "quantize_images": "extract",
    "ImageFolder": "fid",
    "image_metrics": "fid",
    "load_extractor": "fid",
    "pipeline_sampler": "fid",
    "reference_statistics": "fid",
    "DigitsClassifier": "digits_classifier",
    "DigitsFeatureExtractor": "digits_classifier",
    "train_digits_classifier": "digits_classifier",
    "evaluate_motion": "motion",
    "T2MEvaluator": "t2m_evaluator",
    "ContrastiveTextMotionEvaluator": "text_motion_evaluator",
    "train_text_motion_evaluator": "text_motion_evaluator",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ssmgen.eval' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ssmgen.eval.{_EXPORTS[name]}"), name)
