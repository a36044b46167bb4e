"""Helpers shared by the training tests (this module holds no tests)."""

import json
import os
from pathlib import Path

import torch
from accelerate.state import AcceleratorState, GradientState

from ssmgen.train import TrainConfig, TrainResult, load_config, train

CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"


def tiny_config(name: str, output_dir: Path, *overrides: str) -> TrainConfig:
    """``train/configs/tiny_<name>.yaml`` writing to ``output_dir``, with ``--key value`` overrides."""
    return load_config(CONFIGS / f"tiny_{name}.yaml", ["--output_dir", str(output_dir), *overrides])


def run_in_process(config: TrainConfig) -> TrainResult:
    """Train in this process with one CPU thread; accelerate's process-wide state is reset afterwards.

    One thread: the test machine's two cores are shared, and two spinning OpenMP threads on a busy core make
    these tiny steps tens of times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(config)
    finally:
        torch.set_num_threads(threads)
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


def logged_losses(output_dir: Path) -> dict[int, float]:
    """Per-step losses from metrics.jsonl; a step logged twice (re-run after a resume) keeps its last."""
    return {step: values[-1] for step, values in all_logged_losses(output_dir).items()}


def all_logged_losses(output_dir: Path) -> dict[int, list[float]]:
    """Every loss logged for each step, in order (a step is logged again when a resumed run re-runs it)."""
    losses: dict[int, list[float]] = {}
    for line in (Path(output_dir) / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        losses.setdefault(record["step"], []).append(record["loss"])
    return losses


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for training subprocesses: one CPU thread each (see ``run_in_process``)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", **extra}
