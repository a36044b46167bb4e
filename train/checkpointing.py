"""Checkpoints that survive a crash: ``checkpoint-{step}`` folders written atomically.

A checkpoint is written into ``.tmp-checkpoint-{step}`` (accelerate's ``save_state``: model, optimizer, grad
scaler, every process's RNG states; plus the EMA and ``training_state.json`` with the step, the data position
and the LR schedule), its files are fsync'ed, and only then is the folder renamed to ``checkpoint-{step}``. A
run killed at any moment leaves either a complete ``checkpoint-*`` or a ``.tmp-*`` folder that resuming
ignores and the next write of that step replaces.

Nothing here unpickles arbitrary objects: weights are safetensors, the state is JSON, and accelerate loads its
optimizer/RNG files with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accelerate import Accelerator

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TEMPORARY_PREFIX = ".tmp-"
TRAINING_STATE = "training_state.json"
WRITE_DELAY_ENV = "SSMGEN_CHECKPOINT_WRITE_DELAY"
"""Fault injection for tests: ``"STEP:SECONDS"`` pauses in the write of checkpoint STEP, before the rename."""


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``output_dir`` as (step, folder), oldest first; temporary folders ignored."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for entry in output_dir.iterdir():
        match = CHECKPOINT_PATTERN.match(entry.name)
        if match and entry.is_dir() and (entry / TRAINING_STATE).is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def resolve_resume(resume: str | None, output_dir: str | Path) -> Path | None:
    """The checkpoint ``resume`` names: ``None``, ``"latest"`` (``None`` if there is none) or a folder."""
    if resume is None:
        return None
    if resume == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1][1] if checkpoints else None
    folder = Path(resume)
    if not CHECKPOINT_PATTERN.match(folder.name) or not (folder / TRAINING_STATE).is_file():
        raise ValueError(
            f"resume: {resume!r} is not a complete checkpoint folder "
            f"(checkpoint-<step> with {TRAINING_STATE}); "
            "use 'latest' or one of the checkpoint-* folders in output_dir"
        )
    return folder


def resume_point(resume: str | None, output_dir: str | Path) -> Path | None:
    """:func:`resolve_resume`, refusing a fresh start over another run's checkpoints in ``output_dir``."""
    if resume is None and list_checkpoints(output_dir):
        raise ValueError(
            f"resume: output_dir {str(output_dir)!r} already holds checkpoints; pass --resume latest to "
            "continue that run, or choose another output_dir"
        )
    return resolve_resume(resume, output_dir)


def fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder`` and the folder entries themselves to disk."""
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_directory(Path(root))


def fsync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def injected_write_delay(step: int) -> float:
    """Seconds to pause inside the write of checkpoint ``step`` (see ``WRITE_DELAY_ENV``)."""
    value = os.environ.get(WRITE_DELAY_ENV)
    if not value:
        return 0.0
    target, seconds = value.split(":")
    return float(seconds) if int(target) == step else 0.0


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: str | Path,
    step: int,
    training_state: dict[str, Any],
    save_extra: Callable[[Path], None],
    total_limit: int | None,
) -> Path:
    """Write ``checkpoint-{step}`` atomically; every process must call this.

    ``save_extra(folder)`` runs on every process and writes what accelerate does not know about (the EMA).
    Returns the final folder.
    """
    output_dir = Path(output_dir)
    final = output_dir / f"checkpoint-{step}"
    temporary = output_dir / f"{TEMPORARY_PREFIX}checkpoint-{step}"
    if accelerator.is_main_process and temporary.exists():
        shutil.rmtree(temporary)  # left by a run killed while writing this step
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    save_extra(temporary)
    if accelerator.is_main_process:
        (temporary / TRAINING_STATE).write_text(json.dumps(training_state, indent=1))
    time.sleep(injected_write_delay(step))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        replace_folder(temporary, final)
        prune_checkpoints(output_dir, total_limit)
    accelerator.wait_for_everyone()
    return final


def prune_checkpoints(output_dir: str | Path, total_limit: int | None) -> None:
    """Delete the oldest checkpoints so that at most ``total_limit`` remain."""
    if total_limit is None:
        return
    checkpoints = list_checkpoints(output_dir)
    for _, folder in checkpoints[: max(0, len(checkpoints) - total_limit)]:
        shutil.rmtree(folder)


def load_training_state(folder: str | Path) -> dict[str, Any]:
    """The JSON state written next to accelerate's files."""
    return json.loads((Path(folder) / TRAINING_STATE).read_text())


def write_folder_atomically(final: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_folder)`` and rename the result to ``final`` (replacing an older one)."""
    final = Path(final)
    temporary = final.with_name(TEMPORARY_PREFIX + final.name)
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir(parents=True)
    write(temporary)
    replace_folder(temporary, final)
    return final


def replace_folder(temporary: Path, final: Path) -> None:
    """Make the complete ``temporary`` folder durable and rename it to ``final``.

    An existing ``final`` (a checkpoint being rewritten after resuming from an older one, or the previous
    pipeline export) is first moved aside, so ``final`` never holds a mix of old and new files.
    """
    fsync_tree(temporary)
    if final.exists():
        retired = final.with_name(f"{TEMPORARY_PREFIX}old-{final.name}")
        if retired.exists():
            shutil.rmtree(retired)
        os.rename(final, retired)
        shutil.rmtree(retired)
    os.rename(temporary, final)
    fsync_directory(final.parent)
