"""Datasets for training and the resumable, sharded order in which the loop reads them.

Each dataset builder returns the dataset (examples are dicts, see ``ssmgen.data.images``) and a
:class:`DataInfo` describing one example, which model builders use to size the model.

The order is :class:`ShardedEpochBatches`: each epoch is a permutation seeded by ``(seed, epoch)``, cut into
global batches of ``batch_size x num_processes``; process ``i`` reads slice ``i`` of each global batch. The
position (epoch, batch) is all that resuming needs, and it is saved in every checkpoint.

Motion datasets make random choices per item (caption, crop length and start). They are wrapped in
:class:`SeededItems`, which the batches address by ``(epoch, index)`` and which draws each item with a generator
seeded by ``(seed, epoch, index)``: the same item of the same epoch is the same crop on any worker, before or
after a resume.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ssmgen.data.digits import DIGITS_CLASS_NAMES, load_digits
from ssmgen.data.images import ImageFolderDataset, LatentCacheDataset
from ssmgen.data.motion import Text2MotionDataset, build_synthetic_dataset, collate_motion_batch, read_split

from .config import DataConfig


@dataclass(frozen=True)
class DataInfo:
    """What one training example looks like."""

    kind: str
    """``image`` (pixels in [-1, 1]), ``latent`` (autoencoder latents) or ``motion`` (normalised features)."""
    sample_shape: tuple[int, ...]
    """Shape of one example's ``sample``, e.g. (C, H, W); motion: (longest crop, features)."""
    class_names: tuple[str, ...] | None = None
    """Names of the classes for class-conditional data; ``None`` for unconditional data."""
    vae: str | None = None
    """Latent data: the autoencoder (path or id) that encoded it; ``vae_subfolder`` inside it."""
    vae_subfolder: str | None = None
    feature_mean: np.ndarray | None = None
    feature_std: np.ndarray | None = None
    """Motion data: the statistics (D,) the features are normalised with (the folder's Mean.npy / Std.npy)."""
    fps: float | None = None
    """Motion data: frames per second."""

    @property
    def channels(self) -> int:
        return self.sample_shape[0]

    @property
    def sample_size(self) -> int:
        return self.sample_shape[-1]

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)


class TensorDictDataset(Dataset):
    """In-memory samples (N, ...) and optional labels (N,) as ``{"sample", "class_labels"}`` examples."""

    def __init__(self, samples: torch.Tensor, labels: torch.Tensor | None = None):
        if labels is not None and len(labels) != len(samples):
            raise ValueError(f"labels has {len(labels)} entries, samples has {len(samples)}")
        self.samples, self.labels = samples, labels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.labels is None:
            return {"sample": self.samples[index]}
        return {"sample": self.samples[index], "class_labels": self.labels[index]}


def build_digits(config: DataConfig) -> tuple[Dataset, DataInfo]:
    images, labels = load_digits(config.resolution)
    return TensorDictDataset(images, labels), DataInfo("image", tuple(images.shape[1:]), DIGITS_CLASS_NAMES)


def build_image_folder(config: DataConfig) -> tuple[Dataset, DataInfo]:
    dataset = ImageFolderDataset(config.path, config.resolution)
    return dataset, DataInfo("image", (3, config.resolution, config.resolution), dataset.class_names)


def build_latents(config: DataConfig) -> tuple[Dataset, DataInfo]:
    dataset = LatentCacheDataset(config.path)
    meta = dataset.meta
    if meta["resolution"] != config.resolution:
        raise ValueError(
            f"data.resolution is {config.resolution} but the latent cache {config.path!r} was encoded at "
            f"{meta['resolution']}; set data.resolution: {meta['resolution']}"
        )
    info = DataInfo("latent", tuple(meta["latent_shape"]), dataset.class_names, meta["vae"], meta.get("vae_subfolder"))
    return dataset, info


MOTION_FPS = {"humanml3d": 20.0, "kit": 12.5, "synthetic_motion": 20.0}


