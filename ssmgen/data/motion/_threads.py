"""Run small-tensor work on one intra-op thread.

The motion pipeline runs many operations on tensors of a few thousand elements. There, torch's
intra-op thread pool only adds synchronisation, and on a busy machine each parallel region can wait
milliseconds for a time slice (measured: 7x slower feature extraction with 2 threads on 2 loaded cores).
"""

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
