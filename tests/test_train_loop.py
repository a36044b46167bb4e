"""The shared loop in-process: tiny models train, export loadable pipelines, stop on NaN, log to trackers."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from diffusers import DDPMPipeline, DiffusionPipeline, UNet2DModel
from PIL import Image
from safetensors.torch import load_file
from test_train_support import logged_losses, run_in_process, tiny_config

from ssmgen.train import FAMILIES, NonFiniteLossError
from ssmgen.train.checkpointing import list_checkpoints
from ssmgen.train.config import EMAConfig
from ssmgen.train.data import DataInfo
from ssmgen.train.ema import EMA
from ssmgen.train.loop import drop_labels
from ssmgen.train.registry import UNET2D_PRESETS, ModelFamily, build_dit, table_builder, unet2d_data_kwargs
from ssmgen.train.trackers import wandb_mode


def test_tiny_unet2d_learns_and_exports_a_ddpm_pipeline(tmp_path):
    result = run_in_process(tiny_config("unet2d", tmp_path, "--max_steps", "10", "--checkpoint.every_steps", "2"))
    losses = logged_losses(tmp_path)
    assert sorted(losses) == list(range(1, 11))
    assert sum(losses[s] for s in (8, 9, 10)) < 0.6 * sum(losses[s] for s in (1, 2, 3))
    assert result.steps == 10 and result.checkpoint == tmp_path / "checkpoint-10"
    assert [step for step, _ in list_checkpoints(tmp_path)] == [8, 10]  # total_limit 2

    pipeline = DiffusionPipeline.from_pretrained(result.pipeline)
    assert isinstance(pipeline, DDPMPipeline) and pipeline.scheduler.config.clip_sample
    images = pipeline(batch_size=2, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np")
    assert images.images.shape == (2, 8, 8, 1) and 0 <= images.images.min() and images.images.max() <= 1
    # The pipeline holds the EMA weights, not the last raw weights.
    ema = load_file(result.checkpoint / "ema.safetensors")
    exported = list(pipeline.unet.parameters())
    torch.testing.assert_close(exported[0], ema["shadow.0"], rtol=0, atol=0)
    raw = load_file(result.checkpoint / "model.safetensors")
    assert not torch.equal(raw[next(iter(pipeline.unet.state_dict()))], ema["shadow.0"])


def test_ema_constant_decay_matches_the_running_average():
    parameter = torch.nn.Parameter(torch.zeros(3))
    ema = EMA([parameter], EMAConfig(decay=0.9, warmup="none"))
    expected = parameter.detach().clone()
    for value in (1.0, 2.0, -1.0, 4.0):
        parameter.data.fill_(value)
        ema.step([parameter])
        expected = 0.9 * expected + 0.1 * parameter.detach()
    torch.testing.assert_close(ema.shadow_params[0], expected)

    ramped = EMA([parameter], EMAConfig(decay=0.9, warmup="diffusers"))
    assert [ramped.get_decay(s) for s in (1, 2, 100)] == [0.0, 2 / 11, 0.9]  # (1 + s) / (10 + s), capped


def test_non_finite_loss_stops_before_the_optimizer_step_and_the_checkpoint(tmp_path, monkeypatch):
    class BreaksAtStep3(UNet2DModel):
        calls = 0

        def forward(self, *args, **kwargs):
            output = super().forward(*args, **kwargs)
            BreaksAtStep3.calls += 1
            if BreaksAtStep3.calls == 3:
                output = (output[0] * float("nan"),)
            return output

    family = ModelFamily(
        name="breaks_at_step_3",
        model_cls=BreaksAtStep3,
        build=table_builder(BreaksAtStep3, UNET2D_PRESETS),
        preset_names=lambda: list(UNET2D_PRESETS),
        data_kwargs=unet2d_data_kwargs,
        objectives=("eps",),
        data_kinds=("image",),
        class_labels="ignored",
        export_pipeline=FAMILIES["unet2d"].export_pipeline,
    )
    monkeypatch.setitem(FAMILIES, family.name, family)
    config = tiny_config("unet2d", tmp_path, "--model.family", family.name, "--checkpoint.every_steps", "1")
    config.checkpoint.total_limit = None
    with pytest.raises(NonFiniteLossError, match="the loss is nan at step 3"):
        run_in_process(config)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [1, 2]
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())


def test_data_implied_arguments_cannot_be_contradicted(tmp_path):
    config = tiny_config("unet2d", tmp_path, "--model.kwargs.in_channels", "3")
    with pytest.raises(
        ValueError,
        match=r"model.kwargs.in_channels=3 contradicts the data/objective, which need in_channels=1",
    ):
        run_in_process(config)


def test_wandb_goes_offline_without_a_key(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"


def test_trackers_log_scalars_and_sample_grids(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = tiny_config(
        "unet2d",
        tmp_path,
        "--max_steps", "2",
        "--logging.trackers", "[jsonl, tensorboard, wandb]",
        "--logging.sample_every_steps", "2",
    )  # fmt: skip
    run_in_process(config)
    assert list((tmp_path / "logs").rglob("events.out.tfevents.*"))
    assert list((tmp_path / "wandb").glob("offline-run-*"))
    assert (tmp_path / "samples" / "samples-0000002.png").is_file()


def test_a_failing_tracker_only_warns(tmp_path, monkeypatch):
    import wandb

    def refuse(*args, **kwargs):
        raise RuntimeError("no route to host")

    monkeypatch.setattr(wandb, "init", refuse)
    config = tiny_config("unet2d", tmp_path, "--max_steps", "2", "--logging.trackers", "[wandb, jsonl]")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_in_process(config)
    assert result.steps == 2 and sorted(logged_losses(tmp_path)) == [1, 2]
    assert any("tracker 'wandb' could not start" in str(w.message) for w in caught)


def test_accumulation_bf16_and_checkpointing_step_the_schedule_once_per_optimizer_step(tmp_path):
    config = tiny_config(
        "unet2d",
        tmp_path,
        "--max_steps", "2",
        "--mixed_precision", "bf16",
        "--model.gradient_checkpointing", "true",
        "--optim.gradient_accumulation_steps", "2",
        "--optim.lr_schedule", "constant_with_warmup",
        "--optim.warmup_steps", "4",
    )  # fmt: skip
    result = run_in_process(config)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # Linear warm-up over 4 optimizer steps: the LR after step s is lr * s / 4, whatever the accumulation.
    assert [r["lr"] for r in records] == pytest.approx([2e-3 * s / 4 for s in (1, 2)])
    state = json.loads((result.checkpoint / "training_state.json").read_text())
    assert state["data_position"] == {"epoch": 0, "batch": 4}  # two micro-batches per step
    assert all(math.isfinite(r["loss"]) for r in records)


def test_tiny_dit_learns_with_label_dropout_and_exports_a_guided_pipeline(tmp_path):
    import ssmgen.pipelines  # noqa: F401  (registers the ssmgen pipeline classes with diffusers)

    result = run_in_process(tiny_config("dit", tmp_path, "--max_steps", "12"))
    losses = logged_losses(tmp_path)
    assert sum(losses[s] for s in (10, 11, 12)) < 0.8 * sum(losses[s] for s in (1, 2, 3))
    pipeline = DiffusionPipeline.from_pretrained(result.pipeline)
    assert pipeline.scheduler.config.variance_type == "learned_range"  # eps_vlb samples with its variance
    assert pipeline.num_classes == 10
    out = pipeline(
        class_labels=[3, "7"],
        guidance_scale=2.0,
        num_inference_steps=4,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert out.shape == (2, 8, 8, 1) and np.isfinite(out).all()


def test_dit_embedders_keep_the_null_row_but_never_drop_labels_themselves():
    model = build_dit("tiny", {"sample_size": 8, "in_channels": 1, "out_channels": 2, "num_embeds_ada_norm": 10})
    model.train()
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([1, 2, 3, 4])
    labels = torch.tensor([0, 1, 2, 3])
    torch.testing.assert_close(model(x, t, labels).sample, model(x, t, labels).sample)  # no random drops
    null = model(x, t, torch.full((4,), 10)).sample  # row num_classes exists: the null class
    assert not torch.allclose(null, model(x, t, labels).sample)


def test_drop_labels_uses_the_null_class():
    labels = torch.arange(10)
    info = DataInfo("image", (1, 8, 8), tuple("0123456789"))
    assert drop_labels(labels, 0.0, info).equal(labels)
    torch.manual_seed(0)
    dropped = drop_labels(labels.repeat(100), 0.25, info)
    is_null = dropped == 10
    assert ((dropped == labels.repeat(100)) | is_null).all()
    assert 0.18 < is_null.float().mean().item() < 0.32


def test_lamamba_diff_trains_class_conditional_and_unconditional(tmp_path):
    import ssmgen.pipelines  # noqa: F401  (registers the ssmgen pipeline classes with diffusers)

    result = run_in_process(tiny_config("lamamba_diff", tmp_path / "digits", "--max_steps", "3"))
    pipeline = DiffusionPipeline.from_pretrained(result.pipeline)
    assert pipeline.model.config.num_classes == 10 and pipeline.model.config.learn_sigma
    out = pipeline(class_labels=[1, 2], num_inference_steps=2, guidance_scale=2.0, output_type="np").images
    assert out.shape == (2, 8, 8, 1)

    rng = np.random.default_rng(0)
    (tmp_path / "faces").mkdir()
    for k in range(8):  # a flat folder: unconditional data
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "faces" / f"{k}.png")
    overrides = ["--data.dataset", "image_folder", "--data.path", str(tmp_path / "faces")]
    overrides += ["--data.batch_size", "4", "--max_steps", "1", "--objective.name", "eps"]
    result = run_in_process(tiny_config("lamamba_diff", tmp_path / "faces_run", *overrides))
    pipeline = DiffusionPipeline.from_pretrained(result.pipeline)
    assert pipeline.model.config.num_classes == 0 and not pipeline.model.config.learn_sigma
    assert pipeline(batch_size=2, num_inference_steps=2, output_type="np").images.shape == (2, 8, 8, 3)
