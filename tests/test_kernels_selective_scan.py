"""selective_scan: the reference against a peer, every backend against the reference."""

import pytest
import torch
from scan_cases import make_scan_inputs, run_with_grads

from ssmgen.kernels import selective_scan, selective_scan_reference

# mamba-ssm's tolerances (tests/ops/test_selective_scan.py): output, then du x2, ddelta x5/x10.
TOLERANCES = {torch.float32: (6e-4, 2e-3), torch.float16: (3e-3, 5e-3), torch.bfloat16: (3e-2, 5e-2)}
FP32_TIGHT = (1e-5, 1e-5)


def assert_close_to_reference(backend, inputs, rtol_atol, delta_softplus=True):
    ref = run_with_grads(selective_scan, inputs, delta_softplus=delta_softplus, backend="reference")
    got = run_with_grads(selective_scan, inputs, delta_softplus=delta_softplus, backend=backend)
    rtol, atol = rtol_atol
    torch.testing.assert_close(got[0], ref[0], rtol=rtol, atol=atol)
    torch.testing.assert_close(got[1], ref[1], rtol=rtol, atol=atol)
    assert got[2].keys() == ref[2].keys()
    for name in ref[2]:
        scale = {"u": 2, "delta": 5}.get(name, 1)
        scale_atol = {"u": 2, "delta": 10}.get(name, 1)
        # Gradients summed over the batch and sequence (A, D, time-invariant B/C) grow with L.
        magnitude = max(1.0, ref[2][name].float().abs().max().item())
        torch.testing.assert_close(
            got[2][name].float(),
            ref[2][name].float(),
            rtol=rtol * scale,
            atol=atol * scale_atol * magnitude,
            msg=lambda m, n=name: f"gradient of {n}: {m}",
        )


def test_reference_matches_mambapy_peer():
    """The oracle itself agrees with an independent implementation (mamba.py's pscan scan)."""
    mamba = pytest.importorskip("mambapy.mamba")
    inp = make_scan_inputs(length=50, with_z=False, with_bias=False, with_initial_state=False)
    delta = torch.nn.functional.softplus(inp["delta"])
    ours = selective_scan_reference(inp["u"], delta, inp["A"], inp["B"], inp["C"], inp["D"])
    peer = mamba.MambaBlock.selective_scan(
        None,
        inp["u"].transpose(1, 2),
        delta.transpose(1, 2),
        inp["A"],
        inp["B"].transpose(1, 2),
        inp["C"].transpose(1, 2),
        inp["D"],
    ).transpose(1, 2)
    torch.testing.assert_close(ours, peer, rtol=1e-5, atol=1e-5)


