"""Causal depthwise conv1d and the multi-direction scan against independent constructions."""

import pytest
import torch

from ssmgen.kernels import (
    causal_conv1d,
    multi_direction_scan,
    scan_order,
    scan_order_from_spec,
    selective_scan,
    stack_scan_orders,
)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_causal_conv1d_matches_mamba_slow_path(width):
    """mamba_simple's slow path: nn.Conv1d with padding K-1, truncated to L, then SiLU."""
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 6, width, groups=6, padding=width - 1)
    x = torch.randn(2, 6, 11)
    expected = torch.nn.functional.silu(conv(x)[..., :11])
    got = causal_conv1d(x, conv.weight, conv.bias, activation="silu")
    torch.testing.assert_close(got, expected)


def test_causal_conv1d_streaming_equals_one_pass():
    torch.manual_seed(0)
    weight, bias, x = torch.randn(5, 4), torch.randn(5), torch.randn(2, 5, 20)
    full = causal_conv1d(x, weight, bias)
    first, state = causal_conv1d(x[..., :7], weight, bias, return_final_state=True)
    second = causal_conv1d(x[..., 7:], weight, bias, initial_state=state)
    torch.testing.assert_close(torch.cat([first, second], -1), full)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(weight=torch.randn(5, 5)), "weight"),
        (dict(bias=torch.randn(4)), "bias"),
        (dict(activation="relu"), "activation"),
        (dict(initial_state=torch.randn(2, 5, 2)), "initial_state"),
    ],
)
def test_causal_conv1d_bad_input(kwargs, argument):
    args = dict(x=torch.randn(2, 5, 8), weight=torch.randn(5, 4)) | kwargs
    with pytest.raises(ValueError, match=argument):
        causal_conv1d(**args)


def test_multi_direction_scan_equals_explicit_per_direction_scans():
    """Each direction: permute tokens, scan with the reference, un-permute; compare to one call."""
    height, width, dim, N = 3, 5, 4, 3
    names = ("row_snake", "col", "row_reverse")
    orders = stack_scan_orders(tuple(scan_order(n, height, width) for n in names))
    K, L = len(names), height * width
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(2, dim, L, generator=gen)
    delta = torch.randn(2, K * dim, L, generator=gen)
    A = -torch.rand(K * dim, N, generator=gen) - 0.1
    B, C = torch.randn(2, K, N, L, generator=gen), torch.randn(2, K, N, L, generator=gen)
    D, bias = torch.randn(K * dim, generator=gen), torch.randn(K * dim, generator=gen)
    got = multi_direction_scan(u, delta, A, B, C, orders, D=D, delta_bias=bias, backend="torch")
    for k in range(K):
        perm = orders.perm[k]
        ch = slice(k * dim, (k + 1) * dim)
        y = selective_scan(
            u[..., perm], delta[:, ch][..., perm], A[ch], B[:, k][..., perm], C[:, k][..., perm], D[ch],
            delta_bias=bias[ch], delta_softplus=True, backend="reference",
        )  # fmt: skip
        expected = torch.empty_like(y)
        expected[..., perm] = y
        torch.testing.assert_close(got[:, k], expected, rtol=1e-5, atol=1e-5)


def test_multi_direction_scan_bad_input():
    orders = stack_scan_orders((scan_order("row", 2, 2),))
    u = torch.randn(1, 4, 4)
    args = dict(
        u=u,
        delta=torch.randn(1, 4, 4),
        A=-torch.ones(4, 2),
        B=torch.randn(1, 1, 2, 4),
        C=torch.randn(1, 1, 2, 4),
    )
    with pytest.raises(ValueError, match="delta"):
        multi_direction_scan(**(args | dict(delta=torch.randn(1, 8, 4))), orders=orders)
    with pytest.raises(ValueError, match="orders.perm"):
        multi_direction_scan(**(args | dict(u=torch.randn(1, 4, 5))), orders=orders)
    with pytest.raises(ValueError, match="B must have shape"):
        multi_direction_scan(**(args | dict(B=torch.randn(1, 2, 4))), orders=orders)


@pytest.mark.parametrize("height, width", [(3, 5), (4, 4)])
def test_multi_direction_scan_gradients_match_the_gather_path(height, width):
    """The torch backend reads/writes through the tables (no permuted copies); its gradients must
    equal autograd through the reference path that gathers into scan order and back."""
    names = ("row_snake", "col_reverse", "zigzag5")
    orders = stack_scan_orders(tuple(scan_order_from_spec(n, height, width) for n in names))
    K, L, dim, N = len(names), height * width, 6, 3
    gen = torch.Generator().manual_seed(1)
    tensors = {
        "u": torch.randn(2, dim, L, generator=gen),
        "delta": torch.randn(2, K * dim, L, generator=gen),
        "A": -torch.rand(K * dim, N, generator=gen) - 0.1,
        "B": torch.randn(2, K, N, L, generator=gen),
        "C": torch.randn(2, K, N, L, generator=gen),
        "D": torch.randn(K * dim, generator=gen),
        "delta_bias": torch.randn(K * dim, generator=gen),
    }
    weight = torch.randn(2, K, dim, L, generator=gen)
    results = {}
    for backend in ("reference", "torch"):
        leaves = {k: v.clone().requires_grad_() for k, v in tensors.items()}
        out = multi_direction_scan(orders=orders, backend=backend, **leaves)
        (out * weight).sum().backward()
        results[backend] = (out.detach(), {k: v.grad for k, v in leaves.items()})
    torch.testing.assert_close(results["torch"][0], results["reference"][0], rtol=1e-5, atol=1e-5)
    for name, grad in results["reference"][1].items():
        torch.testing.assert_close(results["torch"][1][name], grad, rtol=1e-4, atol=1e-4, msg=name)
