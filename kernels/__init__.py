"""Selective-scan kernels shared by every ssmgen model (reference, PyTorch and Triton backends)."""
