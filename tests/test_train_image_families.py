"""DiMSUM and the class-conditional U-Net through the training loop: the loss falls, the export samples."""

import json

import torch
from diffusers import DiffusionPipeline
from test_train_support import run_in_process, tiny_config

import ssmgen.pipelines
from ssmgen.schedulers import FlowMatchingScheduler


def first_and_last_losses(output_dir):
    records = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    return sum(losses[:3]) / 3, sum(losses[-3:]) / 3


def test_dimsum_learns_by_flow_matching_and_exports_a_dimsum_pipeline(tmp_path):
    config = tiny_config(
        "lamamba_diff", tmp_path, "--model.family", "dimsum", "--model.preset", "tiny", "--objective.name", "flow",
        "--max_steps", "12", "--optim.lr", "3e-3", "--logging.every_steps", "1",
    )  # fmt: skip
    result = run_in_process(config)
    first, last = first_and_last_losses(tmp_path)
    assert last < first
    pipe = DiffusionPipeline.from_pretrained(result.pipeline)
    assert isinstance(pipe, ssmgen.pipelines.DiMSUMPipeline)
    assert isinstance(pipe.scheduler, FlowMatchingScheduler) and pipe.scheduler.config.path_type == "GVP"
    pipe.set_progress_bar_config(disable=True)
    images = pipe(class_labels=[1, 7], num_inference_steps=2, output_type="pt").images
    assert images.shape == (2, 1, 8, 8) and torch.isfinite(images).all()


def test_class_conditional_unet2d_learns_and_samples_by_class(tmp_path):
    config = tiny_config(
        "lamamba_diff", tmp_path, "--model.family", "unet2d_class", "--model.preset", "tiny", "--objective.name",
        "eps", "--max_steps", "12", "--optim.lr", "3e-3", "--logging.every_steps", "1",
    )  # fmt: skip
    result = run_in_process(config)
    first, last = first_and_last_losses(tmp_path)
    assert last < first
    pipe = DiffusionPipeline.from_pretrained(result.pipeline)
    assert pipe.num_classes == 10 and pipe.model.config.num_class_embeds == 11
    pipe.set_progress_bar_config(disable=True)
    images = pipe(class_labels=[0, 9], num_inference_steps=2, guidance_scale=2.0, output_type="pt").images
    assert images.shape == (2, 1, 8, 8) and torch.isfinite(images).all()
