"""Image FID, Inception Score and precision/recall: the public entry points.

Typical use (see also ``benchmarks/fid_images.py``, which runs this under ``accelerate launch``)::

    extractor = load_extractor("inception", inception_weights="pt_inception-2015-12-05-6726825d.pth")
    reference = reference_statistics("imagenet256_ref/", extractor)                 # or a stats .npz
    generated = extract_generated_features(pipeline_sampler(pipe, num_inference_steps=250),
                                           50_000, extractor, batch_size=64, accelerator=accelerator)
    print(image_metrics(generated, reference, feature_protocol(extractor, "round")))

Command line (on GPUs, ``accelerate launch -m ssmgen.eval.fid ...`` shares the work between processes)::

    python -m ssmgen.eval.fid stats IMAGES_OR_ADM_BATCH ref.npz --inception-weights FILE
    python -m ssmgen.eval.fid compare a.npz b.npz
"""

from __future__ import annotations

import argparse
import inspect
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ssmgen.eval.digits_classifier import DigitsFeatureExtractor
from ssmgen.eval.extract import SampleFn, extract_image_features, feature_protocol
from ssmgen.eval.image_metrics import inception_score, precision_recall
from ssmgen.eval.inception import InceptionFeatureExtractor
from ssmgen.eval.stats import STATS_FORMAT, FeatureProtocol, FIDStatistics, load_adm_batch, load_adm_reference_stats
from ssmgen.runtime import multi_process_without_gpu

IMAGE_EXTENSIONS = {".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"}
CLASS_COUNT_CONFIG_KEYS = ("num_classes", "num_class_embeds", "num_embeds_ada_norm")


class ImageFolder(Sequence):
    """Images under a folder (recursively, sorted by path) as uint8 tensors (C, H, W).

    Grey-level files give one channel, everything else is converted to RGB, exactly decoded
    (``PIL`` + ``numpy``, no resampling), as pytorch-fid and torch-fidelity read them.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"root must be a folder of images, got {root}")
        self.paths = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.paths:
            raise ValueError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {root}")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as image:
            array = np.asarray(image if image.mode == "L" else image.convert("RGB"))
        array = array[:, :, None] if array.ndim == 2 else array
        return torch.from_numpy(array.copy()).permute(2, 0, 1)


def load_extractor(
    kind: str = "inception",
    inception_weights: str | os.PathLike | None = None,
    resize: str = "tf",
    digits_classifier: str | os.PathLike | None = None,
) -> nn.Module:
    """The Inception extractor (weights from a path or ``$SSMGEN_INCEPTION_WEIGHTS``) or the digits one."""
    if kind == "inception":
        return InceptionFeatureExtractor(inception_weights, resize=resize)
    if kind == "digits":
        if digits_classifier is None:
            raise ValueError("kind='digits' needs digits_classifier, the folder of a trained digits classifier")
        return DigitsFeatureExtractor.from_pretrained(digits_classifier)
    raise ValueError(f"kind must be 'inception' or 'digits', got {kind!r}")


def _uses_adm_precomputed_stats(extractor: nn.Module) -> bool:
    """ADM's precomputed mu/sigma are TF-graph pool3 statistics: the Inception 2048 / "tf" protocol."""
    return (
        isinstance(extractor, InceptionFeatureExtractor) and extractor.feature_dim == 2048 and extractor.resize == "tf"
    )


def reference_statistics(
    source: str | os.PathLike | torch.Tensor,
    extractor: nn.Module,
    batch_size: int = 50,
    keep_features: int = 10_000,
    accelerator=None,
    progress: bool = True,
) -> FIDStatistics:
    """Reference statistics from an ssmgen stats file, an ADM batch, an image folder or uint8 images.

    * ``.npz`` written by :meth:`FIDStatistics.save`: loaded; its protocol must match ``extractor``.
    * ADM reference batch (``arr_0``): features of its images; when it also holds ``mu``/``sigma``
      and the extractor is Inception-2048 with ``resize="tf"``, those whole-dataset statistics are
      used for FID (as ADM's evaluator does) and the images only for precision/recall.
    * image folder or a (N, C, H, W) uint8 tensor: features of all images.

    The first ``keep_features`` features are kept for precision/recall.
    """
    protocol = feature_protocol(extractor, "uint8")
    if isinstance(source, torch.Tensor):
        images: Sequence = source
    elif Path(source).is_dir():
        images = ImageFolder(source)
    elif Path(source).suffix == ".npz":
        with np.load(source, allow_pickle=False) as data:
            keys = set(data.files)
            is_ssmgen = "format" in keys and str(data["format"]) == STATS_FORMAT
        if is_ssmgen:
            stats = FIDStatistics.load(source)
            stats.protocol.check_compatible(protocol)
            return stats
        if "arr_0" not in keys:
            raise ValueError(
                f"{source} is neither an ssmgen stats file nor an ADM batch (keys {sorted(keys)}); import "
                "pytorch-fid stats with ssmgen.eval.stats.load_pytorch_fid_stats(path, protocol)"
            )
        images = torch.from_numpy(load_adm_batch(source)).permute(0, 3, 1, 2)
        if {"mu", "sigma"} <= keys and _uses_adm_precomputed_stats(extractor):
            stats = load_adm_reference_stats(source, protocol)
            kept = images[:keep_features]
            features = extract_image_features(kept, extractor, batch_size, accelerator, progress)["features"]
            stats.features = features.astype(np.float32)
            return stats
    else:
        raise ValueError(f"source must be a stats/ADM .npz, an image folder or a uint8 tensor, got {source!r}")
    features = extract_image_features(images, extractor, batch_size, accelerator, progress)["features"]
    return FIDStatistics.from_features(features, protocol, keep_features=keep_features)


