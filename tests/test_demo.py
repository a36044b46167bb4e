"""`ssmgen demo` (images) end to end with a few training and sampling steps, and its multi-process launcher."""

import json
import os

import pytest
import torch
from diffusers import DiffusionPipeline

from ssmgen.cli import main
from ssmgen.runtime import training_command


def test_training_command_launches_one_or_several_processes():
    assert training_command(1) == ["-m", "ssmgen.train"]
    several = training_command(2)
    assert several[:2] == ["-m", "accelerate.commands.launch"] and several[-2:] == ["-m", "ssmgen.train"]
    assert several[several.index("--num_processes") + 1] == "2" and "--multi_gpu" in several
    with pytest.raises(ValueError, match="processes"):
        training_command(0)


def test_image_demo_trains_samples_scores_and_reuses_its_run(tmp_path, capsys):
    args = ["demo", "--out", str(tmp_path), "--device", "cpu", "--steps", "2"]
    args += ["--samples-per-class", "1", "--sampling-steps", "2"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["model"] == "lamamba" and summary["samples"] == 10 and summary["sampling_steps"] == 2
    assert 0.0 <= summary["classifier_accuracy"] <= 1.0 and summary["digits_fid"] >= 0.0
    assert (tmp_path / "samples_grid.png").stat().st_size > 0
    finished = json.loads((tmp_path / "train" / "demo-finished").read_text())
    assert finished["processes"] == min(2, os.cpu_count())  # one training process per core, two at most
    steps = [json.loads(line)["step"] for line in (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 2

    import ssmgen.pipelines  # noqa: F401  (lets diffusers load ssmgen pipeline folders)

    pipe = DiffusionPipeline.from_pretrained(summary["pipeline"])
    pipe.set_progress_bar_config(disable=True)
    images = pipe([3], num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert images.shape == (1, 1, 8, 8)

    capsys.readouterr()
    assert main(args) == 0  # a second run reuses the classifier and the finished training run
    assert "reusing" in capsys.readouterr().out
    assert json.loads((tmp_path / "summary.json").read_text())["digits_fid"] == summary["digits_fid"]


def test_demo_rejects_an_unknown_model(tmp_path):
    with pytest.raises(SystemExit):
        main(["demo", "--model", "unet", "--out", str(tmp_path)])
