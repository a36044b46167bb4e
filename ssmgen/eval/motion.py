"""Text-to-motion metrics on evaluator embeddings, with the protocol of T2M / MLD / Motion Mamba.

* R-precision: embeddings (already in random order) are split into groups of 32; in each group the
  32x32 Euclidean text-motion distance matrix ranks the motions for every text; top-k is the
  fraction of texts whose own motion is among the k nearest. Leftover samples are dropped.
* MM-Dist (MLD's "Matching score"): mean distance between each text and its own motion, over the
  same groups.
* FID: Fréchet distance between the Gaussian fits of real and generated motion embeddings.
* Diversity: mean distance between two independent draws (without replacement) of 300 samples;
  :func:`evaluate_motion` uses the same draws for generated and real motions.
* MultiModality: for each of 100 captions, 30 generations; mean distance between 10 random
  within-caption pairs (the same index pairs for every caption).
* :func:`evaluate_motion` repeats everything (20 times in the papers) and reports the mean and the
  95% interval ``1.96 * std / sqrt(repeats)``.

Every function takes numpy arrays or torch tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from ssmgen.eval.frechet import frechet_distance, mean_and_covariance
from ssmgen.eval.motion_batch import collate_motion_text


class MotionTextEvaluator(Protocol):
    """Maps texts and raw motions (B, T, F) with lengths (B,) into one embedding space (B, D)."""

    def encode_text(self, captions: list[str], tokens: list[list[str]] | None = None) -> torch.Tensor: ...

    def encode_motion(self, motions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor: ...


GenerateFn = Callable[[list[str], torch.Tensor, torch.Generator], torch.Tensor]


def _as_array(embeddings, name: str, ndim: int = 2) -> np.ndarray:
    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().cpu().numpy()
    array = np.asarray(embeddings, dtype=np.float64)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def euclidean_distances(a, b) -> np.ndarray:
    """Pairwise distances (N, M) between rows of a (N, D) and b (M, D)."""
    a, b = _as_array(a, "a"), _as_array(b, "b")
    return np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)


def _paired_groups(text_embeddings, motion_embeddings, group_size: int):
    text = _as_array(text_embeddings, "text_embeddings")
    motion = _as_array(motion_embeddings, "motion_embeddings")
    if text.shape != motion.shape:
        raise ValueError(f"text and motion embeddings must have one shape, got {text.shape} and {motion.shape}")
    if not isinstance(group_size, int) or group_size < 2 or group_size > len(text):
        raise ValueError(f"group_size must be an integer in [2, N={len(text)}], got {group_size!r}")
    for start in range(0, len(text) - group_size + 1, group_size):
        yield euclidean_distances(text[start : start + group_size], motion[start : start + group_size])


def r_precision(text_embeddings, motion_embeddings, group_size: int = 32, top_k: int = 3) -> np.ndarray:
    """Top-1..top_k retrieval accuracy (top_k,) of text -> motion within groups of ``group_size``."""
    hits, count = np.zeros(top_k), 0
    for distances in _paired_groups(text_embeddings, motion_embeddings, group_size):
        # rank of the true motion = number of motions strictly closer than it
        rank = (distances < np.diag(distances)[:, None]).sum(axis=1)
        hits += np.array([(rank < k).sum() for k in range(1, top_k + 1)])
        count += len(distances)
    return hits / count


def matching_score(text_embeddings, motion_embeddings, group_size: int = 32) -> float:
    """MM-Dist: mean text-to-own-motion distance over the complete groups."""
    diagonals = [np.diag(d) for d in _paired_groups(text_embeddings, motion_embeddings, group_size)]
    return float(np.concatenate(diagonals).mean())


def embedding_fid(real_embeddings, generated_embeddings) -> float:
    """Fréchet distance between Gaussian fits of real (N, D) and generated (M, D) embeddings."""
    mu_real, sigma_real = mean_and_covariance(_as_array(real_embeddings, "real_embeddings"))
    mu_gen, sigma_gen = mean_and_covariance(_as_array(generated_embeddings, "generated_embeddings"))
    return frechet_distance(mu_real, sigma_real, mu_gen, sigma_gen)


def diversity(embeddings, num_pairs: int = 300, rng: np.random.Generator | None = None) -> float:
    """Mean distance between ``num_pairs`` pairs from two independent draws without replacement."""
    embeddings = _as_array(embeddings, "embeddings")
    if num_pairs < 1 or num_pairs >= len(embeddings):
        raise ValueError(f"num_pairs must be in [1, N - 1] for N={len(embeddings)} embeddings, got {num_pairs}")
    rng = rng if rng is not None else np.random.default_rng()
    first = rng.choice(len(embeddings), num_pairs, replace=False)
    second = rng.choice(len(embeddings), num_pairs, replace=False)
    return float(np.linalg.norm(embeddings[first] - embeddings[second], axis=1).mean())


def multimodality(embeddings, num_pairs: int = 10, rng: np.random.Generator | None = None) -> float:
    """Mean within-caption distance of embeddings (C captions, R generations each, D)."""
    embeddings = _as_array(embeddings, "embeddings", ndim=3)
    repeats = embeddings.shape[1]
    if num_pairs < 1 or num_pairs >= repeats:
        raise ValueError(f"num_pairs must be in [1, R - 1] for R={repeats} generations per caption, got {num_pairs}")
    rng = rng if rng is not None else np.random.default_rng()
    first = rng.choice(repeats, num_pairs, replace=False)
    second = rng.choice(repeats, num_pairs, replace=False)
    return float(np.linalg.norm(embeddings[:, first] - embeddings[:, second], axis=2).mean())


def mean_and_interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% half-interval ``1.96 * std / sqrt(n)`` (population std, as MLD reports)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(1.96 * values.std() / np.sqrt(len(values)))


@torch.no_grad()
def _embed_split(dataset, order: np.ndarray, generate_fn, evaluator, batch_size: int, generator, progress):
    """Text, real-motion and generated-motion embeddings of ``dataset`` items in ``order``."""
    text, real, generated = [], [], []
    for start in tqdm(range(0, len(order), batch_size), desc="motion metrics", disable=not progress, leave=False):
        batch = collate_motion_text([dataset[int(i)] for i in order[start : start + batch_size]])
        text.append(evaluator.encode_text(batch.captions, batch.tokens).cpu())
        real.append(evaluator.encode_motion(batch.motions, batch.lengths).cpu())
        motions = generate_fn(batch.captions, batch.lengths, generator)
        if motions.dim() != 3 or motions.shape[0] != len(batch) or motions.shape[1] < int(batch.lengths.max()):
            raise ValueError(
                f"generate_fn must return (B={len(batch)}, T >= {int(batch.lengths.max())}, F) motions, "
                f"got {tuple(motions.shape)}"
            )
        generated.append(evaluator.encode_motion(motions, batch.lengths).cpu())
    return torch.cat(text), torch.cat(real), torch.cat(generated)


@torch.no_grad()
def _multimodality_embeddings(dataset, indices, generate_fn, evaluator, repeats: int, generator) -> torch.Tensor:
    """(C, repeats, D) embeddings of ``repeats`` generations for each item's caption and length."""
    per_caption = []
    for index in indices:
        item = collate_motion_text([dataset[int(index)]])
        motions = generate_fn(item.captions * repeats, item.lengths.repeat(repeats), generator)
        per_caption.append(evaluator.encode_motion(motions, item.lengths.repeat(repeats)).cpu())
    return torch.stack(per_caption)


