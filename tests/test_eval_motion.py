"""Motion metrics on constructed embeddings with known answers, and the full table with fake generators."""

import math

import numpy as np
import pytest
import torch

from ssmgen.eval.motion import (
    diversity,
    embedding_fid,
    evaluate_motion,
    matching_score,
    mean_and_interval,
    multimodality,
    r_precision,
)
from ssmgen.eval.motion_batch import collate_motion_text


def shifted_line(num):
    """Texts at 10 i, motions at 10 i + 6: each motion is nearer to the next text than to its own."""
    text = np.arange(num, dtype=float)[:, None] * 10
    return text, text + 6


def test_r_precision_counts_ranks_within_groups_and_drops_leftovers():
    text, motion = shifted_line(10)
    # In a group the first text ranks its own motion first; every other text finds the previous
    # motion (distance 4) before its own (distance 6). Groups of 4 use 8 samples, dropping 2.
    np.testing.assert_allclose(r_precision(text, motion, group_size=4, top_k=3), [0.25, 1.0, 1.0])
    np.testing.assert_allclose(r_precision(torch.tensor(text), torch.tensor(text), group_size=5), [1.0, 1.0, 1.0])


def test_matching_score_is_the_mean_own_pair_distance():
    text, motion = shifted_line(10)
    assert matching_score(text, motion, group_size=4) == pytest.approx(6.0)


def test_fid_of_a_shifted_copy_is_the_squared_shift():
    real = np.random.default_rng(0).normal(size=(200, 6))
    shift = np.array([1.0, -2.0, 0.0, 0.5, 0.0, 3.0])
    assert embedding_fid(real, real + shift) == pytest.approx((shift**2).sum(), rel=1e-9)


def test_diversity_of_orthogonal_points_and_of_identical_points():
    scale = 2.0
    points = scale * np.eye(300)  # any two different points are scale * sqrt(2) apart
    value = diversity(points, num_pairs=299, rng=np.random.default_rng(1))
    distinct_pairs = value * 299 / (scale * math.sqrt(2))
    assert distinct_pairs == pytest.approx(round(distinct_pairs), abs=1e-9)  # pairs are either 0 or s*sqrt(2)
    assert 299 - 10 <= round(distinct_pairs) <= 299
    assert diversity(np.ones((50, 3)), num_pairs=20) == 0.0
    doubled = diversity(2 * points, num_pairs=299, rng=np.random.default_rng(1))
    assert doubled == pytest.approx(2 * value)


def test_multimodality_of_constructed_generations():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(7, 1, 30)) * 100
    assert multimodality(np.repeat(centres, 30, axis=1), num_pairs=10, rng=rng) == pytest.approx(0.0, abs=1e-9)
    spread = centres + 3.0 * np.eye(30)[None]  # generation r of caption c: centre_c + 3 e_r
    value = multimodality(spread, num_pairs=10, rng=np.random.default_rng(3))
    distinct = value * 10 / (3.0 * math.sqrt(2))
    assert distinct == pytest.approx(round(distinct), abs=1e-9) and 7 <= round(distinct) <= 10


def test_mean_and_interval_use_the_population_std():
    mean, interval = mean_and_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and interval == pytest.approx(1.96 * math.sqrt(1.25) / 2)


def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match="group_size"):
        r_precision(np.zeros((10, 2)), np.zeros((10, 2)), group_size=32)
    with pytest.raises(ValueError, match="one shape"):
        r_precision(np.zeros((10, 2)), np.zeros((9, 2)), group_size=4)
    with pytest.raises(ValueError, match="num_pairs"):
        diversity(np.zeros((300, 2)), num_pairs=300)
    with pytest.raises(ValueError, match="3 dimensions"):
        multimodality(np.zeros((4, 2)))


# ------------------------------------------------------------------------------------------------
# evaluate_motion with a constructed dataset, evaluator and generators
# ------------------------------------------------------------------------------------------------

NUM_ITEMS, NUM_FEATURES = 400, 4


def constant_motions():
    """Item k is the constant pose v_k for a random number of frames, captioned 'caption k'."""
    rng = np.random.default_rng(4)
    poses = rng.normal(size=(NUM_ITEMS, NUM_FEATURES)).astype(np.float32)
    lengths = rng.integers(6, 20, size=NUM_ITEMS)
    return [
        dict(motion=np.repeat(poses[k][None], lengths[k], axis=0), caption=f"caption {k}", length=int(lengths[k]))
        for k in range(NUM_ITEMS)
    ]


