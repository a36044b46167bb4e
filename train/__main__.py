"""``python -m ssmgen.train --config FILE [--key value ...]`` (also under ``accelerate launch -m``).

``main(argv)`` is what the ``ssmgen train`` command calls.
"""

from __future__ import annotations

import argparse
import sys

from .checkpointing import resume_point
from .config import load_config
from .loop import NonFiniteLossError, train
from .registry import validate_config

EPILOG = """\
overrides: any config key as --section.key value (e.g. --optim.lr 1e-4 --model.kwargs.layers_per_block 1),
           --resume latest to continue from the newest complete checkpoint in output_dir.
examples:
  python -m ssmgen.train --config train/configs/digits_unet2d.yaml --max_steps 200
  accelerate launch --multi_gpu --num_processes 8 -m ssmgen.train --config train/configs/digits_dit.yaml
"""


def main(argv: list[str] | None = None) -> int:
    """Parse ``--config`` and overrides, validate, train. Returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="ssmgen.train",
        description="Train an ssmgen model (or a diffusers baseline) with accelerate.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--config", help="YAML config (see train/configs/); without it the defaults are used")
    args, overrides = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        config = load_config(args.config, overrides)
        validate_config(config)
        resume_point(config.resume, config.output_dir)
    except ValueError as error:
        print(f"ssmgen.train: error: {error}", file=sys.stderr)
        return 2
    try:
        train(config)
    except NonFiniteLossError as error:
        print(f"ssmgen.train: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
