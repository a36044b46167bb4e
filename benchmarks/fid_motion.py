"""The text-to-motion metric table (R-precision, FID, MM-Dist, Diversity, MultiModality) of a saved motion
pipeline on a dataset split, with the protocol of T2M / MLD / Motion Mamba (``ssmgen.eval.motion``).

Paper numbers need the original T2M evaluator (files given by path, nothing is downloaded)::

    python benchmarks/fid_motion.py --pipeline runs/motion_mamba_humanml3d/pipeline \\
        --data data/HumanML3D --dataset humanml3d --split test --evaluator t2m \\
        --t2m-checkpoint deps/t2m/t2m/text_mot_match/model/finest.tar \\
        --t2m-mean deps/t2m/t2m/Comp_v6_KLD01/meta/mean.npy --t2m-std deps/t2m/t2m/Comp_v6_KLD01/meta/std.npy \\
        --glove-dir deps/glove --repeats 20 --out results/fid_motion.jsonl

Any other data (e.g. the built-in synthetic motions) uses the native contrastive evaluator, trained on the
``--evaluator-split`` the first time and saved in ``--native-evaluator``::

    python benchmarks/fid_motion.py --pipeline runs/demo-motion/train-motion-mamba/pipeline \\
        --data runs/demo-motion/synthetic-motions --dataset synthetic_motion --evaluator native \\
        --native-evaluator runs/demo-motion/evaluator --repeats 3

The real motions are scored in the same pass (``gt_*``: the ceiling of each metric with this evaluator);
AITS is the mean wall time per generated sentence (text encoding, denoising, decoding), as in the papers.
One JSON row (pipeline, sampler, steps, cfg, split, evaluator, every metric as [mean, 95% interval], AITS)
is appended to ``--out`` and printed with the table.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import diffusers
import torch

from ssmgen.data.motion import Text2MotionDataset
from ssmgen.eval.motion import evaluate_motion, format_motion_table

DATASET_FPS = {"humanml3d": 20.0, "kit": 12.5, "synthetic_motion": 20.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", required=True, help="saved MotionMambaPipeline folder")
    parser.add_argument("--data", required=True, help="HumanML3D-layout folder (HumanML3D, KIT-ML, synthetic)")
    parser.add_argument("--dataset", choices=tuple(DATASET_FPS), default="humanml3d", help="sets the frame rate")
    parser.add_argument("--split", default="test")
    parser.add_argument("--min-frames", type=int, default=40)
    parser.add_argument("--max-frames", type=int, default=196)
    parser.add_argument("--evaluator", choices=("t2m", "native"), required=True)
    parser.add_argument("--t2m-checkpoint", help="T2M finest.tar (text_mot_match/model/)")
    parser.add_argument("--t2m-mean", help="the evaluator's meta/mean.npy")
    parser.add_argument("--t2m-std", help="the evaluator's meta/std.npy")
    parser.add_argument("--glove-dir", help="folder with our_vab_data.npy, our_vab_words.pkl, our_vab_idx.pkl")
    parser.add_argument("--native-evaluator", help="folder of a trained native evaluator (trained there if empty)")
    parser.add_argument("--evaluator-split", default="train", help="split the native evaluator trains on")
    parser.add_argument("--evaluator-epochs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50, help="num_inference_steps")
    parser.add_argument("--guidance-scale", type=float, default=7.5)
    parser.add_argument("--scheduler", default=None, help="swap in a diffusers scheduler class, e.g. DDPMScheduler")
    parser.add_argument("--group-size", type=int, default=32, help="R-precision / MM-Dist group size")
    parser.add_argument("--diversity-pairs", type=int, default=300)
    parser.add_argument("--mm-captions", type=int, default=100, help="MultiModality captions (0 skips it)")
    parser.add_argument("--mm-repeats", type=int, default=30)
    parser.add_argument("--mm-pairs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model-name", default=None, help="name in the JSON row (default: the pipeline folder)")
    parser.add_argument("--out", default="results/fid_motion.jsonl")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.evaluator == "t2m":
        missing = [
            f"--{n}"
            for n in ("t2m-checkpoint", "t2m-mean", "t2m-std", "glove-dir")
            if not getattr(args, n.replace("-", "_"))
        ]
        if missing:
            parser.error(f"--evaluator t2m needs {', '.join(missing)}")
    elif args.native_evaluator is None:
        parser.error("--evaluator native needs --native-evaluator (a folder; the evaluator is trained there if empty)")
    return args


def load_dataset(args: argparse.Namespace, split: str) -> Text2MotionDataset:
    """Raw (un-normalised) features: every evaluator normalises with its own statistics."""
    return Text2MotionDataset(
        args.data,
        split,
        min_length=args.min_frames,
        max_length=args.max_frames,
        fps=DATASET_FPS[args.dataset],
        normalize=False,
        seed=args.seed,
    )


def load_evaluator(args: argparse.Namespace, progress: bool):
    """The T2M evaluator from its files, or the native one (trained on ``--evaluator-split`` if absent)."""
    if args.evaluator == "t2m":
        from ssmgen.eval.t2m_evaluator import T2MEvaluator

        return T2MEvaluator.from_files(args.t2m_checkpoint, args.t2m_mean, args.t2m_std, args.glove_dir)
    from ssmgen.eval.text_motion_evaluator import ContrastiveTextMotionEvaluator, train_text_motion_evaluator

    folder = Path(args.native_evaluator)
    if (folder / "config.json").is_file():
        return ContrastiveTextMotionEvaluator.from_pretrained(folder).eval().requires_grad_(False)
    train = load_dataset(args, args.evaluator_split)
    return train_text_motion_evaluator(
        train, out_dir=folder, epochs=args.evaluator_epochs, seed=args.seed, progress=progress
    )


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the JSON row."""
    args = parse_args(argv)
    import ssmgen.pipelines  # noqa: F401  (lets diffusers load ssmgen pipeline folders)

    progress = not args.no_progress
    dataset = load_dataset(args, args.split)
    evaluator = load_evaluator(args, progress).to(args.device)
    pipe = diffusers.DiffusionPipeline.from_pretrained(args.pipeline).to(args.device)
    if args.scheduler is not None:
        pipe.scheduler = getattr(diffusers, args.scheduler).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)

    timing = {"seconds": 0.0, "sentences": 0}

    def generate(captions: list[str], lengths: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        start = time.perf_counter()
        features = pipe(
            captions,
            num_frames=lengths.tolist(),
            num_inference_steps=args.steps,
            guidance_scale=args.guidance_scale,
            generator=generator,
            output_type="pt",
        ).features
        if features.is_cuda:
            torch.cuda.synchronize()
        timing["seconds"] += time.perf_counter() - start
        timing["sentences"] += len(captions)
        return features.cpu()

    start = time.perf_counter()
    results = evaluate_motion(
        generate,
        dataset,
        evaluator,
        repeats=args.repeats,
        batch_size=args.batch_size,
        group_size=args.group_size,
        diversity_pairs=args.diversity_pairs,
        mm_num_captions=args.mm_captions,
        mm_repeats=args.mm_repeats,
        mm_pairs=args.mm_pairs,
        seed=args.seed,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    row = dict(
        model=args.model_name or Path(args.pipeline).name,
        pipeline=type(pipe).__name__,
        denoiser=type(pipe.model).__name__,
        parameters=sum(p.numel() for p in pipe.model.parameters()),
        steps=args.steps,
        sampler=type(pipe.scheduler).__name__,
        cfg=args.guidance_scale,
        dataset=args.dataset,
        data=str(args.data),
        split=args.split,
        num_motions=len(dataset),
        evaluator=args.evaluator,
        repeats=args.repeats,
        metrics={name: [mean, interval] for name, (mean, interval) in results.items()},
        aits_s=timing["seconds"] / max(timing["sentences"], 1),
        time_s=seconds,
        seed=args.seed,
        device=args.device,
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(format_motion_table(results))
    print(json.dumps({key: value for key, value in row.items() if key != "metrics"}, indent=2))
    return row


if __name__ == "__main__":
    main()
