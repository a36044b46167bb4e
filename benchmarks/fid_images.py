"""FID-N (plus IS, precision, recall) of a saved diffusion pipeline against reference statistics.

Works with any saved ``DiffusionPipeline`` folder (ssmgen's or diffusers'), on one CPU or many GPUs::

    accelerate launch benchmarks/fid_images.py --pipeline runs/dit-b2 \\
        --reference VIRTUAL_imagenet256_labeled.npz --inception-weights pt_inception-2015-12-05-6726825d.pth \\
        --num-samples 50000 --steps 250 --guidance-scale 1.5 --out results/fid.jsonl

    python benchmarks/fid_images.py --pipeline runs/ddpm-digits --extractor digits \\
        --digits-classifier runs/digits-classifier --reference digits --num-samples 2000 --steps 100

On CPUs only, ``accelerate launch --multi_gpu --num_processes N`` (or ``torchrun``) runs N gloo processes.
``--reference`` is an ssmgen stats file, an ADM reference batch (``arr_0``), an image folder, or
``digits`` (the built-in digits, with ``--extractor digits``). Samples get seeds ``seed + index``, so
the result does not depend on the number of processes. The main process appends one JSON row
(model, steps, sampler, cfg, N, FID, IS, precision, recall, time) to ``--out`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import diffusers
from accelerate import Accelerator

from ssmgen.eval.digits_classifier import digits_reference_images
from ssmgen.eval.extract import extract_generated_features, feature_protocol
from ssmgen.eval.fid import image_metrics, load_extractor, pipeline_sampler, reference_statistics
from ssmgen.runtime import multi_process_without_gpu


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", required=True, help="saved DiffusionPipeline folder")
    parser.add_argument("--reference", required=True, help="stats .npz, ADM batch .npz, image folder, or 'digits'")
    parser.add_argument("--num-samples", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=64, help="samples per process and step")
    parser.add_argument("--steps", type=int, default=None, help="num_inference_steps (pipeline default if unset)")
    parser.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance scale")
    parser.add_argument("--scheduler", default=None, help="swap in a diffusers scheduler class, e.g. DDIMScheduler")
    parser.add_argument("--num-classes", type=int, default=None, help="for class-conditional pipelines")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extractor", choices=("inception", "digits"), default="inception")
    parser.add_argument("--inception-weights", default=None, help="defaults to $SSMGEN_INCEPTION_WEIGHTS")
    parser.add_argument("--resize", choices=("tf", "pytorch-fid"), default="tf")
    parser.add_argument("--digits-classifier", default=None, help="folder written by ssmgen.eval.digits_classifier")
    parser.add_argument("--quantization", choices=("round", "truncate"), default="round")
    parser.add_argument("--save-reference-stats", default=None, help="write the reference statistics here")
    parser.add_argument("--model-name", default=None, help="name in the JSON row (default: the pipeline folder)")
    parser.add_argument("--out", default="results/fid_images.jsonl")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.num_samples < 2:
        parser.error("--num-samples must be at least 2")
    if args.extractor == "digits" and args.digits_classifier is None:
        parser.error("--extractor digits needs --digits-classifier")
    if args.reference == "digits" and args.extractor != "digits":
        parser.error("--reference digits needs --extractor digits")
    return args


def load_pipeline(path: str):
    """``DiffusionPipeline.from_pretrained``, or the ssmgen pipeline class named in model_index.json."""
    class_name = json.loads((Path(path) / "model_index.json").read_text())["_class_name"]
    if hasattr(diffusers, class_name):
        return diffusers.DiffusionPipeline.from_pretrained(path)
    import ssmgen.pipelines

    if not hasattr(ssmgen.pipelines, class_name):
        raise ValueError(f"{path}: pipeline class {class_name} is in neither diffusers nor ssmgen.pipelines")
    return getattr(ssmgen.pipelines, class_name).from_pretrained(path)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the JSON row on the main process and ``{}`` on the others."""
    args = parse_args(argv)
    accelerator = Accelerator(cpu=multi_process_without_gpu())  # gloo when launched on CPUs only
    progress = not args.no_progress
    extractor = load_extractor(args.extractor, args.inception_weights, args.resize, args.digits_classifier)
    extractor = extractor.to(accelerator.device)

    if args.reference == "digits":
        source = digits_reference_images(extractor.classifier.config.resolution)[0]
    else:
        source = args.reference
    reference = reference_statistics(source, extractor, accelerator=accelerator, progress=progress)
    if args.save_reference_stats and accelerator.is_main_process:
        reference.save(args.save_reference_stats)

    pipe = load_pipeline(args.pipeline).to(accelerator.device)
    if args.scheduler is not None:
        pipe.scheduler = getattr(diffusers, args.scheduler).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    sampler = pipeline_sampler(pipe, args.steps, args.guidance_scale, args.num_classes)

    start = time.perf_counter()
    generated = extract_generated_features(
        sampler,
        args.num_samples,
        extractor,
        batch_size=args.batch_size,
        seed=args.seed,
        quantization=args.quantization,
        accelerator=accelerator,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    if not accelerator.is_main_process:  # every process holds all features; one computes the metrics
        return {}
    protocol = feature_protocol(extractor, args.quantization)
    metrics = image_metrics(generated, reference, protocol, device=accelerator.device)
    row = dict(
        model=args.model_name or Path(args.pipeline).name,
        pipeline=type(pipe).__name__,
        steps=args.steps,
        sampler=type(pipe.scheduler).__name__,
        cfg=args.guidance_scale,
        num_samples=args.num_samples,
        fid=metrics["fid"],
        inception_score=metrics.get("inception_score"),
        precision=metrics.get("precision"),
        recall=metrics.get("recall"),
        time_s=seconds,
        samples_per_s=args.num_samples / seconds,
        num_processes=accelerator.num_processes,
        seed=args.seed,
        reference=args.reference,
        extractor=protocol.extractor,
        resize=protocol.resize,
        quantization=protocol.quantization,
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=2))
    return row


if __name__ == "__main__":
    main()