class MeanPoseEvaluator:
    """Motion embedding = mean pose over the valid frames; text embedding = the pose the caption names."""

    def __init__(self, dataset):
        self.poses = {item["caption"]: torch.as_tensor(item["motion"][0]) for item in dataset}

    def encode_text(self, captions, tokens=None):
        return torch.stack([self.poses[c] for c in captions])

    def encode_motion(self, motions, lengths):
        mask = torch.arange(motions.shape[1])[None, :, None] < lengths[:, None, None]
        return (motions * mask).sum(1) / lengths[:, None]


def test_a_perfect_generator_matches_the_real_data_on_every_metric():
    dataset = constant_motions()
    by_caption = {item["caption"]: item for item in dataset}
    seen_lengths = []

    def perfect(captions, lengths, generator):
        assert isinstance(generator, torch.Generator)
        seen_lengths.extend(lengths.tolist())
        return collate_motion_text([by_caption[c] for c in captions]).motions

    kwargs = dict(repeats=2, diversity_pairs=100, mm_num_captions=5, mm_repeats=6, mm_pairs=3, progress=False)
    results = evaluate_motion(perfect, dataset, MeanPoseEvaluator(dataset), **kwargs)
    assert set(results) == {
        *(f"{p}r_precision_top_{k}" for p in ("", "gt_") for k in (1, 2, 3)),
        *("fid", "mm_dist", "gt_mm_dist", "diversity", "gt_diversity", "multimodality"),
    }
    assert results["r_precision_top_1"] == pytest.approx((1.0, 0.0))
    assert results["mm_dist"] == pytest.approx((0.0, 0.0), abs=1e-6)
    assert results["fid"][0] == pytest.approx(0.0, abs=1e-9)
    assert results["multimodality"] == pytest.approx((0.0, 0.0), abs=1e-6)
    for name in ("r_precision_top_2", "mm_dist", "diversity"):
        assert results[name] == pytest.approx(results[f"gt_{name}"], abs=1e-6)
    assert sorted(seen_lengths[:NUM_ITEMS]) == sorted(item["length"] for item in dataset)


def test_a_noise_generator_is_at_chance_level_and_far_in_fid():
    dataset = constant_motions()

    def noise(captions, lengths, generator):
        return torch.randn(len(captions), int(lengths.max()), NUM_FEATURES, generator=generator)

    kwargs = dict(repeats=3, diversity_pairs=100, mm_num_captions=0, progress=False)
    results = evaluate_motion(noise, dataset, MeanPoseEvaluator(dataset), **kwargs)
    assert results["r_precision_top_3"][0] < 0.25  # chance is 3 / 32
    assert results["gt_r_precision_top_1"][0] == 1.0
    assert results["fid"][0] > 1.0 and results["r_precision_top_1"][1] > 0.0
    assert "multimodality" not in results
    again = evaluate_motion(noise, dataset, MeanPoseEvaluator(dataset), **kwargs)
    assert again == results  # seeded: the same table twice

    with pytest.raises(ValueError, match="generate_fn must return"):
        evaluate_motion(lambda c, n, g: torch.zeros(len(c), 2, NUM_FEATURES), dataset, MeanPoseEvaluator(dataset))
    with pytest.raises(ValueError, match="diversity_pairs"):
        evaluate_motion(noise, dataset[:200], MeanPoseEvaluator(dataset))

    class NormalisedDataset(list):
        normalize = True

    with pytest.raises(ValueError, match="normalize=False"):
        evaluate_motion(noise, NormalisedDataset(dataset), MeanPoseEvaluator(dataset))


def test_collate_reads_the_text_key_of_ssmgen_datasets_and_checks_lengths():
    items = [dict(motion=np.zeros((5, 2)), text="walk", length=4), dict(motion=np.ones((3, 2)), caption="run")]
    batch = collate_motion_text(items)
    assert batch.captions == ["walk", "run"] and batch.lengths.tolist() == [4, 3] and batch.motions.shape == (2, 5, 2)
    with pytest.raises(ValueError, match="length"):
        collate_motion_text([dict(motion=np.zeros((3, 2)), text="x", length=4)])
    with pytest.raises(ValueError, match="'text' or 'caption'"):
        collate_motion_text([dict(motion=np.zeros((3, 2)))])
