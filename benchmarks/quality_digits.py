"""Quality at equal budget on the built-in digits: LaMamba-Diff and DiMSUM against diffusers' U-Net and DiT.

Every model is class-conditional, has 1.03M parameters within 10%, and is trained by the same ssmgen loop
with the same data (8x8 digits, batch 64), optimiser (AdamW 2e-3, 50 warm-up steps, clipping at 1), EMA,
seed and number of steps, on its own paper's objective: LaMamba-Diff and DiT eps + learned sigma (VLB),
the U-Net DDPM's eps, DiMSUM GVP flow matching. Sampling gets the same budget: ``--nfe`` model
evaluations per image (DDPM ancestral steps for the eps models, Euler steps of the flow for DiMSUM) with
the same classifier-free guidance. The samples are scored by a digits classifier trained here: accuracy
on the requested class and digits-FID against all 1,797 real digits (its penultimate features).

Usage:  python benchmarks/quality_digits.py [--steps 1000] [--out runs/quality_digits] [--models lamamba dit]
        [--processes 2]
Finished runs in ``--out`` are reused; training runs in subprocesses with one intra-op thread each
(``--processes N``: N gloo DDP processes sharing the same global batch).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

import ssmgen.pipelines  # noqa: F401  (lets diffusers load ssmgen pipeline folders)
from ssmgen.runtime import training_command
from ssmgen.train.config import load_config

CONFIG = Path(__file__).resolve().parent.parent / "train" / "configs" / "digits_lamamba_diff.yaml"
MODELS = {
    "lamamba": ("lamamba_diff", "eps_vlb", {}),
    "dimsum": (
        "dimsum",
        "flow",
        {
            "preset": "tiny",
            "patch_size": 1,
            "hidden_size": 88,
            "depth": 4,
            "attention_heads": 4,
            "fusion_heads": 4,
            "drop_path": 0.0,
        },
    ),  # fmt: skip
    "unet": (
        "unet2d_class",
        "eps",
        {
            "block_out_channels": [48, 72],
            "layers_per_block": 1,
            "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
            "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
            "norm_num_groups": 8,
            "attention_head_dim": 8,
        },
    ),  # fmt: skip
    "dit": ("dit", "eps_vlb", {"num_layers": 3, "num_attention_heads": 4, "attention_head_dim": 32, "patch_size": 2}),
}


def train(name: str, out: Path, steps: int, seed: int, processes: int) -> tuple[Path, float, int]:
    """Train one model through ``ssmgen.train`` in ``processes`` processes with one thread each (the same
    global batch), or reuse a finished run; return (pipeline, seconds, processes)."""
    family, objective, kwargs = MODELS[name]
    run = out / name
    done = run / "benchmark-finished.json"
    if done.is_file():
        finished = json.loads(done.read_text())
        return run / "pipeline", finished["seconds"], finished.get("processes", 1)
    overrides = ["--output_dir", str(run), "--max_steps", str(steps), "--seed", str(seed), "--resume", "latest"]
    overrides += ["--data.batch_size", str(load_config(CONFIG).data.batch_size // processes)]  # same global batch
    overrides += ["--model.family", family, "--objective.name", objective, "--checkpoint.every_steps", "0"]
    if family != "lamamba_diff":  # the base config holds LaMamba-Diff's own kwargs
        overrides += ["--model.kwargs", "{}"]
    kwargs = dict(kwargs)
    if "preset" in kwargs:
        overrides += ["--model.preset", kwargs.pop("preset")]
    for key, value in kwargs.items():
        overrides += [f"--model.kwargs.{key}", json.dumps(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    start = time.perf_counter()
    command = [sys.executable, *training_command(processes), "--config", str(CONFIG), *overrides]
    subprocess.run(command, env=env, check=True)
    seconds = time.perf_counter() - start
    done.write_text(json.dumps({"seconds": seconds, "processes": processes}))
    return run / "pipeline", seconds, processes


def evaluate(pipeline_dir: Path, nfe: int, guidance: float, per_class: int, seed: int, extractor) -> dict:
    """Sample ``per_class`` digits of every class with ``nfe`` evaluations each; accuracy and digits-FID."""
    from diffusers import DDPMScheduler, DiffusionPipeline

    from ssmgen.eval.digits_classifier import digits_reference_images
    from ssmgen.eval.extract import quantize_images
    from ssmgen.eval.frechet import frechet_distance, mean_and_covariance
    from ssmgen.schedulers import FlowMatchingScheduler

    pipe = DiffusionPipeline.from_pretrained(pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    if isinstance(pipe.scheduler, FlowMatchingScheduler):
        pipe.scheduler = FlowMatchingScheduler.from_config(pipe.scheduler.config, solver="euler")
    else:
        assert isinstance(pipe.scheduler, DDPMScheduler)
    labels = [c for c in range(10) for _ in range(per_class)]
    start = time.perf_counter()
    images = pipe(
        labels, num_inference_steps=nfe, guidance_scale=guidance, generator=torch.Generator().manual_seed(seed),
        output_type="pt",
    ).images  # fmt: skip
    seconds = time.perf_counter() - start
    generated = quantize_images(images, "round")
    accuracy = (extractor.classify(generated) == torch.tensor(labels)).double().mean().item()
    real, _ = digits_reference_images(images.shape[-1])
    fid = frechet_distance(
        *mean_and_covariance(extractor(real)["features"].double().numpy()),
        *mean_and_covariance(extractor(generated)["features"].double().numpy()),
    )
    return {
        "parameters": sum(p.numel() for p in pipe.model.parameters()),
        "sampler": type(pipe.scheduler).__name__,
        "accuracy": round(accuracy, 4),
        "digits_fid": round(fid, 3),
        "sampling_seconds": round(seconds, 1),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--nfe", type=int, default=100, help="model evaluations per image (x2 with guidance)")
    parser.add_argument("--guidance-scale", type=float, default=2.0)
    parser.add_argument("--samples-per-class", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1, help="training processes (gloo DDP on CPUs)")
    parser.add_argument("--out", default="runs/quality_digits")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from ssmgen.eval.digits_classifier import DigitsFeatureExtractor, train_digits_classifier

    out = Path(args.out)
    classifier = out / "digits-classifier-8"
    if not (classifier / "config.json").is_file():
        train_digits_classifier(classifier, resolution=8, seed=args.seed)
    extractor = DigitsFeatureExtractor.from_pretrained(classifier)
    rows = []
    for name in args.models:
        pipeline, train_seconds, processes = train(name, out, args.steps, args.seed, args.processes)
        row = {"model": name, "family": MODELS[name][0], "objective": MODELS[name][1], "steps": args.steps}
        row |= {"train_seconds": round(train_seconds, 1), "train_processes": processes}
        row |= {"nfe": args.nfe, "guidance_scale": args.guidance_scale}
        row |= evaluate(pipeline, args.nfe, args.guidance_scale, args.samples_per_class, args.seed, extractor)
        rows.append(row)
        print(json.dumps(row), flush=True)
    header = ("model", "params M", "objective", "train s", "procs", "sample s", "accuracy", "FID")
    print("\n{:<9} {:>8} {:<9} {:>8} {:>5} {:>8} {:>8} {:>7}".format(*header))
    for r in rows:
        print(
            f"{r['model']:<9} {r['parameters'] / 1e6:>8.3f} {r['objective']:<9} {r['train_seconds']:>8.0f}"
            f" {r['train_processes']:>5}"
            f" {r['sampling_seconds']:>8.0f} {r['accuracy']:>8.3f} {r['digits_fid']:>7.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
