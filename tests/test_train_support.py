"""Helpers shared by the training tests (this module holds no tests)."""

import json
from pathlib import Path

from accelerate.state import AcceleratorState, GradientState

from ssmgen.train import TrainConfig, TrainResult, load_config, train

CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"


def tiny_config(name: str, output_dir: Path, *overrides: str) -> TrainConfig:
    """``train/configs/tiny_<name>.yaml`` writing to ``output_dir``, with ``--key value`` overrides."""
    return load_config(CONFIGS / f"tiny_{name}.yaml", ["--output_dir", str(output_dir), *overrides])


def run_in_process(config: TrainConfig) -> TrainResult:
    """Train in this process; accelerate's process-wide state is reset afterwards for the next run."""
    try:
        return train(config)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


def logged_losses(output_dir: Path) -> dict[int, float]:
    """Per-step losses from metrics.jsonl; a step logged twice (re-run after a resume) keeps its last value."""
    losses = {}
    for line in (Path(output_dir) / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        losses[record["step"]] = record["loss"]
    return losses
