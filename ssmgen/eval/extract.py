"""Batched, distributed feature extraction with one seed per sample.

Any ``torch.nn.Module`` can be the feature extractor: it takes uint8 images (B, C, H, W) and returns
features (B, D), or a dict with ``"features"`` (B, D) and optionally ``"logits"`` (B, K) for the
Inception Score. Extractors that set ``extractor_id``, ``weights_sha256`` and ``resize`` attributes
(the Inception and digits extractors do) describe their own protocol; for any other module the id is
its class name and the sha256 is computed from its state dict.

Distribution: with an ``accelerate.Accelerator`` of W processes, process r handles the global
sample indices r, r + W, r + 2W, ... Sample i is always drawn with seed ``seed + i`` and features
are all-gathered, put back in index order and truncated to N, so the result does not depend on the
number of processes or the batch size (up to floating-point differences between batch sizes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ssmgen.eval.assets import weights_fingerprint
from ssmgen.eval.stats import FeatureProtocol

SampleFn = Callable[[list[int], list[int]], torch.Tensor]


def quantize_images(images: torch.Tensor, mode: str = "round") -> torch.Tensor:
    """Float images in [0, 1] -> uint8: ``"round"`` = round(255 x), ``"truncate"`` = floor(255 x)."""
    if not torch.is_floating_point(images):
        raise ValueError(f"images must be a float tensor in [0, 1], got {images.dtype}")
    low, high = images.min().item(), images.max().item()
    if low < 0.0 or high > 1.0:
        raise ValueError(f"images must lie in [0, 1] before quantisation, got values in [{low:.4g}, {high:.4g}]")
    scaled = images * 255
    if mode == "round":
        return scaled.round().to(torch.uint8)
    if mode == "truncate":
        return scaled.floor().to(torch.uint8)
    raise ValueError(f"mode must be 'round' or 'truncate', got {mode!r}")


def feature_protocol(extractor: nn.Module, quantization: str) -> FeatureProtocol:
    """The :class:`FeatureProtocol` of ``extractor`` applied to images quantised with ``quantization``."""
    extractor_id = getattr(extractor, "extractor_id", type(extractor).__name__)
    weights_sha256 = getattr(extractor, "weights_sha256", None) or weights_fingerprint(extractor.state_dict())
    resize = getattr(extractor, "resize", "none")
    return FeatureProtocol(extractor_id, weights_sha256, resize, quantization)


def run_extractor(extractor: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Apply ``extractor`` to uint8 images (B, C, H, W); always returns a dict with ``"features"``."""
    if images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}; use quantize_images first")
    parameter = next(extractor.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    with torch.no_grad():
        output = extractor(images.to(device))
    if isinstance(output, torch.Tensor):
        output = {"features": output}
    if "features" not in output:
        raise ValueError(f"the extractor must return a tensor or a dict with 'features', got keys {list(output)}")
    for name, value in output.items():
        if value.dim() != 2 or value.shape[0] != images.shape[0]:
            raise ValueError(
                f"extractor output {name!r} must have shape (B={images.shape[0]}, D), got {tuple(value.shape)}"
            )
    return output


def distributed_map(
    num_items: int,
    batch_size: int,
    compute: Callable[[list[int]], dict[str, torch.Tensor]],
    accelerator=None,
    description: str = "features",
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Run ``compute(indices) -> {name: (len(indices), D)}`` over all indices, split across processes.

    Returns ``{name: (num_items, D) float64}`` in index order on every process.
    """
    if not isinstance(num_items, int) or num_items < 1:
        raise ValueError(f"num_items must be a positive integer, got {num_items!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    world = accelerator.num_processes if accelerator is not None else 1
    rank = accelerator.process_index if accelerator is not None else 0
    if num_items < world:
        raise ValueError(f"num_items ({num_items}) must be at least the number of processes ({world})")
    slots = math.ceil(num_items / world)  # every process fills this many rows so the gather is even
    local_indices = list(range(rank, num_items, world))
    show = progress and (accelerator is None or accelerator.is_local_main_process)
    parts: dict[str, list[torch.Tensor]] = {}
    for start in tqdm(range(0, len(local_indices), batch_size), desc=description, disable=not show):
        for name, value in compute(local_indices[start : start + batch_size]).items():
            parts.setdefault(name, []).append(value.detach().float().cpu())
    results = {}
    for name, chunks in parts.items():
        local = torch.cat(chunks)
        if world > 1:
            padded = torch.zeros(slots, local.shape[1], dtype=local.dtype)
            padded[: len(local)] = local
            gathered = accelerator.gather(padded.to(accelerator.device)).cpu()  # (world * slots, D)
            local = gathered.view(world, slots, -1).transpose(0, 1).reshape(world * slots, -1)
        results[name] = local[:num_items].double().numpy()
    return results


def extract_image_features(
    images: Sequence[torch.Tensor] | torch.Tensor,
    extractor: nn.Module,
    batch_size: int = 50,
    accelerator=None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Features of uint8 images: a (N, C, H, W) tensor or a sequence of (C, H, W) tensors of one size."""

    def compute(indices: list[int]) -> dict[str, torch.Tensor]:
        batch = [images[i] for i in indices]
        shapes = {tuple(image.shape) for image in batch}
        if len(shapes) > 1:
            raise ValueError(f"images in a batch must share one shape, got {sorted(shapes)}")
        return run_extractor(extractor, torch.stack(batch))

    return distributed_map(len(images), batch_size, compute, accelerator, "reference features", progress)


def extract_generated_features(
    sample_fn: SampleFn,
    num_samples: int,
    extractor: nn.Module,
    batch_size: int = 50,
    seed: int = 0,
    quantization: str = "round",
    accelerator=None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Generate ``num_samples`` images and extract their features.

    ``sample_fn(indices, seeds)`` returns float images (B, C, H, W) in [0, 1] for global sample
    indices, drawing sample ``indices[j]`` with seed ``seeds[j] = seed + indices[j]``; they are
    quantised with ``quantization`` and fed to ``extractor``.
    """

    def compute(indices: list[int]) -> dict[str, torch.Tensor]:
        images = sample_fn(indices, [seed + i for i in indices])
        if images.dim() != 4 or images.shape[0] != len(indices):
            raise ValueError(f"sample_fn must return (B={len(indices)}, C, H, W) images, got {tuple(images.shape)}")
        return run_extractor(extractor, quantize_images(images, quantization))

    return distributed_map(num_samples, batch_size, compute, accelerator, "generated features", progress)
