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


def _cpu_processes(device: str) -> int:
    """Training processes to launch: one per core (two at most) on a CPU-only machine, else one.

    The models' tensors are small, so one intra-op thread per process is fastest, and a second process
    (gloo DDP, each with half the batch) is what makes the second core useful."""
    if device != "cpu":
        return 1
    return max(1, min(2, os.cpu_count() or 1))


def _train(config_file: str, output_dir: Path, seed: int, overrides: list[str], device: str) -> Path:
    """Run (or resume, or skip when finished) the training loop; return the exported pipeline folder."""
    import subprocess
    import sys

    pipeline = output_dir / "pipeline"
    if (output_dir / "demo-finished").is_file() and (pipeline / "model_index.json").is_file():
        print(f"[demo] training already finished, reusing {pipeline}")
        return pipeline
    from ssmgen.runtime import training_command
    from ssmgen.train.config import load_config

    config_path = _config_path(config_file)
    processes = _cpu_processes(device)
    batch_size = load_config(config_path).data.batch_size // processes  # the same global batch
    args = ["--config", str(config_path), "--output_dir", str(output_dir), "--seed", str(seed)]
    args += ["--resume", "latest", "--data.batch_size", str(batch_size), *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if device == "cpu" else dict(os.environ)
    subprocess.run([sys.executable, *training_command(processes), *args], env=env, check=True)
    (output_dir / "demo-finished").write_text(json.dumps({"processes": processes}))
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
    pipeline_dir = _train(config_file, out / "train", args.seed, overrides, args.device)
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
    parser.add_argument("--samples-per-class", type=int, default=20)
    parser.add_argument("--sampling-steps", type=int, default=50)
    parser.add_argument("--guidance-scale", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "true"  # keep accelerate's training loop off a GPU too
        torch.set_num_threads(1)  # sampling and scoring, like training, use one thread per process
    args.out = args.out or f"runs/demo-{args.model if args.task == 'images' else 'motion'}"
    if args.task == "motion":
        from ssmgen.motion_demo import run_motion_demo

        summary = run_motion_demo(args)
    else:
        summary = run_image_demo(args)
    print(json.dumps(summary, indent=1))
    print(f"[demo] done in {summary['total_seconds']} s; everything is in {args.out}")
    return 0
