"""Shared test setup.

Triton reads ``TRITON_INTERPRET`` when a kernel is decorated, so it must be set before
``ssmgen.kernels.triton_scan`` is imported. On a machine without CUDA the Triton kernels can
only run in the interpreter; the README's test command sets the variable explicitly as well.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
