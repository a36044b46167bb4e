"""The Triton kernels against the reference, run by Triton's interpreter on CPU.

``TRITON_INTERPRET=1`` must be set before the kernel module is imported (conftest.py does it
when no GPU is present). The interpreter runs every program step by step in Python, so the
shapes are tiny and the recompute chunk is lowered to 8 steps to cross chunk boundaries.
"""

import os

import pytest
import torch
from scan_cases import make_scan_inputs
from test_kernels_selective_scan import TOLERANCES, assert_close_to_reference

from ssmgen.kernels import multi_direction_scan, scan_order, stack_scan_orders

triton_scan = pytest.importorskip("ssmgen.kernels.triton_scan", reason="triton is not installed")
pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1",
    reason="needs a GPU or TRITON_INTERPRET=1",
)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True)
def short_chunks(monkeypatch):
    monkeypatch.setattr(triton_scan, "CHUNK", 8)


def on_device(inputs):
    return {k: v.to(DEVICE) if v is not None else None for k, v in inputs.items()}


@pytest.mark.parametrize(
    "case",
    [
        dict(length=1),
        dict(length=19, groups=2),
        dict(length=16, variable=False),
        dict(length=13, with_z=False, with_D=False, with_bias=False, with_initial_state=False),
    ],
    ids=["L1", "grouped-3-chunks", "time-invariant-2-chunks", "bare"],
)
def test_triton_matches_reference(case):
    inputs = on_device(make_scan_inputs(batch=2, dim=8, d_state=4, **case))
    assert_close_to_reference("triton", inputs, (1e-5, 1e-5))


def test_triton_half_precision():
    inputs = on_device(make_scan_inputs(batch=1, dim=8, length=11, dtype=torch.float16))
    assert_close_to_reference("triton", inputs, TOLERANCES[torch.float16])


def test_triton_multi_direction_reads_through_the_tables():
    """K = 2 orders in one launch equal the gather-based torch path, outputs and gradients."""
    height, width, dim, N = 3, 4, 8, 4
    orders = stack_scan_orders((scan_order("row_snake", height, width), scan_order("col_reverse", height, width)))
    gen = torch.Generator().manual_seed(0)
    L, K = height * width, 2
    tensors = {
        "u": torch.randn(1, dim, L, generator=gen),
        "delta": torch.randn(1, K * dim, L, generator=gen) * 0.5,
        "A": -torch.rand(K * dim, N, generator=gen) - 0.2,
        "B": torch.randn(1, K, N, L, generator=gen),
        "C": torch.randn(1, K, N, L, generator=gen),
        "D": torch.randn(K * dim, generator=gen),
        "delta_bias": torch.randn(K * dim, generator=gen) * 0.1,
    }
    results = {}
    for backend in ("torch", "triton"):
        leaves = {k: v.to(DEVICE).requires_grad_() for k, v in tensors.items()}
        out = multi_direction_scan(orders=orders, backend=backend, **leaves)
        (out * torch.arange(out.numel(), device=DEVICE).view_as(out).sin()).sum().backward()
        results[backend] = (out.detach(), {k: v.grad for k, v in leaves.items()})
    torch.testing.assert_close(results["triton"][0], results["torch"][0], rtol=1e-5, atol=1e-5)
    for name, grad in results["torch"][1].items():
        torch.testing.assert_close(results["triton"][1][name], grad, rtol=1e-4, atol=1e-4, msg=name)
