"""Stats files: round trips, protocol checks, pytorch-fid and ADM formats."""

import numpy as np
import pytest
from pytorch_fid.fid_score import compute_statistics_of_path

from ssmgen.eval.stats import (
    UNKNOWN_NUM_SAMPLES,
    FeatureProtocol,
    FIDStatistics,
    ProtocolMismatchError,
    load_adm_batch,
    load_adm_reference_stats,
    load_pytorch_fid_stats,
    save_adm_batch,
    save_pytorch_fid_stats,
)

PROTOCOL = FeatureProtocol("inception-v3-fid/2048", "ab" * 32, "tf", "round")


def features(seed, n=50, dim=8):
    return np.random.default_rng(seed).normal(size=(n, dim))


def test_save_load_round_trip_keeps_everything(tmp_path):
    stats = FIDStatistics.from_features(features(0), PROTOCOL, keep_features=20)
    stats.save(tmp_path / "ref.npz")
    loaded = FIDStatistics.load(tmp_path / "ref.npz")
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    np.testing.assert_array_equal(loaded.features, features(0)[:20].astype(np.float32))
    assert loaded.num_samples == 50
    assert loaded.protocol == PROTOCOL
    with np.load(tmp_path / "ref.npz", allow_pickle=False) as raw:  # plain arrays, no pickles
        assert str(raw["protocol_resize"]) == "tf"


def test_frechet_distance_between_stats_uses_both_fits():
    a = FIDStatistics.from_features(features(1), PROTOCOL)
    b = FIDStatistics.from_features(features(2) + 3.0, PROTOCOL)
    assert a.frechet_distance(b) > 8 * 9 * 0.5  # mean shift of 3 in 8 dims dominates
    assert abs(a.frechet_distance(a)) < 1e-9


@pytest.mark.parametrize(
    "field, value",
    [("extractor", "digits-classifier/16"), ("weights_sha256", "cd" * 32), ("resize", "pytorch-fid")],
)
def test_mismatched_protocols_refuse_to_compare(field, value):
    other = FeatureProtocol(**{**PROTOCOL.__dict__, field: value})
    a = FIDStatistics.from_features(features(3), PROTOCOL)
    b = FIDStatistics.from_features(features(4), other)
    with pytest.raises(ProtocolMismatchError, match=field):
        a.frechet_distance(b)


def test_quantisation_must_match_between_samples_but_not_against_real_images():
    truncated = FeatureProtocol(**{**PROTOCOL.__dict__, "quantization": "truncate"})
    real = FeatureProtocol(**{**PROTOCOL.__dict__, "quantization": "uint8"})
    assert PROTOCOL.mismatches(real) == [] and truncated.mismatches(real) == []
    with pytest.raises(ProtocolMismatchError, match="quantization"):
        PROTOCOL.check_compatible(truncated)
    with pytest.raises(ValueError, match="quantization must be one of"):
        FeatureProtocol("x", "y", "tf", "nearest")


def test_pytorch_fid_export_is_read_by_pytorch_fid_and_imports_back(tmp_path):
    stats = FIDStatistics.from_features(features(5), PROTOCOL)
    save_pytorch_fid_stats(stats, tmp_path / "pfid.npz")
    mu, sigma = compute_statistics_of_path(str(tmp_path / "pfid.npz"), None, 50, 2048, "cpu")
    np.testing.assert_array_equal(mu, stats.mu)
    np.testing.assert_array_equal(sigma, stats.sigma)
    imported = load_pytorch_fid_stats(tmp_path / "pfid.npz", PROTOCOL)
    assert imported.num_samples == UNKNOWN_NUM_SAMPLES
    assert abs(imported.frechet_distance(stats)) < 1e-9
    with pytest.raises(ValueError, match="load_pytorch_fid_stats"):
        FIDStatistics.load(tmp_path / "pfid.npz")


def test_adm_batches_round_trip_and_reference_stats_import(tmp_path):
    images = np.random.default_rng(6).integers(0, 256, size=(5, 8, 8, 3), dtype=np.uint8)
    save_adm_batch(tmp_path / "samples.npz", images, labels=np.arange(5))
    with np.load(tmp_path / "samples.npz") as raw:  # what ADM's evaluator reads
        assert raw.files == ["arr_0", "arr_1"]
    np.testing.assert_array_equal(load_adm_batch(tmp_path / "samples.npz"), images)
    with pytest.raises(ValueError, match="precomputed"):
        load_adm_reference_stats(tmp_path / "samples.npz", PROTOCOL)

    np.savez(tmp_path / "ref.npz", arr_0=images, mu=np.zeros(4), sigma=np.eye(4))
    reference = load_adm_reference_stats(tmp_path / "ref.npz", PROTOCOL)
    np.testing.assert_array_equal(reference.sigma, np.eye(4))
    with pytest.raises(ValueError, match="uint8"):
        save_adm_batch(tmp_path / "bad.npz", images.astype(np.float32))
