"""The training loop every ssmgen model shares, in one function: :func:`train`.

It reads top to bottom: accelerator and seeds, data, objective and model, optimizer and schedule, EMA, resume,
trackers, then the steps (micro-batches with gradient accumulation, clipping, optimizer, schedule, EMA), with
logging, checkpoints, samples and pipeline exports at their intervals, and a summary at the end.

What is specific to a model family (building the model, turning a data batch into model inputs, the loss,
the pipeline export, the samples) goes through its :class:`~ssmgen.train.registry.FamilyHooks`:
:class:`ImageHooks` for the image families, the family's own hooks otherwise (motion).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, ProjectConfiguration, set_seed
from diffusers import DiffusionPipeline
from diffusers.optimization import get_scheduler
from tqdm.auto import tqdm

from ssmgen.data.images import random_flip
from ssmgen.runtime import multi_process_without_gpu

from .checkpointing import load_training_state, resume_point, save_checkpoint, write_folder_atomically
from .config import TrainConfig, save_config, to_dict
from .data import DataInfo, DataPosition, SeededItems, ShardedEpochBatches, build_dataset, make_dataloader
from .ema import EMA
from .objectives import Objective, build_objective
from .registry import (
    FamilyHooks,
    ModelFamily,
    build_model,
    image_model_kwargs,
    predict,
    uses_class_labels,
    validate_config,
)
from .trackers import METRICS_FILE, Trackers, image_grid

PIPELINE_DIR = "pipeline"


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm stopped being finite; the run stops before the optimizer step."""


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    seconds: float
    final_loss: float | None
    checkpoint: Path | None
    pipeline: Path | None


