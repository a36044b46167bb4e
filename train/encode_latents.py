"""``python -m ssmgen.train.encode_latents``: encode an image folder once into a latent cache (fast-DiT).

Training latent models on a cache instead of running the autoencoder every step is how fast-DiT and DiMSUM
train on ImageNet. Each image is ADM-center-cropped to ``--resolution``, encoded by an ``AutoencoderKL`` (a
local folder or a diffusers model id) and stored as ``latent_dist.sample() * scaling_factor`` (``--mode mean``
stores the posterior mean instead). ``--flip`` also stores every image's mirror (DiMSUM encodes both), at
index ``i + N``. The result is the folder described in ``ssmgen.data.images``; it is written to a temporary
folder and renamed when complete, so an interrupted run never leaves a cache that looks finished.

Example::

    python -m ssmgen.train.encode_latents --vae stabilityai/sd-vae-ft-ema --data /data/imagenet/train \\
        --resolution 256 --output /data/imagenet256-sdvae --flip --dtype float16 --device cuda
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from diffusers import AutoencoderKL
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ssmgen.data.images import LABELS_FILE, LATENTS_FILE, META_FILE, ImageFolderDataset

from .checkpointing import write_folder_atomically


@torch.no_grad()
def encode_latents(
    vae: str,
    data: str | Path,
    resolution: int,
    output: str | Path,
    subfolder: str | None = None,
    batch_size: int = 32,
    num_workers: int = 4,
    flip: bool = False,
    mode: Literal["sample", "mean"] = "sample",
    dtype: Literal["float32", "float16"] = "float32",
    seed: int = 0,
    device: str | None = None,
) -> Path:
    """Write the latent cache of the images in ``data`` to ``output``; return ``output``."""
    if mode not in ("sample", "mean"):
        raise ValueError(f"mode must be 'sample' or 'mean', got {mode!r}")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    if resolution < 1 or batch_size < 1:
        raise ValueError(f"resolution and batch_size must be >= 1, got {resolution} and {batch_size}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    autoencoder = AutoencoderKL.from_pretrained(vae, subfolder=subfolder).to(device).eval()
    downsampling = 2 ** (len(autoencoder.config.block_out_channels) - 1)
    if resolution % downsampling:
        raise ValueError(f"resolution {resolution} is not a multiple of the autoencoder's downsampling {downsampling}")
    dataset = ImageFolderDataset(data, resolution, channels=autoencoder.config.in_channels)
    latent_shape = (
        autoencoder.config.latent_channels,
        resolution // downsampling,
        resolution // downsampling,
    )
    count = len(dataset) * (2 if flip else 1)
    scaling, shift = autoencoder.config.scaling_factor, autoencoder.config.shift_factor
    generator = torch.Generator(device).manual_seed(seed)

    def write(folder: Path) -> None:
        latents = np.lib.format.open_memmap(folder / LATENTS_FILE, mode="w+", dtype=dtype, shape=(count, *latent_shape))
        labels = np.full(count, -1, dtype=np.int64)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        start = 0
        for batch in tqdm(loader, desc="encode", unit="batch"):
            images = batch["sample"].to(device)
            views = [(0, images), (len(dataset), images.flip(-1))] if flip else [(0, images)]
            for offset, view in views:
                distribution = autoencoder.encode(view.to(autoencoder.dtype)).latent_dist
                z = distribution.sample(generator) if mode == "sample" else distribution.mean
                z = (z - shift if shift is not None else z) * scaling
                rows = slice(offset + start, offset + start + len(view))
                latents[rows] = z.float().cpu().numpy().astype(dtype)
                if "class_labels" in batch:
                    labels[rows] = batch["class_labels"].numpy()
            start += len(images)
        latents.flush()
        np.save(folder / LABELS_FILE, labels)
        meta = {
            "vae": vae,
            "vae_subfolder": subfolder,
            "scaling_factor": scaling,
            "shift_factor": shift,
            "resolution": resolution,
            "latent_shape": list(latent_shape),
            "count": count,
            "flip": flip,
            "mode": mode,
            "dtype": dtype,
            "seed": seed,
            "class_names": list(dataset.class_names) if dataset.class_names is not None else None,
            "source": str(Path(data).resolve()),
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=1))

    return write_folder_atomically(output, write)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ssmgen.train.encode_latents",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--vae", required=True, help="AutoencoderKL folder or model id")
    parser.add_argument("--subfolder", default=None, help="subfolder of --vae holding the autoencoder (e.g. vae)")
    parser.add_argument("--data", required=True, help="image folder (class subfolders, or flat = unconditional)")
    parser.add_argument("--resolution", type=int, required=True)
    parser.add_argument("--output", required=True, help="folder to write the cache to")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=4)
    parser.add_argument("--flip", action="store_true", help="also encode every image mirrored")
    parser.add_argument("--mode", choices=("sample", "mean"), default="sample")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    try:
        folder = encode_latents(
            args.vae,
            args.data,
            args.resolution,
            args.output,
            subfolder=args.subfolder,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            flip=args.flip,
            mode=args.mode,
            dtype=args.dtype,
            seed=args.seed,
            device=args.device,
        )
    except ValueError as error:
        print(f"ssmgen.train.encode_latents: error: {error}", file=sys.stderr)
        return 2
    print(f"ssmgen.train.encode_latents: wrote {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