def test_reference_matches_closed_form_for_constant_inputs():
    """N = 1, constant delta/A/B/C/u: y_t = C B delta u (1 - a^(t+1)) / (1 - a), a = exp(delta A)."""
    L, delta, A, B, C, u = 30, 0.3, -0.7, 1.5, -2.0, 0.8
    out = selective_scan_reference(
        torch.full((1, 1, L), u),
        torch.full((1, 1, L), delta),
        torch.full((1, 1), A),
        torch.full((1, 1), B),
        torch.full((1, 1), C),
    )
    a = torch.exp(torch.tensor(delta * A, dtype=torch.float64))
    t = torch.arange(L, dtype=torch.float64)
    expected = C * B * delta * u * (1 - a ** (t + 1)) / (1 - a)
    torch.testing.assert_close(out[0, 0].double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("length", [1, 7, 64, 100, 257, 1000])
@pytest.mark.parametrize(
    "layout",
    [
        dict(groups=None, variable=True),
        dict(groups=2, variable=True),
        dict(variable=False),
    ],
    ids=["ungrouped", "grouped", "time-invariant"],
)
def test_torch_backend_matches_reference(length, layout):
    assert_close_to_reference("torch", make_scan_inputs(length=length, **layout), FP32_TIGHT)


@pytest.mark.parametrize(
    "options",
    [
        dict(with_z=False),
        dict(with_D=False),
        dict(with_bias=False),
        dict(with_initial_state=False),
        dict(with_z=False, with_D=False, with_bias=False, with_initial_state=False),
    ],
    ids=["no-z", "no-D", "no-bias", "no-initial-state", "bare"],
)
@pytest.mark.parametrize("delta_softplus", [True, False])
def test_torch_backend_optional_inputs(options, delta_softplus):
    inputs = make_scan_inputs(length=45, groups=2, **options)
    if not delta_softplus:  # keep the step sizes positive without the softplus
        inputs["delta"] = inputs["delta"].abs()
        inputs["delta_bias"] = None
    assert_close_to_reference("torch", inputs, FP32_TIGHT, delta_softplus=delta_softplus)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_torch_backend_low_precision(dtype):
    inputs = make_scan_inputs(length=130, groups=2, dtype=dtype)
    assert_close_to_reference("torch", inputs, TOLERANCES[dtype])
    out = selective_scan(**inputs, delta_softplus=True, backend="torch")
    assert out.dtype == dtype


def test_softplus_threshold_passes_large_delta_through():
    inputs = make_scan_inputs(length=20, with_bias=False)
    inputs["delta"] = inputs["delta"] + 25.0  # above the threshold softplus is the identity
    assert_close_to_reference("torch", inputs, FP32_TIGHT)


def test_last_state_has_no_effect_when_unused_and_chunks_compose():
    """Scanning in two pieces, the second from the first's last state, equals one scan."""
    inputs = make_scan_inputs(length=90, groups=2)
    full, last = selective_scan(**inputs, delta_softplus=True, return_last_state=True, backend="torch")
    cut = 41
    first = {k: (v[..., :cut] if k in ("u", "delta", "z") or (k in ("B", "C")) else v) for k, v in inputs.items()}
    head, state = selective_scan(**first, delta_softplus=True, return_last_state=True, backend="torch")
    second = {k: (v[..., cut:] if k in ("u", "delta", "z", "B", "C") else v) for k, v in inputs.items()}
    second["initial_state"] = state
    tail, last2 = selective_scan(**second, delta_softplus=True, return_last_state=True, backend="torch")
    torch.testing.assert_close(torch.cat([head, tail], -1), full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last2, last, rtol=1e-5, atol=1e-5)


def test_torch_backend_is_stable_on_very_long_sequences():
    """L = 65,536 with strong decay (|delta * A| up to ~80 per step): finite outputs and gradients."""
    batch, dim, N, L = 1, 4, 16, 65_536
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(batch, dim, L, generator=gen, requires_grad=True)
    delta = (torch.rand(batch, dim, L, generator=gen) * 5).requires_grad_()
    A = (-torch.arange(1, N + 1).float().repeat(dim, 1)).requires_grad_()
    B = torch.randn(batch, N, L, generator=gen, requires_grad=True)
    C = torch.randn(batch, N, L, generator=gen, requires_grad=True)
    out, last = selective_scan(u, delta, A, B, C, delta_softplus=True, return_last_state=True, backend="torch")
    (out.sum() + last.sum()).backward()
    for name, t in (("out", out), ("last", last), ("du", u.grad), ("ddelta", delta.grad), ("dA", A.grad)):
        assert torch.isfinite(t).all(), name
    # The decay forgets quickly, so the end of the sequence equals a scan of its last 64 steps.
    tail = selective_scan(u[..., -64:], delta[..., -64:], A, B[..., -64:], C[..., -64:], delta_softplus=True)
    torch.testing.assert_close(out[..., -8:], tail[..., -8:], rtol=1e-4, atol=1e-4)


def test_auto_backend_is_torch_on_cpu():
    inputs = make_scan_inputs(length=10)
    a = selective_scan(**inputs, backend="auto")
    b = selective_scan(**inputs, backend="torch")
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "change, argument",
    [
        (lambda k: k.update(u=k["u"][0]), "u"),
        (lambda k: k.update(u=k["u"].double(), delta=k["delta"].double()), "u"),
        (lambda k: k.update(delta=k["delta"][..., :-1]), "delta"),
        (lambda k: k.update(delta=k["delta"].half()), "delta"),
        (lambda k: k.update(A=k["A"][:-1]), "A"),
        (lambda k: k.update(B=k["B"][..., :-1]), "B"),
        (lambda k: k.update(C=torch.randn(2, 3, 4, 37)), "C"),
        (lambda k: k.update(B=torch.randn(2, 3, 4, 37), C=torch.randn(2, 3, 4, 37)), "G=3 must divide dim"),
        (lambda k: k.update(D=torch.ones(3)), "D"),
        (lambda k: k.update(z=k["z"][:, :-1]), "z"),
        (lambda k: k.update(delta_bias=torch.ones(8, 1)), "delta_bias"),
        (lambda k: k.update(initial_state=torch.zeros(2, 8, 5)), "initial_state"),
        (lambda k: k.update(D=torch.ones(8, device="meta")), "D must be on u's device"),
    ],
)
def test_bad_input_names_the_argument(change, argument):
    inputs = make_scan_inputs(length=37)
    change(inputs)
    with pytest.raises(ValueError, match=argument):
        selective_scan(**inputs, backend="torch")


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend"):
        selective_scan(**make_scan_inputs(length=5), backend="cuda")
