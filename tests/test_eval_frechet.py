"""Fréchet distance against closed forms and against the scipy sqrtm formula."""

import numpy as np
import pytest
import scipy.linalg

from ssmgen.eval.frechet import frechet_distance, mean_and_covariance, trace_sqrt_product


def random_covariance(rng, dim, rank=None):
    factor = rng.normal(size=(dim, rank or dim))
    return factor @ factor.T / dim


def sqrtm_frechet(mu1, sigma1, mu2, sigma2):
    """The TTUR / pytorch-fid formula, with scipy's general matrix square root."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def test_commuting_diagonal_covariances_match_closed_form():
    # For diagonal S1, S2: FID = |dmu|^2 + sum (sqrt(s1) - sqrt(s2))^2.
    rng = np.random.default_rng(0)
    s1, s2 = rng.uniform(0.1, 3.0, 16), rng.uniform(0.1, 3.0, 16)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-12)


def test_scaled_covariance_matches_closed_form():
    # S2 = c^2 S1 gives tr((S1 S2)^1/2) = c tr(S1), so FID = |dmu|^2 + (1 - c)^2 tr(S1).
    rng = np.random.default_rng(1)
    sigma = random_covariance(rng, 32)
    mu1, mu2 = rng.normal(size=32), rng.normal(size=32)
    c = 1.7
    expected = ((mu1 - mu2) ** 2).sum() + (1 - c) ** 2 * np.trace(sigma)
    assert frechet_distance(mu1, sigma, mu2, c**2 * sigma) == pytest.approx(expected, rel=1e-10)


def test_identical_gaussians_give_zero_and_distance_is_symmetric():
    rng = np.random.default_rng(2)
    sigma1, sigma2 = random_covariance(rng, 24), random_covariance(rng, 24)
    mu1, mu2 = rng.normal(size=24), rng.normal(size=24)
    assert abs(frechet_distance(mu1, sigma1, mu1, sigma1)) < 1e-10 * np.trace(sigma1) * 24
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(
        frechet_distance(mu2, sigma2, mu1, sigma1), rel=1e-10
    )


@pytest.mark.parametrize("rank", [None, 10])
def test_matches_scipy_sqrtm_formula(rank):
    rng = np.random.default_rng(3)
    dim = 48
    sigma1, sigma2 = random_covariance(rng, dim, rank), random_covariance(rng, dim)
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(
        sqrtm_frechet(mu1, sigma1, mu2, sigma2), rel=1e-8, abs=1e-8
    )


def test_trace_sqrt_product_of_commuting_projections():
    # Orthogonal projections onto nested subspaces: S1 S2 = S1, whose square root has trace rank(S1).
    # The zero eigenvalues carry round-off of ~1e-16, whose square roots are ~1e-8.
    basis = np.linalg.qr(np.random.default_rng(4).normal(size=(12, 12)))[0]
    p1 = basis[:, :3] @ basis[:, :3].T
    p2 = basis[:, :7] @ basis[:, :7].T
    assert trace_sqrt_product(p1, p2) == pytest.approx(3.0, abs=1e-6)


def test_mean_and_covariance_match_numpy():
    features = np.random.default_rng(5).normal(size=(40, 6)).astype(np.float32)
    mu, sigma = mean_and_covariance(features)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, features.astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(features.astype(np.float64), rowvar=False), rtol=1e-12)


def test_too_few_samples_is_a_clear_error_and_rank_deficiency_warns():
    with pytest.raises(ValueError, match="at least 2 samples"):
        mean_and_covariance(np.zeros((1, 8)))
    with pytest.warns(UserWarning, match="rank-deficient"):
        mean_and_covariance(np.random.default_rng(6).normal(size=(5, 8)))


def test_bad_inputs_raise_value_errors_naming_the_argument():
    mu, sigma = np.zeros(4), np.eye(4)
    with pytest.raises(ValueError, match="sigma2 must have shape"):
        frechet_distance(mu, sigma, mu, np.eye(3))
    with pytest.raises(ValueError, match="sigma1 must be symmetric"):
        frechet_distance(mu, np.triu(np.ones((4, 4))), mu, sigma)
    with pytest.raises(ValueError, match="sigma1 is not positive semi-definite"):
        frechet_distance(mu, -np.eye(4), mu, sigma)
    with pytest.raises(ValueError, match="mu1 contains NaN"):
        frechet_distance(np.full(4, np.nan), sigma, mu, sigma)