def motion_dataset(config: DataConfig, root: str | Path) -> tuple[Dataset, DataInfo]:
    """MLD's sampling of ``root``'s ``data.split`` (see ``ssmgen.data.motion.dataset``), normalised."""
    fps = MOTION_FPS[config.dataset]
    if not (Path(root) / f"{config.split}.txt").is_file():
        raise ValueError(f"data.split: {str(root)!r} has no {config.split}.txt")
    dataset = Text2MotionDataset(
        root, config.split, min_length=config.min_frames, max_length=config.max_frames, fps=fps, normalize=True
    )
    info = DataInfo(
        "motion",
        (config.max_frames, dataset.feature_dim),
        feature_mean=dataset.mean,
        feature_std=dataset.std,
        fps=fps,
    )
    return dataset, info


def build_motion_folder(config: DataConfig) -> tuple[Dataset, DataInfo]:
    return motion_dataset(config, config.path)


def build_synthetic_motion(config: DataConfig) -> tuple[Dataset, DataInfo]:
    """The built-in synthetic motions, built into ``data.path`` once (seed 0) and reused afterwards."""
    return motion_dataset(config, ensure_synthetic_motions(Path(config.path), config.synthetic_motions))


def ensure_synthetic_motions(folder: Path, num_motions: int) -> Path:
    """``folder`` holding ``num_motions`` synthetic motions: built (into a temporary folder renamed at the end,
    so a crash never leaves half a dataset and concurrent processes agree) unless already there."""
    if not folder.exists():
        temporary = folder.with_name(f".tmp-{folder.name}-{os.getpid()}")
        shutil.rmtree(temporary, ignore_errors=True)
        build_synthetic_dataset(temporary, num_motions, seed=0)
        try:
            os.rename(temporary, folder)
        except OSError:  # another process finished first; its files are identical
            shutil.rmtree(temporary)
    found = len(read_split(folder / "all.txt")) if (folder / "all.txt").is_file() else None
    if found != num_motions:
        raise ValueError(
            f"data.path: {str(folder)!r} holds {found or 'no'} synthetic motions but data.synthetic_motions is "
            f"{num_motions}; choose another data.path or set data.synthetic_motions: {found}"
        )
    return folder


class SeededItems(Dataset):
    """A dataset with random items, addressed by ``(epoch, index)``; each draw uses a generator seeded by
    ``(seed, epoch, index)`` (see the module docstring). ``dataset.draw(index, generator)`` makes the item,
    ``collate`` batches them."""

    def __init__(self, dataset: Any, seed: int, collate: Callable[[list[Any]], Any]):
        self.dataset, self.seed, self.collate = dataset, seed, collate

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        seed = np.random.SeedSequence([self.seed, epoch, index]).generate_state(1, np.uint64)[0]
        return self.dataset.draw(index, torch.Generator().manual_seed(int(seed)))


@dataclass(frozen=True)
class DatasetSpec:
    build: Callable[[DataConfig], tuple[Dataset, DataInfo]]
    needs_path: bool
    kind: str
    """Kind of the examples (``DataInfo.kind``), known before building so configs validate cheaply."""
    builds_folder: bool = False
    """``data.path`` is created by the dataset when missing (built-in data written to disk)."""


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(build_digits, needs_path=False, kind="image"),
    "image_folder": DatasetSpec(build_image_folder, needs_path=True, kind="image"),
    "latents": DatasetSpec(build_latents, needs_path=True, kind="latent"),
    "humanml3d": DatasetSpec(build_motion_folder, needs_path=True, kind="motion"),
    "kit": DatasetSpec(build_motion_folder, needs_path=True, kind="motion"),
    "synthetic_motion": DatasetSpec(build_synthetic_motion, needs_path=True, kind="motion", builds_folder=True),
}