def image_metrics(
    generated: dict[str, np.ndarray],
    reference: FIDStatistics,
    protocol: FeatureProtocol,
    inception_score_splits: int = 10,
    neighbourhood: int = 3,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """FID, Inception Score (if ``generated`` has logits) and precision/recall (if ``reference`` kept features).

    ``generated`` is the output of :func:`ssmgen.eval.extract.extract_generated_features`;
    ``protocol`` is how it was computed (:func:`ssmgen.eval.extract.feature_protocol`); ``device``
    is where precision/recall distances are computed.
    """
    generated_stats = FIDStatistics.from_features(generated["features"], protocol)
    metrics = {"fid": generated_stats.frechet_distance(reference), "num_samples": len(generated["features"])}
    if "logits" in generated:
        splits = min(inception_score_splits, len(generated["logits"]))
        metrics["inception_score"], metrics["inception_score_std"] = inception_score(generated["logits"], splits)
    if reference.features is not None:
        metrics["precision"], metrics["recall"] = precision_recall(
            reference.features, generated["features"], k=neighbourhood, device=device
        )
    return metrics


def infer_num_classes(pipe) -> int:
    """Number of classes of a class-conditional pipeline, read from its components' configs."""
    for component in pipe.components.values():
        config = getattr(component, "config", None)
        for key in CLASS_COUNT_CONFIG_KEYS:
            value = config.get(key) if isinstance(config, dict) else None
            if isinstance(value, int) and value > 0:
                return value
    raise ValueError(f"cannot tell how many classes {type(pipe).__name__} has; pass num_classes")


def pipeline_sampler(
    pipe,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    num_classes: int | None = None,
    **call_kwargs,
) -> SampleFn:
    """Wrap a ``DiffusionPipeline`` as a ``sample_fn(indices, seeds) -> (B, C, H, W)`` in [0, 1].

    Class-conditional pipelines (``__call__`` takes ``class_labels``, the DiTPipeline convention)
    get the balanced labels ``index % num_classes``; unconditional ones get ``batch_size``. Each
    sample has its own CPU ``torch.Generator`` seeded with its seed, so a sample does not depend on
    its batch or process (nor on the device that draws the initial noise).
    """
    parameters = inspect.signature(pipe.__call__).parameters
    conditional = "class_labels" in parameters
    if not conditional and "batch_size" not in parameters:
        raise ValueError(f"{type(pipe).__name__}.__call__ takes neither class_labels nor batch_size")
    if guidance_scale is not None and "guidance_scale" not in parameters:
        raise ValueError(f"{type(pipe).__name__} has no guidance_scale; leave guidance_scale unset")
    if conditional and num_classes is None:
        num_classes = infer_num_classes(pipe)
    fixed = dict(call_kwargs, output_type="np")
    if num_inference_steps is not None:
        fixed["num_inference_steps"] = num_inference_steps
    if guidance_scale is not None:
        fixed["guidance_scale"] = guidance_scale

    def sample(indices: list[int], seeds: list[int]) -> torch.Tensor:
        generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        if conditional:
            batch = dict(class_labels=[index % num_classes for index in indices])
        else:
            batch = dict(batch_size=len(indices))
        images = pipe(generator=generators, **batch, **fixed).images  # (B, H, W, C) float in [0, 1]
        return torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2)

    return sample


def main(argv: list[str] | None = None) -> None:
    from accelerate import Accelerator

    parser = argparse.ArgumentParser(
        prog="ssmgen fid",
        description="FID statistics files (also python -m ssmgen.eval.fid); a pipeline's FID: benchmarks/fid_images.py",
        epilog=(
            "examples:\n"
            "  ssmgen fid stats /data/imagenet256_val ref.npz --inception-weights pt_inception-2015-12-05.pth\n"
            "  ssmgen fid stats VIRTUAL_imagenet256_labeled.npz ref.npz\n"
            "  ssmgen fid compare ref.npz generated.npz"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    stats = commands.add_parser("stats", help="statistics of an image folder or ADM batch -> ssmgen .npz")
    stats.add_argument("source", help="image folder or ADM batch (.npz with arr_0)")
    stats.add_argument("out", help="stats file to write")
    stats.add_argument("--extractor", choices=("inception", "digits"), default="inception")
    stats.add_argument("--inception-weights", default=None, help="defaults to $SSMGEN_INCEPTION_WEIGHTS")
    stats.add_argument("--resize", choices=("tf", "pytorch-fid"), default="tf")
    stats.add_argument("--digits-classifier", default=None)
    stats.add_argument("--batch-size", type=int, default=50)
    stats.add_argument("--keep-features", type=int, default=10_000, help="raw features kept for precision/recall")
    compare = commands.add_parser("compare", help="FID between two ssmgen stats files")
    compare.add_argument("first")
    compare.add_argument("second")
    args = parser.parse_args(argv)

    if args.command == "compare":
        print(f"FID {FIDStatistics.load(args.first).frechet_distance(FIDStatistics.load(args.second)):.6f}")
        return
    accelerator = Accelerator(cpu=multi_process_without_gpu())  # gloo when launched on CPUs only
    extractor = load_extractor(args.extractor, args.inception_weights, args.resize, args.digits_classifier)
    extractor = extractor.to(accelerator.device)
    result = reference_statistics(args.source, extractor, args.batch_size, args.keep_features, accelerator)
    if accelerator.is_main_process:
        result.save(args.out)
        print(f"{result.num_samples} images, protocol {result.protocol} -> {args.out}")


if __name__ == "__main__":
    main()
