"""Datasets for training and the resumable, sharded order in which the loop reads them.

Each dataset builder returns the dataset (examples are dicts, see ``ssmgen.data.images``) and a
:class:`DataInfo` describing one example, which model builders use to size the model.

The order is :class:`ShardedEpochBatches`: each epoch is a permutation seeded by ``(seed, epoch)``, cut into
global batches of ``batch_size x num_processes``; process ``i`` reads slice ``i`` of each global batch. The
position (epoch, batch) is all that resuming needs, and it is saved in every checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ssmgen.data.digits import DIGITS_CLASS_NAMES, load_digits
from ssmgen.data.images import ImageFolderDataset, LatentCacheDataset

from .config import DataConfig


@dataclass(frozen=True)
class DataInfo:
    """What one training example looks like."""

    kind: str
    """``image`` (pixels in [-1, 1]) or ``latent`` (autoencoder latents)."""
    sample_shape: tuple[int, ...]
    """Shape of one example's ``sample``, e.g. (C, H, W)."""
    class_names: tuple[str, ...] | None = None
    """Names of the classes for class-conditional data; ``None`` for unconditional data."""
    vae: str | None = None
    """Latent data: the autoencoder (path or id) that encoded it; ``vae_subfolder`` inside it."""
    vae_subfolder: str | None = None

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


@dataclass(frozen=True)
class DatasetSpec:
    build: Callable[[DataConfig], tuple[Dataset, DataInfo]]
    needs_path: bool
    kind: str
    """Kind of the examples (``DataInfo.kind``), known before building so configs validate cheaply."""


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(build_digits, needs_path=False, kind="image"),
    "image_folder": DatasetSpec(build_image_folder, needs_path=True, kind="image"),
    "latents": DatasetSpec(build_latents, needs_path=True, kind="latent"),
}


def check_data_config(config: DataConfig) -> DatasetSpec:
    """Fail early on an unknown dataset, a missing folder or impossible sizes; return the dataset's spec."""
    if config.dataset not in DATASETS:
        raise ValueError(f"data.dataset: unknown dataset {config.dataset!r}; allowed: {', '.join(DATASETS)}")
    spec = DATASETS[config.dataset]
    if spec.needs_path:
        if config.path is None:
            raise ValueError(f"data.path is required for data.dataset {config.dataset!r}")
        if not Path(config.path).is_dir():
            raise ValueError(f"data.path: folder {config.path!r} does not exist")
    for key in ("resolution", "batch_size"):
        if getattr(config, key) < 1:
            raise ValueError(f"data.{key} must be >= 1, got {getattr(config, key)}")
    if config.num_workers < 0:
        raise ValueError(f"data.num_workers must be >= 0, got {config.num_workers}")
    if config.random_flip and spec.kind != "image":
        raise ValueError(f"data.random_flip works on pixels only; data.dataset {config.dataset!r} holds {spec.kind}s")
    return spec


def build_dataset(config: DataConfig) -> tuple[Dataset, DataInfo]:
    """The dataset named by ``config.dataset`` and the description of its examples."""
    return check_data_config(config).build(config)


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

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The permutation of epoch ``epoch``: identical on every process, different every epoch."""
        return np.random.default_rng([self.seed, epoch]).permutation(self.dataset_size)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, batch = self.start.epoch, self.start.batch
        while True:
            order = self.epoch_order(epoch)
            for b in range(batch, self.batches_per_epoch):
                first = b * self.global_batch + self.process_index * self.batch_size
                yield order[first : first + self.batch_size].tolist()
            epoch, batch = epoch + 1, 0


def make_dataloader(dataset: Dataset, batches: ShardedEpochBatches, num_workers: int, pin_memory: bool) -> DataLoader:
    """A DataLoader over ``batches``; its own seeded generator keeps it off the global RNG (exact resume)."""
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(batches.seed),
        persistent_workers=num_workers > 0,
    )
