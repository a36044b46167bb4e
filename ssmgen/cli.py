"""The ``ssmgen`` command: ``train | sample | fid | encode-latents | demo | bench``.

Each subcommand is a thin front for a library entry point, imported only when it runs.
"""

import argparse
import subprocess
import sys
from pathlib import Path

COMMANDS = {
    "train": (
        "train a model with accelerate from a YAML config",
        "  ssmgen train --config train/configs/digits_lamamba_diff.yaml --max_steps 500\n"
        "  accelerate launch --multi_gpu --num_processes 2 -m ssmgen.train --config train/configs/tiny_dit.yaml",
    ),
    "sample": (
        "load a saved pipeline folder and write images or motions",
        "  ssmgen sample runs/demo-lamamba/train/pipeline --out samples --class-labels 0 1 2 --steps 50\n"
        '  ssmgen sample runs/motion/pipeline --out motions --prompt "a person walks forward" --num-frames 120',
    ),
    "fid": (
        "FID statistics files and comparisons (see also benchmarks/fid_images.py)",
        "  ssmgen fid stats data/real_images --out real.npz --inception-weights pt_inception-2015-12-05.pth\n"
        "  ssmgen fid compare real.npz generated.npz",
    ),
    "encode-latents": (
        "encode an image folder once into a latent cache with an AutoencoderKL",
        "  ssmgen encode-latents --images data/imagenet/train --vae stabilityai/sd-vae-ft-ema --out latents/",
    ),
    "demo": (
        "train, sample and evaluate a small model on built-in data (the main job)",
        "  ssmgen demo                      # LaMamba-Diff on scikit-learn's digits\n"
        "  ssmgen demo --model dimsum --out runs/demo-dimsum\n"
        "  ssmgen demo --task motion        # Motion Mamba on the built-in synthetic motions",
    ),
    "bench": (
        "run a benchmark script from the repository's benchmarks/ folder",
        "  ssmgen bench scan --lengths 256 1024 4096\n  ssmgen bench image_models --skip-timing",
    ),
}
BENCHMARKS_DIR = Path(__file__).resolve().parent.parent / "benchmarks"


def _subcommand_parser(name: str) -> argparse.ArgumentParser:
    description, example = COMMANDS[name]
    return argparse.ArgumentParser(
        prog=f"ssmgen {name}",
        description=description,
        epilog=f"example:\n{example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _run_bench(argv: list[str]) -> int:
    scripts = sorted(p.stem for p in BENCHMARKS_DIR.glob("*.py")) if BENCHMARKS_DIR.is_dir() else []
    parser = _subcommand_parser("bench")
    parser.add_argument("script", choices=scripts or None, help="benchmark name (a file in benchmarks/)")
    if not scripts:
        parser.error("benchmarks/ is not next to the installed package; run from a source checkout (pip install -e .)")
    args, rest = parser.parse_known_args(argv)
    return subprocess.call([sys.executable, str(BENCHMARKS_DIR / f"{args.script}.py"), *rest])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="ssmgen",
        description="State-space (Mamba) generative models: train, sample, evaluate.",
        epilog="commands:\n" + "\n".join(f"  {n:<15} {d}" for n, (d, _) in COMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=list(COMMANDS), metavar="command")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        parser.error(f"unknown command {command!r}; choose from {', '.join(COMMANDS)}")
    if command == "train":
        from ssmgen.train.__main__ import main as train_main

        return train_main(rest)
    if command == "encode-latents":
        from ssmgen.train.encode_latents import main as encode_main

        return encode_main(rest)
    if command == "fid":
        from ssmgen.eval.fid import main as fid_main

        return fid_main(rest) or 0
    if command == "bench":
        return _run_bench(rest)
    if command == "sample":
        from ssmgen.sample import main as sample_main

        return sample_main(rest, _subcommand_parser("sample"))
    from ssmgen.demo import main as demo_main

    return demo_main(rest, _subcommand_parser("demo"))


if __name__ == "__main__":
    sys.exit(main())
