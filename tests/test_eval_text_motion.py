"""The native contrastive evaluator learns a dataset where the text determines the motion."""

import math

import numpy as np
import pytest
import torch

from ssmgen.eval.motion import evaluate_motion, r_precision
from ssmgen.eval.motion_batch import collate_motion_text
from ssmgen.eval.text_motion_evaluator import (
    ContrastiveTextMotionEvaluator,
    build_vocabulary,
    contrastive_loss,
    train_text_motion_evaluator,
)

VERBS, DIRECTIONS, SPEEDS = (
    ["walks", "jumps", "waves", "spins"],
    ["left", "right", "forward", "back"],
    ["slowly", "fast"],
)


def motion_for(caption: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """'a person {verb} {direction} {speed}': the verb sets a frequency and a channel, the direction
    the channel of an oscillation, the speed its amplitude; noise is added."""
    _, _, verb, direction, speed = caption.split()
    verb, direction = VERBS.index(verb), DIRECTIONS.index(direction)
    amplitude = (0.5, 2.0)[SPEEDS.index(speed)]
    motion = 0.1 * rng.normal(size=(length, 8)).astype(np.float32)
    motion[:, direction] += amplitude * np.sin((verb + 1) * 0.1 * math.pi * np.arange(length))
    motion[:, 4 + verb] += amplitude
    return motion


def compositional_motions(num_items: int, seed: int) -> list[dict]:
    """Items with random captions from the grammar above and random lengths in [24, 48]."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(num_items):
        caption = f"a person {rng.choice(VERBS)} {rng.choice(DIRECTIONS)} {rng.choice(SPEEDS)}"
        length = int(rng.integers(24, 49))
        items.append(dict(motion=motion_for(caption, length, rng), caption=caption, length=length))
    return items


@pytest.fixture(scope="module")
def trained():
    return train_text_motion_evaluator(
        compositional_motions(384, seed=0), epochs=8, hidden_size=64, embed_dim=32, progress=False
    )


def retrieval(evaluator, items):
    batch = collate_motion_text(items)
    with torch.no_grad():
        text = evaluator.encode_text(batch.captions)
        motion = evaluator.encode_motion(batch.motions, batch.lengths)
    return r_precision(text, motion, group_size=32, top_k=3)


def test_training_makes_held_out_retrieval_far_better_than_chance(trained):
    held_out = compositional_motions(256, seed=1)
    learned = retrieval(trained, held_out)
    untrained = ContrastiveTextMotionEvaluator(trained.config.vocabulary, 8, embed_dim=32, hidden_size=64)
    # top-3 (chance 3 / 32); with 32 distinct captions a group holds several motions of the same
    # caption, which a perfect evaluator cannot order, so top-1 stays well below 1
    assert learned[2] >= 0.8
    assert learned[2] > retrieval(untrained, held_out)[2] + 0.5


def test_save_and_load_round_trip(trained, tmp_path):
    trained.save_pretrained(tmp_path)
    loaded = ContrastiveTextMotionEvaluator.from_pretrained(tmp_path)
    batch = collate_motion_text(compositional_motions(8, seed=2))
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_text(batch.captions), trained.encode_text(batch.captions))
        torch.testing.assert_close(
            loaded.encode_motion(batch.motions, batch.lengths), trained.encode_motion(batch.motions, batch.lengths)
        )
    torch.testing.assert_close(loaded.motion_std, trained.motion_std)


def test_the_trained_evaluator_plugs_into_evaluate_motion(trained):
    dataset = compositional_motions(160, seed=3)
    rng = np.random.default_rng(4)

    def from_caption(captions, lengths, generator):  # a perfect conditional generator
        return collate_motion_text(
            [dict(motion=motion_for(c, int(n), rng), caption=c) for c, n in zip(captions, lengths, strict=True)]
        ).motions

    with torch.no_grad():
        results = evaluate_motion(
            from_caption, dataset, trained, repeats=1, diversity_pairs=100, mm_num_captions=0, progress=False
        )
    assert results["r_precision_top_3"][0] > 0.6 and results["fid"][0] < results["gt_diversity"][0] ** 2


def test_trains_and_evaluates_on_the_built_in_synthetic_motion_dataset(tmp_path):
    from ssmgen.data.motion import Text2MotionDataset, build_synthetic_dataset

    root = build_synthetic_dataset(tmp_path / "synthetic", num_motions=40, seed=0, split_fractions=(0.8, 0.1, 0.1))
    train = Text2MotionDataset(root, "train", normalize=False, seed=0)  # evaluators take raw features
    evaluator = train_text_motion_evaluator(train, epochs=2, hidden_size=32, embed_dim=16, progress=False)
    assert evaluator.config.num_features == 263 and "person" in evaluator.config.vocabulary

    def standing_still(captions, lengths, generator):  # the same (all-zero) motion for every caption
        return torch.zeros(len(captions), int(lengths.max()), 263)

    with torch.no_grad():
        results = evaluate_motion(
            standing_still, train, evaluator, repeats=1, diversity_pairs=10, mm_num_captions=0, progress=False
        )
    assert all(np.isfinite(mean) for mean, _ in results.values())
    assert results["diversity"][0] == pytest.approx(0.0, abs=1e-5)  # every generated motion is the same
    assert results["gt_diversity"][0] > 0.0


def test_contrastive_loss_closed_forms():
    text = motion = torch.eye(2)
    scale = torch.tensor(math.log(100.0))
    # distinct captions, perfectly separated pairs: loss log(1 + exp(-100)) ~ 0
    assert contrastive_loss(text, motion, scale, ["walk", "run"]).item() == pytest.approx(0.0, abs=1e-6)
    # the same caption twice: both motions are positives (targets 1/2, 1/2), so loss = 100 / 2 + ~0
    assert contrastive_loss(text, motion, scale, ["walk", "walk"]).item() == pytest.approx(50.0, rel=1e-6)


def test_vocabulary_and_unknown_words():
    vocabulary = build_vocabulary(["A person walks.", "a person runs!"])
    assert vocabulary == ["<pad>", "<unk>", "a", "person", "runs", "walks"]
    evaluator = ContrastiveTextMotionEvaluator(vocabulary, num_features=3, embed_dim=4, hidden_size=8)
    ids, lengths = evaluator.token_ids(["a person swims", ""])
    assert ids.tolist() == [[2, 3, 1], [1, 0, 0]] and lengths.tolist() == [3, 1]
    with pytest.raises(ValueError, match="vocabulary must start"):
        ContrastiveTextMotionEvaluator(["a"], num_features=3)
    with pytest.raises(ValueError, match="lengths"):
        evaluator.encode_motion(torch.zeros(1, 8, 3), torch.tensor([2]))
