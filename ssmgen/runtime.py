"""How work is spread over this machine: intra-op threads and multi-process launches.

- :func:`single_threaded`: small-tensor work runs faster on one intra-op thread; torch's pool only
  adds synchronisation there, and on a busy machine each parallel region can wait milliseconds for
  a time slice (measured: 7x slower motion feature extraction with 2 threads on 2 loaded cores).
- :func:`multi_process_without_gpu`: accelerate needs ``Accelerator(cpu=True)`` to join CPU-only
  processes into one gloo group; without it ``--multi_gpu`` starts N unconnected runs.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def single_threaded() -> Iterator[None]:
    """Set ``torch.set_num_threads(1)`` inside the block and restore the previous count after it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def multi_process_without_gpu() -> bool:
    """A multi-process launch (``accelerate launch --multi_gpu``, torchrun) on a machine without accelerators."""
    has_accelerator = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_accelerator


def training_command(processes: int) -> list[str]:
    """``python`` arguments that start ``ssmgen.train`` in one process, or in ``processes`` joined by
    ``accelerate launch --multi_gpu`` (gloo DDP on a CPU-only machine); append the training arguments."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    launcher = ["-m", "ssmgen.train"]
    if processes == 1:
        return launcher
    return ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes), *launcher]
