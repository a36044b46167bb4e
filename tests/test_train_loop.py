"""The shared loop in-process: tiny models train, export loadable pipelines, stop on NaN, log to trackers."""

import warnings

import pytest
import torch
from diffusers import DDPMPipeline, DiffusionPipeline, UNet2DModel
from safetensors.torch import load_file
from test_train_support import logged_losses, run_in_process, tiny_config

from ssmgen.train import FAMILIES, NonFiniteLossError
from ssmgen.train.checkpointing import list_checkpoints
from ssmgen.train.config import EMAConfig
from ssmgen.train.ema import EMA
from ssmgen.train.registry import UNET2D_PRESETS, ModelFamily, table_builder, unet2d_data_kwargs
from ssmgen.train.trackers import wandb_mode


def test_tiny_unet2d_learns_and_exports_a_ddpm_pipeline(tmp_path):
    result = run_in_process(
        tiny_config("unet2d", tmp_path, "--max_steps", "10", "--checkpoint.every_steps", "2")
    )
    losses = logged_losses(tmp_path)
    assert sorted(losses) == list(range(1, 11))
    assert sum(losses[s] for s in (8, 9, 10)) < 0.6 * sum(losses[s] for s in (1, 2, 3))
    assert result.steps == 10 and result.checkpoint == tmp_path / "checkpoint-10"
    assert [step for step, _ in list_checkpoints(tmp_path)] == [8, 10]  # total_limit 2

    pipeline = DiffusionPipeline.from_pretrained(result.pipeline)
    assert isinstance(pipeline, DDPMPipeline) and pipeline.scheduler.config.clip_sample
    images = pipeline(
        batch_size=2, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np"
    )
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
        conditioning="none",
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
