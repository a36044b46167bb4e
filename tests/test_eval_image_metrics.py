"""Inception Score and precision/recall: closed forms and torch-fidelity as the peer."""

import numpy as np
import pytest
import torch
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_prc import calculate_precision_recall_full

from ssmgen.eval.image_metrics import inception_score, precision_recall


def test_inception_score_closed_forms():
    # Confident and evenly spread over K classes: IS = K. Identical predictions: IS = 1.
    confident = torch.full((40, 8), -50.0)
    confident[torch.arange(40), torch.arange(40) % 8] = 50.0
    assert inception_score(confident, num_splits=5)[0] == pytest.approx(8.0, rel=1e-9)
    same = torch.randn(1, 8).expand(40, 8)
    mean, std = inception_score(same, num_splits=4)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_matches_torch_fidelity_without_shuffle():
    logits = torch.randn(103, 1008, generator=torch.Generator().manual_seed(0)) * 3
    expected = isc_features_to_metric(logits, splits=10, shuffle=False)
    mean, std = inception_score(logits.numpy(), num_splits=10)
    assert mean == pytest.approx(expected["inception_score_mean"], rel=1e-10)
    assert std == pytest.approx(expected["inception_score_std"], rel=1e-8)


def test_precision_recall_on_points_with_known_neighbourhoods():
    # Real points on a line at 0..9 have k=3 radius 3 (the ends) or 2 (inside).
    real = np.arange(10.0)[:, None]
    # Fake: 5 points near the real ones, 5 far away -> precision 0.5.
    # Fake radii: the near cluster 0..0.4 has radius 0.3, the far one too, so only real point 0 is covered.
    fake = np.concatenate([np.linspace(0.0, 0.4, 5), np.linspace(100.0, 100.4, 5)])[:, None]
    precision, recall = precision_recall(real, fake, k=3)
    assert precision == pytest.approx(0.5)
    assert recall == pytest.approx(0.1)


def test_precision_recall_match_torch_fidelity_and_do_not_depend_on_batch_size():
    generator = torch.Generator().manual_seed(1)
    real = torch.randn(120, 16, generator=generator)
    fake = torch.randn(90, 16, generator=generator) * 1.3 + 0.4
    expected_precision, expected_recall = calculate_precision_recall_full(fake.double(), real.double(), 3)
    for batch_size in (7, 10_000):
        precision, recall = precision_recall(real, fake, k=3, batch_size=batch_size)
        assert precision == pytest.approx(expected_precision, abs=1e-6)  # the peer averages in float32
        assert recall == pytest.approx(expected_recall, abs=1e-6)
    assert 0.0 < expected_precision < 1.0 and 0.0 < expected_recall < 1.0  # the case is not degenerate


def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match="num_splits"):
        inception_score(torch.zeros(4, 3), num_splits=5)
    with pytest.raises(ValueError, match="feature dimensions differ"):
        precision_recall(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError, match="k must be"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)), k=3)
    with pytest.raises(ValueError, match="NaN"):
        precision_recall(np.full((10, 2), np.nan), np.zeros((10, 2)))