def evaluate_motion(
    generate_fn: GenerateFn,
    dataset: Sequence,
    evaluator: MotionTextEvaluator,
    repeats: int = 20,
    batch_size: int = 32,
    group_size: int = 32,
    top_k: int = 3,
    diversity_pairs: int = 300,
    mm_num_captions: int = 100,
    mm_repeats: int = 30,
    mm_pairs: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, tuple[float, float]]:
    """The full text-to-motion metric table of a generator on a dataset split.

    Args:
        generate_fn: ``generate_fn(captions, lengths (B,), generator) -> (B, T, F)`` raw motion
            features (the same feature space as the dataset's ``"motion"``), T >= max(lengths).
        dataset: indexable items as described in :mod:`ssmgen.eval.motion_batch`.
        evaluator: a :class:`MotionTextEvaluator` (the T2M evaluator for paper numbers).
        mm_num_captions: captions for MultiModality; 0 skips it.

    Returns:
        ``{metric: (mean, 95% half-interval)}`` for ``r_precision_top_1..top_k``, ``fid``,
        ``mm_dist``, ``diversity``, ``multimodality`` and the real-data references
        ``gt_r_precision_top_*``, ``gt_mm_dist``, ``gt_diversity``.
    """
    if getattr(dataset, "normalize", False):
        raise ValueError("the dataset normalises its motions; evaluators take raw features (use normalize=False)")
    num_items = len(dataset)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if num_items <= max(group_size, diversity_pairs):
        raise ValueError(
            f"the dataset has {num_items} items; it needs more than group_size ({group_size}) "
            f"and diversity_pairs ({diversity_pairs})"
        )
    if not 0 <= mm_num_captions <= num_items:
        raise ValueError(f"mm_num_captions must be in [0, {num_items}], got {mm_num_captions}")
    per_repeat: dict[str, list[float]] = {}

    def record(name: str, value: float) -> None:
        per_repeat.setdefault(name, []).append(float(value))

    for repeat in tqdm(range(repeats), desc="repeats", disable=not progress):
        rng = np.random.default_rng([seed, repeat])
        generator = torch.Generator().manual_seed(seed * 1_000_003 + repeat)
        order = rng.permutation(num_items)
        text, real, generated = _embed_split(dataset, order, generate_fn, evaluator, batch_size, generator, progress)
        diversity_seed = int(rng.integers(2**63))  # the same pairs for generated and real motions
        for prefix, motion in (("", generated), ("gt_", real)):
            for k, value in enumerate(r_precision(text, motion, group_size, top_k), start=1):
                record(f"{prefix}r_precision_top_{k}", value)
            record(f"{prefix}mm_dist", matching_score(text, motion, group_size))
            record(f"{prefix}diversity", diversity(motion, diversity_pairs, np.random.default_rng(diversity_seed)))
        record("fid", embedding_fid(real, generated))
        if mm_num_captions:
            chosen = rng.choice(num_items, mm_num_captions, replace=False)
            embeddings = _multimodality_embeddings(dataset, chosen, generate_fn, evaluator, mm_repeats, generator)
            record("multimodality", multimodality(embeddings, mm_pairs, rng))
    return {name: mean_and_interval(values) for name, values in per_repeat.items()}


def format_motion_table(results: dict[str, tuple[float, float]]) -> str:
    """One ``name: mean ± interval`` line per metric."""
    return "\n".join(f"{name:>24}: {mean:.4f} ± {interval:.4f}" for name, (mean, interval) in results.items())
