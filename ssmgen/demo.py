"""``ssmgen demo``: the whole suite end to end on data that ships with the install.

Images (default): train a small class-conditional LaMamba-Diff (``--model dimsum``: DiMSUM) on
scikit-learn's digits through the real training loop, sample every class with the exported
pipeline, and measure the samples with a digits classifier trained here: digits-FID (its
penultimate features) and the accuracy of the class each sample was asked for. Writes the
pipeline folder, a grid PNG and ``summary.json``.

Motion (``--task motion``): train the motion VAE and a small Motion Mamba on the built-in
synthetic motions, generate motions for a handful of prompts (animations and .npy files), and
report the motion metrics with the native text-motion evaluator.

Re-running with the same ``--out`` reuses what is done: the classifier or evaluator, a finished
training run (an interrupted one resumes from its last checkpoint), and the samples.
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch

IMAGE_MODELS = {"lamamba": "digits_lamamba_diff.yaml", "dimsum": "digits_dimsum.yaml"}


def _config_path(name: str) -> Path:
    """A training config shipped with ssmgen.train."""
    import ssmgen.train

    path = Path(ssmgen.train.__file__).resolve().parent / "configs" / name
    if not path.is_file():
        raise FileNotFoundError(f"the demo's training config {path} is missing from the installation")
    return path


def _train(config_file: str, output_dir: Path, seed: int, overrides: list[str]) -> Path:
    """Run (or resume, or skip when finished) the training loop; return the exported pipeline folder."""
    from ssmgen.train.config import load_config
    from ssmgen.train.loop import train

    pipeline = output_dir / "pipeline"
    if (output_dir / "demo-finished").is_file() and (pipeline / "model_index.json").is_file():
        print(f"[demo] training already finished, reusing {pipeline}")
        return pipeline
    config = load_config(
        _config_path(config_file),
        ["--output_dir", str(output_dir), "--seed", str(seed), "--resume", "latest", *overrides],
    )
    result = train(config)
    (output_dir / "demo-finished").write_text(json.dumps({"steps": result.steps, "seconds": result.seconds}))
    return pipeline


def run_image_demo(args) -> dict:
    """Train, sample, measure; returns the summary it writes to ``out/summary.json``."""
    from diffusers import DiffusionPipeline

    import ssmgen.pipelines  # noqa: F401  (lets diffusers load ssmgen pipeline folders)
    from ssmgen.eval.digits_classifier import DigitsFeatureExtractor, digits_reference_images, train_digits_classifier
    from ssmgen.eval.extract import quantize_images
    from ssmgen.eval.frechet import frechet_distance, mean_and_covariance
    from ssmgen.sample import image_grid

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    config_file = IMAGE_MODELS[args.model]
    from ssmgen.train.config import load_config

    resolution = load_config(_config_path(config_file)).data.resolution

    # 1. The digits classifier that scores the samples (trained here in seconds, never downloaded).
    classifier_dir = out / f"digits-classifier-{resolution}"
    if not (classifier_dir / "config.json").is_file():
        print(f"[demo] training the digits classifier ({resolution}x{resolution}) -> {classifier_dir}")
        train_digits_classifier(classifier_dir, resolution=resolution, seed=args.seed)
    extractor = DigitsFeatureExtractor.from_pretrained(classifier_dir)

    # 2. The denoiser, through the real training loop.
    overrides = ["--max_steps", str(args.steps)] if args.steps else []
    print(f"[demo] training {args.model} on the digits -> {out / 'train'}")
    train_started = time.perf_counter()
    pipeline_dir = _train(config_file, out / "train", args.seed, overrides)
    train_seconds = time.perf_counter() - train_started

    # 3. Sample every class with the exported pipeline.
    pipe = DiffusionPipeline.from_pretrained(pipeline_dir).to(args.device)
    labels = [c for c in range(10) for _ in range(args.samples_per_class)]
    print(f"[demo] sampling {len(labels)} digits ({args.sampling_steps} steps, guidance {args.guidance_scale})")
    sample_started = time.perf_counter()
    images = pipe(
        labels,
        num_inference_steps=args.sampling_steps,
        guidance_scale=args.guidance_scale,
        generator=torch.Generator().manual_seed(args.seed),
        output_type="pt",
    ).images.cpu()
    sample_seconds = time.perf_counter() - sample_started

    # 4. Measure: accuracy on the requested classes, digits-FID against all real digits.
    generated = quantize_images(images, "round")
    predicted = extractor.classify(generated)
    accuracy = (predicted == torch.tensor(labels)).double().mean().item()
    real, _ = digits_reference_images(resolution)
    real_stats = mean_and_covariance(extractor(real)["features"].double().numpy())
    fake_stats = mean_and_covariance(extractor(generated)["features"].double().numpy())
    fid = frechet_distance(*real_stats, *fake_stats)

    grid_path = out / "samples_grid.png"
    image_grid(images, rows=10, scale=4).save(grid_path)
    summary = {
        "model": args.model,
        "parameters": sum(p.numel() for p in pipe.model.parameters()),
        "training_seconds": round(train_seconds, 1),
        "sampler": type(pipe.scheduler).__name__,
        "sampling_steps": args.sampling_steps,
        "guidance_scale": args.guidance_scale,
        "samples": len(labels),
        "sampling_seconds": round(sample_seconds, 1),
        "classifier_accuracy": round(accuracy, 4),
        "digits_fid": round(fid, 3),
        "total_seconds": round(time.perf_counter() - started, 1),
        "pipeline": str(pipeline_dir),
        "grid": str(grid_path),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main(argv: list[str], parser: argparse.ArgumentParser) -> int:
    parser.add_argument("--task", choices=("images", "motion"), default="images")
    parser.add_argument("--model", choices=tuple(IMAGE_MODELS), default="lamamba", help="image model to train")
    parser.add_argument("--out", help="output folder (default: runs/demo-<task or model>)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")
    parser.add_argument("--steps", type=int, help="training steps (default: the demo config's)")
    parser.add_argument("--samples-per-class", type=int, default=10)
    parser.add_argument("--sampling-steps", type=int, default=100)
    parser.add_argument("--guidance-scale", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "true"  # keep accelerate's training loop off a GPU too
    args.out = args.out or f"runs/demo-{args.model if args.task == 'images' else 'motion'}"
    if args.task == "motion":
        from ssmgen.motion_demo import run_motion_demo

        summary = run_motion_demo(args)
    else:
        summary = run_image_demo(args)
    print(json.dumps(summary, indent=1))
    print(f"[demo] done in {summary['total_seconds']} s; everything is in {args.out}")
    return 0
