"""Exponential moving average of the weights: diffusers' ``EMAModel``, DiT's constant decay, safe files.

diffusers' ``EMAModel`` never uses a constant decay: without ``use_ema_warmup`` it ramps as
``(1 + s) / (10 + s)``, which only reaches 0.9999 after ~90k steps. DiT, LaMamba-Diff and DiMSUM update with
0.9999 from the first step, so ``warmup="none"`` gives that; ``"diffusers"`` and ``"power"`` keep diffusers'
two schedules. The EMA state is checkpointed as safetensors + JSON, so resuming never unpickles it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file

from .config import EMAConfig


def ema_files(shard: int | None) -> tuple[str, str]:
    """File names of the EMA weights and counters; ``shard`` numbers them per process under FSDP."""
    suffix = "" if shard is None else f"-{shard}"
    return f"ema{suffix}.safetensors", f"ema_state{suffix}.json"


class EMA(EMAModel):
    """``EMAModel`` whose decay follows ``warmup``: ``none`` (constant), ``diffusers`` or ``power``."""

    def __init__(self, parameters: Iterable[torch.nn.Parameter], config: EMAConfig):
        self.warmup: Literal["none", "diffusers", "power"] = config.warmup
        super().__init__(
            parameters,
            decay=config.decay,
            update_after_step=config.update_after_step,
            use_ema_warmup=config.warmup == "power",
            inv_gamma=config.inv_gamma,
            power=config.power,
        )

    def get_decay(self, optimization_step: int) -> float:
        if self.warmup == "none":
            return 0.0 if optimization_step <= self.update_after_step else self.decay
        return super().get_decay(optimization_step)

    def save(self, folder: str | Path, shard: int | None = None) -> None:
        """Write the shadow weights (safetensors) and the counters (JSON) into ``folder``.

        ``shard``: this process's index when the parameters are sharded (FSDP): each process saves its part.
        """
        weights_file, state_file = ema_files(shard)
        folder = Path(folder)
        state = self.state_dict()
        shadow = state.pop("shadow_params")
        save_file(
            {f"shadow.{i}": p.detach().cpu().contiguous() for i, p in enumerate(shadow)},
            folder / weights_file,
        )
        (folder / state_file).write_text(json.dumps(state | {"warmup": self.warmup}, indent=1))

    def load(self, folder: str | Path, shard: int | None = None) -> None:
        """Restore what :meth:`save` wrote, onto the devices of the current shadow weights."""
        weights_file, state_file = ema_files(shard)
        folder = Path(folder)
        state = json.loads((folder / state_file).read_text())
        if state.pop("warmup") != self.warmup:
            raise ValueError(f"ema.warmup differs from the checkpoint in {folder}; resume with the same EMA config")
        tensors = load_file(folder / weights_file)
        if len(tensors) != len(self.shadow_params):
            raise ValueError(
                f"{folder / weights_file} holds {len(tensors)} tensors, "
                f"the model has {len(self.shadow_params)} parameters"
            )
        state["shadow_params"] = [
            tensors[f"shadow.{i}"].to(device=p.device, dtype=p.dtype) for i, p in enumerate(self.shadow_params)
        ]
        self.load_state_dict(state)
