"""Experiment trackers: a JSON-lines file, TensorBoard and Weights & Biases, behind one small interface.

Trackers run on the main process only. None of them may stop a run: a backend that fails to start or to log
is reported once as a warning and switched off. wandb runs offline by itself when there is no API key or no
route to its server (``WANDB_MODE`` set by the user always wins), so it never prompts for a login or hangs.
"""

from __future__ import annotations

import json
import math
import netrc
import os
import socket
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch

METRICS_FILE = "metrics.jsonl"


class JsonlTracker:
    """Appends ``{"step": s, **metrics}`` lines to ``metrics.jsonl`` and saves image grids as PNG files."""

    name = "jsonl"

    def __init__(self, output_dir: Path):
        self.output_dir = output_dir
        self.file = open(output_dir / METRICS_FILE, "a")

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.file.write(json.dumps({"step": step, **metrics}) + "\n")
        self.file.flush()

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        from PIL import Image

        folder = self.output_dir / "samples"
        folder.mkdir(exist_ok=True)
        Image.fromarray(to_uint8(image).squeeze(-1) if image.shape[-1] == 1 else to_uint8(image)).save(
            folder / f"{tag.replace('/', '_')}-{step:07d}.png"
        )

    def finish(self) -> None:
        self.file.close()


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, output_dir: Path, run_name: str, config: dict[str, Any]):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(output_dir / "logs" / run_name))
        self.writer.add_text("config", "```yaml\n" + json.dumps(config, indent=1) + "\n```", 0)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def finish(self) -> None:
        self.writer.close()


class WandbTracker:
    name = "wandb"

    def __init__(self, output_dir: Path, project: str, run_name: str, config: dict[str, Any]):
        import wandb

        self.wandb = wandb
        mode = wandb_mode()
        self.run = wandb.init(
            project=project,
            name=run_name,
            config=config,
            dir=str(output_dir),
            mode=mode,
            settings=wandb.Settings(init_timeout=60, silent=True),
        )
        self.mode = mode

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        self.run.log({tag: self.wandb.Image(to_uint8(image))}, step=step)

    def finish(self) -> None:
        self.run.finish()


def wandb_mode() -> str:
    """``WANDB_MODE`` if set, else ``online`` with an API key and a reachable server, else ``offline``."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    if not (os.environ.get("WANDB_API_KEY") or has_netrc_entry(host)):
        return "offline"
    return "online" if server_reachable(host) else "offline"


def has_netrc_entry(host: str) -> bool:
    """Whether ``~/.netrc`` (where ``wandb login`` stores the key) has an entry for ``host``."""
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def server_reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 (rounded)."""
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, columns: int | None = None) -> np.ndarray:
    """(N, H, W, C) images in [0, 1] -> one (H', W', C) grid with a 2-pixel border."""
    from torchvision.utils import make_grid

    tensor = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    columns = columns or math.ceil(math.sqrt(len(images)))
    return make_grid(tensor, nrow=columns, padding=2, pad_value=1.0).permute(1, 2, 0).numpy()


class Trackers:
    """Fan-out to the enabled trackers; a no-op on processes other than the main one."""

    def __init__(
        self,
        names: list[str],
        output_dir: str | Path,
        project: str,
        run_name: str,
        config: dict[str, Any],
        is_main_process: bool,
    ):
        self.backends: list[Any] = []
        if not is_main_process:
            return
        output_dir = Path(output_dir)
        makers = {
            "jsonl": lambda: JsonlTracker(output_dir),
            "tensorboard": lambda: TensorBoardTracker(output_dir, run_name, config),
            "wandb": lambda: WandbTracker(output_dir, project, run_name, config),
        }
        for name in names:
            try:
                self.backends.append(makers[name]())
            except Exception as error:  # a tracker must never stop training
                warnings.warn(f"tracker {name!r} could not start and is disabled: {error}", stacklevel=2)

    def describe(self) -> str:
        return (
            ", ".join(f"{b.name} ({b.mode})" if isinstance(b, WandbTracker) else b.name for b in self.backends)
            or "none"
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.call("log", metrics, step)

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        """Log one (H, W, C) image in [0, 1], e.g. a sample grid."""
        self.call("log_image", tag, image, step)

    def finish(self) -> None:
        self.call("finish")
        self.backends = []

    def call(self, method: str, *args: Any) -> None:
        for backend in list(self.backends):
            try:
                getattr(backend, method)(*args)
            except Exception as error:  # a tracker must never stop training
                warnings.warn(f"tracker {backend.name!r} failed in {method} and is disabled: {error}", stacklevel=3)
                self.backends.remove(backend)
