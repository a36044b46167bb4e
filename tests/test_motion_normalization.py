"""Mean/Std with group-averaged std (HumanML3D cal_mean_variance) and (de)normalisation."""

import numpy as np
import pytest
import torch

from ssmgen.data.motion import compute_mean_std, denormalize, load_mean_std, normalize, save_mean_std

GROUP_BOUNDS = [0, 1, 3, 4, 67, 193, 259, 263]  # HumanML3D's seven groups for 22 joints


def test_std_is_averaged_within_each_feature_group():
    rng = np.random.default_rng(0)
    motions = [rng.normal(size=(n, 263)) * rng.uniform(0.1, 3.0, size=263) + 5.0 for n in (40, 55, 70)]
    mean, std = compute_mean_std(motions)
    data = np.concatenate(motions)
    np.testing.assert_allclose(mean, data.mean(0), rtol=1e-5)
    per_dim = data.std(0)
    for start, stop in zip(GROUP_BOUNDS[:-1], GROUP_BOUNDS[1:], strict=True):
        np.testing.assert_allclose(std[start:stop], per_dim[start:stop].mean(), rtol=1e-5)
    assert mean.dtype == std.dtype == np.float32
    one_array_mean, _ = compute_mean_std(data)
    np.testing.assert_allclose(one_array_mean, mean, rtol=1e-6)


def test_normalize_and_denormalize_invert_each_other_for_numpy_and_torch(tmp_path):
    rng = np.random.default_rng(1)
    mean, std = compute_mean_std([rng.normal(size=(50, 251))])
    features = rng.normal(size=(3, 10, 251)).astype(np.float32)
    np.testing.assert_allclose(denormalize(normalize(features, mean, std), mean, std), features, atol=1e-5)
    tensor = torch.from_numpy(features)
    torch.testing.assert_close(normalize(tensor, mean, std), torch.from_numpy((features - mean) / std))
    save_mean_std(tmp_path, mean, std)
    loaded_mean, loaded_std = load_mean_std(tmp_path)
    np.testing.assert_array_equal(loaded_mean, mean)
    np.testing.assert_array_equal(loaded_std, std)


def test_bad_statistics_and_features_raise(tmp_path):
    with pytest.raises(ValueError, match="constant"):
        compute_mean_std([np.ones((10, 263))])
    varying = np.random.default_rng(2).normal(size=(10, 263))
    varying[:, 259:] = 1.0  # foot contacts that never change
    _, std = compute_mean_std([varying], constant_std=1.0)
    np.testing.assert_array_equal(std[259:], 1.0)
    with pytest.raises(ValueError, match="NaN"):
        compute_mean_std([np.full((10, 263), np.nan)])
    with pytest.raises(ValueError, match="one dim"):
        compute_mean_std([np.zeros((10, 263)), np.zeros((10, 251))])
    with pytest.raises(ValueError, match="at least one"):
        compute_mean_std([])
    with pytest.raises(ValueError, match="shape \\(263,\\)"):
        normalize(np.zeros((4, 263)), np.zeros(251), np.ones(251))
    with pytest.raises(ValueError, match="Mean.npy"):
        load_mean_std(tmp_path)
    np.save(tmp_path / "Mean.npy", np.zeros(263, dtype=np.float32))
    np.save(tmp_path / "Std.npy", np.zeros(263, dtype=np.float32))
    with pytest.raises(ValueError, match="positive"):
        load_mean_std(tmp_path)
