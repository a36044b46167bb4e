"""The built-in digits dataset: scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels).

It ships inside scikit-learn, so the demo, the tests and the digits-FID evaluator work offline.
Images are upsampled to ``resolution`` with bilinear interpolation and scaled to [-1, 1].
"""

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

DIGITS_NUM_CLASSES = 10
DIGITS_CLASS_NAMES = tuple(str(i) for i in range(DIGITS_NUM_CLASSES))


def load_digits(resolution: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images (1797, 1, resolution, resolution) float32 in [-1, 1], labels (1797,) int64)."""
    if not isinstance(resolution, int) or resolution < 8:
        raise ValueError(f"resolution must be an integer >= 8 (the digits are 8x8), got {resolution!r}")
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    images = torch.from_numpy(bunch.images).float().div(16.0)[:, None]  # (N, 1, 8, 8) in [0, 1]
    if resolution != 8:
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
    images = images.clamp(0.0, 1.0).mul(2.0).sub(1.0)
    labels = torch.from_numpy(bunch.target).long()
    return images, labels


def digits_dataset(resolution: int = 16) -> TensorDataset:
    """The digits as a ``TensorDataset`` of (image (1, R, R), label) pairs."""
    return TensorDataset(*load_digits(resolution))
