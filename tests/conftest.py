"""Shared test setup.

Triton reads ``TRITON_INTERPRET`` when a kernel is decorated, so it must be set before
``ssmgen.kernels.triton_scan`` is imported. On a machine without CUDA the Triton kernels can
only run in the interpreter; the README's test command sets the variable explicitly as well.

The tests use tiny tensors, for which one intra-op thread is fastest; on a busy 2-core machine
torch's default of 2 threads made them several times slower (spin-waiting threads).
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
torch.set_num_threads(1)
