"""``ssmgen demo --task motion``: Motion Mamba end to end on the built-in synthetic motions, on a CPU.

1. Build the synthetic motions (HumanML3D folder layout) once.
2. Stage 1: train the motion VAE through the real training loop (``motion_vae_synthetic.yaml``).
3. Stage 2: train a small latent Motion Mamba on the frozen VAE (``motion_mamba_synthetic.yaml``).
4. Generate a motion for each of a handful of prompts: GIF animations and joints (.npy) in ``motions/``.
5. Train the native text-motion evaluator on the training split (``ssmgen.eval.text_motion_evaluator``).
6. Score generations for the test split's captions and lengths: R-precision, FID, MM-Dist, Diversity and
   MultiModality, next to the real motions' values (the evaluator's own numbers; not comparable with papers).

Re-running with the same ``--out`` reuses what is done: the motions, the evaluator, finished training runs
(an interrupted run resumes from its last checkpoint).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import torch

from ssmgen.demo import _config_path, _train

VAE_CONFIG = "motion_vae_synthetic.yaml"
MODEL_CONFIG = "motion_mamba_synthetic.yaml"
PROMPTS = (
    "a person walks forward",
    "a person does jumping jacks",
    "a person sits down and then stands back up",
    "a person waves both hands",
    "a person kicks forward with the left foot",
    "a person jumps in place three times",
)
PROMPT_FRAMES = 100
"""Frames per prompt motion (5 s at 20 fps)."""
SAMPLING_STEPS = 50
"""DDIM steps, as MLD and Motion Mamba."""
GUIDANCE_SCALE = 3.0
EVALUATOR_EPOCHS = 20
METRIC_REPEATS = 2
MM_CAPTIONS, MM_REPEATS, MM_PAIRS = 10, 6, 5
"""MultiModality: captions, generations per caption and pairs (the papers: 100, 30, 10)."""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _train_stages(args, out: Path, data_dir: Path) -> tuple[Path, Path, float]:
    """Stage 1 then stage 2 through ``ssmgen.train``; returns the VAE run, the pipeline and the seconds."""
    common = ["--data.path", str(data_dir)] + (["--max_steps", str(args.steps)] if args.steps else [])
    started = time.perf_counter()
    vae_dir = out / "train-vae"
    print(f"[demo] stage 1: the motion VAE -> {vae_dir}")
    _train(VAE_CONFIG, vae_dir, args.seed, common, args.device)
    print(f"[demo] stage 2: Motion Mamba on the frozen VAE -> {out / 'train-motion-mamba'}")
    overrides = [*common, "--model.vae", str(vae_dir)]
    pipeline_dir = _train(MODEL_CONFIG, out / "train-motion-mamba", args.seed, overrides, args.device)
    return vae_dir, pipeline_dir, time.perf_counter() - started


def _write_prompt_motions(pipe, out: Path, seed: int) -> list[dict]:
    """One motion per prompt: ``motions/<nn>_<prompt>.gif`` and ``.npy`` (joints (T, 22, 3))."""
    from ssmgen.viz import save_joints_npy, save_motion_animation

    folder = out / "motions"
    folder.mkdir(exist_ok=True)
    print(f"[demo] generating {len(PROMPTS)} prompted motions -> {folder}")
    output = pipe(
        list(PROMPTS),
        num_frames=PROMPT_FRAMES,
        num_inference_steps=SAMPLING_STEPS,
        guidance_scale=GUIDANCE_SCALE,
        generator=torch.Generator().manual_seed(seed),
    )
    written = []
    for index, (prompt, joints) in enumerate(zip(PROMPTS, output.joints, strict=True)):
        stem = folder / f"{index:02d}_{_slug(prompt)}"
        save_motion_animation(joints, stem.with_suffix(".gif"), title=prompt, size=320)
        save_joints_npy(joints, stem.with_suffix(".npy"))
        written.append(
            {"prompt": prompt, "gif": str(stem.with_suffix(".gif")), "joints": str(stem.with_suffix(".npy"))}
        )
    return written


def _evaluator(out: Path, data_dir: Path, max_frames: int, seed: int):
    """The native text-motion evaluator trained on the training split (reused when present)."""
    from ssmgen.data.motion import Text2MotionDataset
    from ssmgen.eval.text_motion_evaluator import ContrastiveTextMotionEvaluator, train_text_motion_evaluator

    folder = out / "evaluator"
    if (folder / "config.json").is_file():
        print(f"[demo] reusing the text-motion evaluator in {folder}")
        return ContrastiveTextMotionEvaluator.from_pretrained(folder).eval().requires_grad_(False)
    print(f"[demo] training the text-motion evaluator ({EVALUATOR_EPOCHS} epochs) -> {folder}")
    train = Text2MotionDataset(data_dir, "train", max_length=max_frames, normalize=False, seed=seed)
    return train_text_motion_evaluator(train, out_dir=folder, epochs=EVALUATOR_EPOCHS, seed=seed)


def _motion_metrics(pipe, evaluator, data_dir: Path, max_frames: int, seed: int) -> tuple[dict, int]:
    """``evaluate_motion`` of the pipeline on the test split; returns the table and the number of test items."""
    from ssmgen.data.motion import Text2MotionDataset
    from ssmgen.eval.motion import evaluate_motion, format_motion_table

    test = Text2MotionDataset(data_dir, "test", max_length=max_frames, normalize=False, seed=seed)

    def generate(captions: list[str], lengths: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return pipe(
            captions,
            num_frames=lengths.tolist(),
            num_inference_steps=SAMPLING_STEPS,
            guidance_scale=GUIDANCE_SCALE,
            generator=generator,
            output_type="pt",
        ).features.cpu()

    print(f"[demo] motion metrics on {len(test)} test motions ({METRIC_REPEATS} repeats)")
    results = evaluate_motion(
        generate,
        test,
        evaluator,
        repeats=METRIC_REPEATS,
        diversity_pairs=min(300, len(test) - 1),
        mm_num_captions=MM_CAPTIONS,
        mm_repeats=MM_REPEATS,
        mm_pairs=MM_PAIRS,
        seed=seed,
    )
    print(format_motion_table(results))
    return results, len(test)


def run_motion_demo(args) -> dict:
    """Build, train, generate, measure; returns the summary it writes to ``out/summary.json``.

    ``args``: ``out`` (folder), ``seed``, ``device`` ("cpu" or "cuda"), ``steps`` (training steps of each
    stage; None: the configs').
    """
    from diffusers import DiffusionPipeline

    import ssmgen.pipelines  # noqa: F401  (lets diffusers load ssmgen pipeline folders)
    from ssmgen.train.config import load_config
    from ssmgen.train.data import ensure_synthetic_motions

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = load_config(_config_path(MODEL_CONFIG)).data

    # 1. The synthetic motions.
    data_dir = out / "synthetic-motions"
    if not data_dir.exists():
        print(f"[demo] building {data.synthetic_motions} synthetic motions -> {data_dir}")
    ensure_synthetic_motions(data_dir, data.synthetic_motions)

    # 2-3. The VAE, then Motion Mamba on it, through the training loop.
    vae_dir, pipeline_dir, train_seconds = _train_stages(args, out, data_dir)
    pipe = DiffusionPipeline.from_pretrained(pipeline_dir).to(args.device)
    pipe.set_progress_bar_config(disable=True)

    # 4. Motions for the demo prompts.
    sample_started = time.perf_counter()
    motions = _write_prompt_motions(pipe, out, args.seed)
    sample_seconds = time.perf_counter() - sample_started

    # 5-6. The evaluator and the metrics.
    evaluator = _evaluator(out, data_dir, data.max_frames, args.seed).to(args.device)
    metrics_started = time.perf_counter()
    results, num_test = _motion_metrics(pipe, evaluator, data_dir, data.max_frames, args.seed)
    metrics_seconds = time.perf_counter() - metrics_started

    summary = {
        "task": "motion",
        "model": "motion_mamba (latent)",
        "parameters": sum(p.numel() for p in pipe.model.parameters()),
        "vae_parameters": sum(p.numel() for p in pipe.vae.parameters()),
        "text_encoder": pipe.text_encoder.config.name_or_path or type(pipe.text_encoder).__name__,
        "training_seconds": round(train_seconds, 1),
        "sampler": type(pipe.scheduler).__name__,
        "sampling_steps": SAMPLING_STEPS,
        "guidance_scale": GUIDANCE_SCALE,
        "prompt_motions": motions,
        "sampling_seconds": round(sample_seconds, 1),
        "test_motions": num_test,
        "metric_repeats": METRIC_REPEATS,
        "metrics": {name: [round(mean, 4), round(interval, 4)] for name, (mean, interval) in results.items()},
        "metrics_seconds": round(metrics_seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "total_seconds": round(time.perf_counter() - started, 1),
        "vae": str(vae_dir / "pipeline"),
        "pipeline": str(pipeline_dir),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