def train(config: TrainConfig) -> TrainResult:
    """Train ``config.model`` on ``config.data``; return where the checkpoint and pipeline were written."""
    family = validate_config(config)
    output_dir = Path(config.output_dir)
    resume_from = resume_point(config.resume, output_dir)

    # 1. Accelerator, output folder and seeds (process i uses seed + i; the data order uses seed everywhere).
    accelerator = Accelerator(
        cpu=multi_process_without_gpu(),
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.optim.gradient_accumulation_steps,
        project_config=ProjectConfiguration(project_dir=str(output_dir)),
        dynamo_backend="inductor" if config.model.compile else "no",
        step_scheduler_with_optimizer=False,
    )
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, output_dir / "train_config.yaml")
    set_seed(config.seed, device_specific=True)

    # 2. Data, objective, the family's hooks (with any frozen parts), model.
    dataset, data_info = build_dataset(config.data, config.seed)
    objective = build_objective(config.objective)
    hooks = (family.hooks or ImageHooks)(config, data_info, objective, family)
    model = hooks.build_model()
    if config.model.gradient_checkpointing:
        if not model._supports_gradient_checkpointing:
            raise ValueError(f"model.gradient_checkpointing: {type(model).__name__} does not support it")
        model.enable_gradient_checkpointing()
    model.train()
    num_parameters = sum(p.numel() for p in model.parameters())

    # 3. Optimizer and learning-rate schedule (stepped once per optimizer step, saved in training_state.json).
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.optim.lr,
        betas=config.optim.betas,
        weight_decay=config.optim.weight_decay,
        eps=config.optim.eps,
    )
    lr_scheduler = get_scheduler(
        config.optim.lr_schedule,
        optimizer,
        num_warmup_steps=config.optim.warmup_steps,
        num_training_steps=config.max_steps,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    check_ema_supported(accelerator)
    ema = EMA(model.parameters(), config.ema)
    # Under FSDP each process holds (and checkpoints) the EMA of its own parameter shards.
    ema_shard = accelerator.process_index if accelerator.distributed_type == DistributedType.FSDP else None

    def save_ema(folder: Path) -> None:
        if ema_shard is not None or accelerator.is_main_process:
            ema.save(folder, shard=ema_shard)

    # 4. Resume: weights, optimizer, RNG states (accelerate), EMA, step, data position, LR schedule.
    step, position = 0, DataPosition()
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        ema.load(resume_from, shard=ema_shard)
        state = load_training_state(resume_from)
        step, position = state["step"], DataPosition(**state["data_position"])
        lr_scheduler.load_state_dict(state["lr_scheduler"])
    batches = ShardedEpochBatches(
        len(dataset),
        config.data.batch_size,
        accelerator.num_processes,
        accelerator.process_index,
        config.seed,
        position,
        keyed=isinstance(dataset, SeededItems),
    )
    loader = iter(make_dataloader(dataset, batches, config.data.num_workers, accelerator.device.type == "cuda"))

    # 5. Trackers and progress bar.
    run_name = config.logging.run_name or output_dir.name
    trackers = Trackers(
        config.logging.trackers,
        output_dir,
        config.logging.project,
        run_name,
        to_dict(config),
        accelerator.is_main_process,
    )
    global_batch = config.data.batch_size * accelerator.num_processes * config.optim.gradient_accumulation_steps
    accelerator.print(
        f"ssmgen.train: {family.name} ({num_parameters / 1e6:.2f}M parameters) on {config.data.dataset} "
        f"({len(dataset)} examples {tuple(data_info.sample_shape)}), objective {objective.name}, "
        f"{accelerator.num_processes} process(es) [{accelerator.distributed_type.value}], "
        f"global batch {global_batch}, "
        + (f"resuming from {resume_from} at step {step}" if resume_from else "starting at step 0")
    )
    trackers_used = trackers.describe()
    progress_bar = tqdm(
        total=config.max_steps,
        initial=step,
        disable=not accelerator.is_main_process,
        desc="train",
        unit="step",
    )

    # 6. The steps.
    start_time, start_step = time.perf_counter(), step
    window = LossWindow(start_step)
    final_checkpoint, final_pipeline = resume_from, None
    try:
        while step < config.max_steps:
            # One optimizer step: accumulate gradients over micro-batches, clip, update, schedule, EMA.
            micro_losses, micro_metrics = [], []
            for _ in range(config.optim.gradient_accumulation_steps):
                batch = hooks.prepare_batch(next(loader), accelerator.device)
                position.advance(batches.batches_per_epoch)
                with accelerator.accumulate(model):
                    loss, metrics = hooks.loss(model, batch)
                    global_loss = accelerator.reduce(loss.detach().float(), reduction="mean")
                    micro_losses.append(finite_or_stop(global_loss, "loss", step + 1))
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        grad_norm = clip_gradients(accelerator, model, config, step + 1)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                micro_metrics.append(
                    {k: accelerator.reduce(v.float(), reduction="mean").item() for k, v in metrics.items()}
                )
            if not accelerator.optimizer_step_was_skipped:
                lr_scheduler.step()
            ema.step(model.parameters())
            step += 1
            progress_bar.update(1)
            window.add(mean(micro_losses), {k: mean([m[k] for m in micro_metrics]) for k in micro_metrics[0]})

            if step % config.logging.every_steps == 0 or step == config.max_steps:
                logs = window.flush() | {
                    "lr": lr_scheduler.get_last_lr()[0],
                    "grad_norm": grad_norm,
                    "ema_decay": ema.cur_decay_value or 0.0,
                    "epoch": position.epoch + position.batch / batches.batches_per_epoch,
                    "steps_per_second": window.steps_per_second(step),
                }
                logs["samples_per_second"] = logs["steps_per_second"] * global_batch
                trackers.log(logs, step)
                progress_bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs['lr']:.2e}")
            is_last = step == config.max_steps
            if is_last or every(step, config.checkpoint.every_steps):
                training_state = {
                    "step": step,
                    "data_position": {"epoch": position.epoch, "batch": position.batch},
                    "lr_scheduler": lr_scheduler.state_dict(),
                }
                final_checkpoint = save_checkpoint(
                    accelerator, output_dir, step, training_state, save_ema, config.checkpoint.total_limit
                )
            wants_samples = every(step, config.logging.sample_every_steps) or (
                is_last and config.logging.sample_every_steps > 0
            )
            wants_export = is_last or every(step, config.checkpoint.export_every_steps)
            if wants_samples or wants_export:
                pipeline = ema_pipeline(accelerator, model, ema, hooks)
                if pipeline is not None and wants_samples:
                    hooks.log_samples(pipeline, trackers, step, accelerator.device)
                if pipeline is not None and wants_export:
                    folder = output_dir / (PIPELINE_DIR if is_last else f"{PIPELINE_DIR}-{step}")
                    final_pipeline = write_folder_atomically(
                        folder, lambda tmp, p=pipeline: save_pipeline(p, config, tmp)
                    )
                accelerator.wait_for_everyone()
    finally:
        progress_bar.close()
        trackers.finish()

    # 7. Summary.
    seconds = time.perf_counter() - start_time
    result = TrainResult(output_dir, step, seconds, window.last_loss, final_checkpoint, final_pipeline)
    if accelerator.is_main_process:
        print(summary(result, step - start_step, global_batch, trackers_used))
    accelerator.end_training()
    return result


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def check_ema_supported(accelerator: Accelerator) -> None:
    """The EMA copies every parameter a process holds, which ZeRO-3's partitioned parameters break."""
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        stage = accelerator.state.deepspeed_plugin.deepspeed_config["zero_optimization"]["stage"]
        if stage == 3:
            raise ValueError(
                "DeepSpeed ZeRO stage 3 partitions the parameters, which the EMA cannot follow; "
                "use ZeRO stage 1 or 2, or FSDP (train/configs/accelerate/fsdp.yaml)"
            )


