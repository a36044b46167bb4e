"""Image training data: image folders with ADM's center crop, the random flip, and latent caches.

Examples are dicts: ``{"sample": (C, H, W) float32, "class_labels": int64 scalar}`` (no ``class_labels`` for
unconditional data), so the default collate gives the batches the training loop expects.

A latent cache (written once by ``python -m ssmgen.train.encode_latents``, the fast-DiT approach) is a
folder::

    latents.npy   (N, C, h, w) float16/float32, already multiplied by the autoencoder's scaling factor
    labels.npy    (N,) int64 (-1 everywhere for unconditional data)
    meta.json     autoencoder id/path, scaling factor, resolution, class names, flips, count
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LATENTS_FILE = "latents.npy"
LABELS_FILE = "labels.npy"
META_FILE = "meta.json"


def center_crop_arr(image: Image.Image, image_size: int) -> Image.Image:
    """ADM's center crop (guided-diffusion ``image_datasets.py``, also used by DiT and DiMSUM).

    Halve the image with a box filter while its short side is at least ``2 * image_size``, resize with bicubic
    so the short side equals ``image_size``, then crop the central ``image_size`` square.
    """
    while min(image.size) >= 2 * image_size:
        image = image.resize(tuple(side // 2 for side in image.size), resample=Image.BOX)
    scale = image_size / min(image.size)
    image = image.resize(tuple(round(side * scale) for side in image.size), resample=Image.BICUBIC)
    width, height = image.size
    left, top = (width - image_size) // 2, (height - image_size) // 2
    return image.crop((left, top, left + image_size, top + image_size))


def random_flip(images: torch.Tensor) -> torch.Tensor:
    """Flip each image of (B, C, H, W) left-right with probability 1/2, drawing from the global torch RNG.

    Flipping the batch in the training process (not in data-loader workers) keeps the draw in the RNG state
    that checkpoints save, so a resumed run flips exactly the same images.
    """
    flip = torch.rand(images.shape[0], device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def image_to_tensor(image: Image.Image, channels: int) -> torch.Tensor:
    """PIL image -> (channels, H, W) float32 in [-1, 1]."""
    image = image.convert("L" if channels == 1 else "RGB")
    array = np.asarray(image, dtype=np.float32).reshape(image.size[1], image.size[0], channels)
    return torch.from_numpy(array).permute(2, 0, 1).div(127.5).sub(1.0)


class ImageFolderDataset(Dataset):
    """Images under ``root``, center-cropped to ``resolution``.

    ``root/<class name>/*.png`` gives class-conditional data (labels follow the sorted class names, as in
    torchvision's ``ImageFolder``); images directly in ``root`` give unconditional data.
    """

    def __init__(self, root: str | Path, resolution: int, channels: int = 3):
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"data.path: image folder {str(root)!r} does not exist")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
        self.resolution, self.channels = resolution, channels
        flat = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
        if flat:
            self.class_names: tuple[str, ...] | None = None
            self.items = [(path, -1) for path in flat]
        else:
            self.class_names = tuple(d.name for d in class_dirs)
            self.items = [
                (path, label)
                for label, folder in enumerate(class_dirs)
                for path in sorted(folder.rglob("*"))
                if path.suffix.lower() in IMAGE_EXTENSIONS
            ]
        if not self.items:
            raise ValueError(
                f"data.path: no images ({', '.join(IMAGE_EXTENSIONS)}) in {str(root)!r} or its class subfolders"
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path, label = self.items[index]
        with Image.open(path) as image:
            sample = image_to_tensor(center_crop_arr(image.convert("RGB"), self.resolution), self.channels)
        if self.class_names is None:
            return {"sample": sample}
        return {"sample": sample, "class_labels": torch.tensor(label, dtype=torch.long)}


def read_latent_cache_meta(root: str | Path) -> dict[str, Any]:
    """The ``meta.json`` of a latent cache, with a clear error when the folder is not one."""
    root = Path(root)
    missing = [name for name in (LATENTS_FILE, LABELS_FILE, META_FILE) if not (root / name).is_file()]
    if missing:
        raise ValueError(
            f"data.path: {str(root)!r} is not a latent cache (missing {', '.join(missing)}); "
            "write one with `python -m ssmgen.train.encode_latents`"
        )
    return json.loads((root / META_FILE).read_text())


class LatentCacheDataset(Dataset):
    """Pre-encoded latents from a cache folder, memory-mapped (nothing is unpickled)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.meta = read_latent_cache_meta(self.root)
        self.labels = np.load(self.root / LABELS_FILE, allow_pickle=False)
        self.latents: np.ndarray | None = None  # opened lazily so each data-loader worker maps its own view
        self.class_names: tuple[str, ...] | None = (
            tuple(self.meta["class_names"]) if self.meta.get("class_names") else None
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.latents is None:
            self.latents = np.load(self.root / LATENTS_FILE, mmap_mode="r", allow_pickle=False)
        sample = torch.from_numpy(np.array(self.latents[index], dtype=np.float32))
        if self.class_names is None:
            return {"sample": sample}
        return {"sample": sample, "class_labels": torch.tensor(int(self.labels[index]), dtype=torch.long)}