def check_data_config(config: DataConfig) -> DatasetSpec:
    """Fail early on an unknown dataset, a missing folder or impossible sizes; return the dataset's spec."""
    if config.dataset not in DATASETS:
        raise ValueError(f"data.dataset: unknown dataset {config.dataset!r}; allowed: {', '.join(DATASETS)}")
    spec = DATASETS[config.dataset]
    if spec.needs_path:
        if config.path is None:
            raise ValueError(f"data.path is required for data.dataset {config.dataset!r}")
        if not spec.builds_folder and not Path(config.path).is_dir():
            raise ValueError(f"data.path: folder {config.path!r} does not exist")
    for key in ("resolution", "batch_size"):
        if getattr(config, key) < 1:
            raise ValueError(f"data.{key} must be >= 1, got {getattr(config, key)}")
    if spec.kind == "motion":
        check_motion_data_config(config)
    if config.num_workers < 0:
        raise ValueError(f"data.num_workers must be >= 0, got {config.num_workers}")
    if config.random_flip and spec.kind != "image":
        raise ValueError(f"data.random_flip works on pixels only; data.dataset {config.dataset!r} holds {spec.kind}s")
    return spec


def check_motion_data_config(config: DataConfig) -> None:
    """Frame counts the motion datasets accept (multiples of the evaluator's 4-frame unit)."""
    if config.min_frames < 8 or config.max_frames < config.min_frames or config.max_frames % 4:
        raise ValueError(
            "data.min_frames / data.max_frames: need 8 <= min_frames <= max_frames with max_frames a multiple of "
            f"4, got {config.min_frames} / {config.max_frames}"
        )
    if config.synthetic_motions < 3:
        raise ValueError(f"data.synthetic_motions must be >= 3, got {config.synthetic_motions}")


def build_dataset(config: DataConfig, seed: int = 0) -> tuple[Dataset, DataInfo]:
    """The dataset named by ``config.dataset`` and the description of its examples; datasets with random items
    come wrapped in :class:`SeededItems` with ``seed``."""
    dataset, info = check_data_config(config).build(config)
    if info.kind == "motion":
        dataset = SeededItems(dataset, seed, collate_motion_batch)
    return dataset, info


@dataclass
class DataPosition:
    """Where the loop is in the data: the next batch to read is batch ``batch`` of epoch ``epoch``."""

    epoch: int = 0
    batch: int = 0

    def advance(self, batches_per_epoch: int) -> None:
        self.batch += 1
        if self.batch == batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0


class ShardedEpochBatches:
    """Endless lists of example indices for one process, starting at ``start`` (see the module docstring)."""

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        num_processes: int,
        process_index: int,
        seed: int,
        start: DataPosition,
        keyed: bool = False,
    ):
        self.global_batch = batch_size * num_processes
        self.batches_per_epoch = dataset_size // self.global_batch
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"data.batch_size: the global batch ({batch_size} x {num_processes} processes) is larger "
                "than "
                f"the dataset ({dataset_size} examples)"
            )
        self.dataset_size, self.batch_size, self.process_index = dataset_size, batch_size, process_index
        self.seed, self.start = seed, DataPosition(start.epoch, start.batch)
        self.keyed = keyed
        """Yield ``(epoch, index)`` keys (for :class:`SeededItems`) instead of plain indices."""

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The permutation of epoch ``epoch``: identical on every process, different every epoch."""
        return np.random.default_rng([self.seed, epoch]).permutation(self.dataset_size)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, batch = self.start.epoch, self.start.batch
        while True:
            order = self.epoch_order(epoch)
            for b in range(batch, self.batches_per_epoch):
                first = b * self.global_batch + self.process_index * self.batch_size
                indices = order[first : first + self.batch_size].tolist()
                yield [(epoch, i) for i in indices] if self.keyed else indices
            epoch, batch = epoch + 1, 0


def make_dataloader(dataset: Dataset, batches: ShardedEpochBatches, num_workers: int, pin_memory: bool) -> DataLoader:
    """A DataLoader over ``batches``; its own seeded generator keeps it off the global RNG (exact resume)."""
    return DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=dataset.collate if isinstance(dataset, SeededItems) else None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(batches.seed),
        persistent_workers=num_workers > 0,
    )