class ImageHooks:
    """The image families' recipe: model sized by ``family.data_kwargs``, flips and label dropout, the
    objective's denoising loss with class labels, ``family.export_pipeline``, sample grids."""

    def __init__(self, config: TrainConfig, data_info: DataInfo, objective: Objective, family: ModelFamily):
        self.family, self.config, self.data_info, self.objective = family, config, data_info, objective

    def build_model(self) -> torch.nn.Module:
        implied = image_model_kwargs(self.family, self.config, self.data_info, self.objective)
        return build_model(self.family, self.config, implied)

    def prepare_batch(self, batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
        return prepare_batch(batch, device, self.family, self.config, self.data_info)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]):
        return self.objective.loss(partial(predict, model, batch=batch), batch["sample"])

    def export_pipeline(self, model: torch.nn.Module) -> DiffusionPipeline:
        pipeline = self.family.export_pipeline(model, self.objective, self.data_info)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    def log_samples(self, pipeline: DiffusionPipeline, trackers: Trackers, step: int, device: torch.device) -> None:
        trackers.log_image("samples", sample_grid(pipeline, self.family, self.data_info, self.config, device), step)


def prepare_batch(
    batch: dict[str, torch.Tensor],
    device: torch.device,
    family: ModelFamily,
    config: TrainConfig,
    data: DataInfo,
) -> dict[str, torch.Tensor]:
    """Move a batch to the device, flip its images and drop its labels (each draw from the global RNG)."""
    batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
    if config.data.random_flip:
        batch["sample"] = random_flip(batch["sample"])
    if not uses_class_labels(family, data):
        batch.pop("class_labels", None)
    elif not family.drops_conditions_itself:
        batch["class_labels"] = drop_labels(batch["class_labels"], config.model.cond_dropout_prob, data)
    return batch


def finite_or_stop(value: torch.Tensor, what: str, step: int) -> float:
    """``value`` as a float, or :class:`NonFiniteLossError` naming ``what`` and the step."""
    if not torch.isfinite(value):
        raise NonFiniteLossError(f"the {what} is {value.item()} at step {step}; stopping")
    return value.item()


def clip_gradients(accelerator: Accelerator, model: torch.nn.Module, config: TrainConfig, step: int) -> float:
    """Clip to ``optim.max_grad_norm`` (if set) and return the norm before clipping.

    A non-finite norm stops the run, except with fp16, where the gradient scaler skips that step by design.
    DeepSpeed clips inside its engine and reports no norm here (NaN is logged).
    """
    norm = accelerator.clip_grad_norm_(model.parameters(), config.optim.max_grad_norm or math.inf)
    if norm is None:
        return math.nan
    if config.mixed_precision == "fp16":
        return norm.item()
    return finite_or_stop(norm, "gradient norm", step)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def every(step: int, interval: int) -> bool:
    return interval > 0 and step % interval == 0


def drop_labels(labels: torch.Tensor, probability: float, data_info: DataInfo) -> torch.Tensor:
    """Replace each label by the null class ``num_classes`` with ``probability`` (for CFG)."""
    if probability == 0.0:
        return labels
    drop = torch.rand(labels.shape[0], device=labels.device) < probability
    return torch.where(drop, torch.full_like(labels, data_info.num_classes), labels)


class LossWindow:
    """Averages of the loss and objective metrics over the steps since the last log."""

    def __init__(self, start_step: int):
        self.losses: list[float] = []
        self.metrics: dict[str, list[float]] = {}
        self.last_loss: float | None = None
        self.last_time, self.last_step = time.perf_counter(), start_step

    def add(self, loss: float, metrics: dict[str, float]) -> None:
        self.losses.append(loss)
        self.last_loss = loss
        for key, value in metrics.items():
            self.metrics.setdefault(key, []).append(value)

    def flush(self) -> dict[str, float]:
        logs = {"loss": sum(self.losses) / len(self.losses)}
        logs |= {key: sum(values) / len(values) for key, values in self.metrics.items()}
        self.losses, self.metrics = [], {}
        return logs

    def steps_per_second(self, step: int) -> float:
        now = time.perf_counter()
        rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        return rate


def ema_pipeline(accelerator: Accelerator, model: torch.nn.Module, ema: EMA, hooks: FamilyHooks) -> object | None:
    """The family's pipeline around a fresh copy of the model holding the EMA weights.

    Every process must call this (under FSDP/DeepSpeed gathering the full weights is collective); the pipeline
    is returned on the main process, ``None`` elsewhere.
    """
    ema.store(model.parameters())
    ema.copy_to(model.parameters())
    # Copies: without sharding the state dict holds references to the parameters that `restore` overwrites.
    state_dict = {key: value.to("cpu", copy=True) for key, value in accelerator.get_state_dict(model).items()}
    ema.restore(model.parameters())
    if not accelerator.is_main_process:
        return None
    trained = accelerator.unwrap_model(model, keep_torch_compile=False)
    exported = type(trained).from_config(trained.config)
    # A compiled model's state dict names its weights "_orig_mod.<name>".
    exported.load_state_dict({key.removeprefix("_orig_mod."): value for key, value in state_dict.items()})
    exported.eval()
    return hooks.export_pipeline(exported)


def sample_grid(
    pipeline: DiffusionPipeline,
    family: ModelFamily,
    data_info: DataInfo,
    config: TrainConfig,
    device: torch.device,
) -> np.ndarray:
    """A (H, W, C) grid in [0, 1] of ``logging.num_samples`` images from the pipeline, with a fixed seed."""
    pipeline.to(device)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    n, steps = config.logging.num_samples, config.logging.sample_inference_steps
    if uses_class_labels(family, data_info):
        labels = [i % data_info.num_classes for i in range(n)]
        images = pipeline(
            class_labels=labels,
            num_inference_steps=steps,
            guidance_scale=config.logging.sample_guidance_scale,
            generator=generator,
            output_type="np",
        ).images
    else:
        images = pipeline(batch_size=n, num_inference_steps=steps, generator=generator, output_type="np").images
    pipeline.to("cpu")
    return image_grid(images)


def save_pipeline(pipeline: DiffusionPipeline, config: TrainConfig, folder: Path) -> None:
    """``save_pretrained`` (safetensors) plus the training config for provenance."""
    pipeline.save_pretrained(folder, safe_serialization=True)
    save_config(config, folder / "train_config.yaml")


def summary(result: TrainResult, steps_run: int, global_batch: int, trackers: str) -> str:
    rate = steps_run / max(result.seconds, 1e-9)
    lines = [
        f"ssmgen.train: done, {result.steps} steps ({steps_run} in this run) "
        f"in {format_seconds(result.seconds)} "
        f"({rate:.2f} steps/s, {rate * global_batch:.1f} samples/s)",
        f"  final loss  {result.final_loss:.5f}" if result.final_loss is not None else "  final loss  (no step run)",
        f"  checkpoint  {result.checkpoint}",
        f"  pipeline    {result.pipeline}  (DiffusionPipeline.from_pretrained)",
        f"  trackers    {trackers}; metrics in {result.output_dir / METRICS_FILE}"
        if "jsonl" in trackers
        else f"  trackers    {trackers}",
    ]
    return "\n".join(lines)


def format_seconds(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"
