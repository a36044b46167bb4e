"""FlowMatchingScheduler: paths, fixed-step solvers, adaptive ODE sampling, diffusers parity, config I/O."""

import math
import sys

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from ssmgen.schedulers import FlowMatchingScheduler


def _run_loop(scheduler: FlowMatchingScheduler, velocity_fn, x: torch.Tensor, steps: int) -> tuple[torch.Tensor, int]:
    """The loop a diffusers pipeline runs; returns the sample and the number of model calls."""
    scheduler.set_timesteps(steps)
    calls = 0
    for t in scheduler.timesteps:
        x = scheduler.step(velocity_fn(x, t), t, x).prev_sample
        calls += 1
    return x, calls


def _gaussian_velocity(scheduler: FlowMatchingScheduler, mean: float, std: float):
    """Exact marginal velocity E[v | x_t = x] when data ~ N(mean, std^2) and noise ~ N(0, 1) per entry.

    Its ODE maps noise x0 to ``mean + std * x0`` at t = 1 (the monotone transport of the two Gaussians).
    """

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma, d_alpha, d_sigma = scheduler.path_coefficients(torch.as_tensor(t, dtype=x.dtype))
        variance = alpha**2 * std**2 + sigma**2
        centred = x - alpha * mean
        expected_data = mean + alpha * std**2 * centred / variance
        expected_noise = sigma * centred / variance
        return d_alpha * expected_data + d_sigma * expected_noise

    return velocity


def test_timesteps_follow_the_solver():
    euler = FlowMatchingScheduler(solver="euler")
    euler.set_timesteps(4)
    torch.testing.assert_close(euler.timesteps, torch.tensor([0.0, 0.25, 0.5, 0.75]))
    assert euler.order == 1
    heun = FlowMatchingScheduler(solver="heun")
    heun.set_timesteps(2)
    torch.testing.assert_close(heun.timesteps, torch.tensor([0.0, 0.5, 0.5, 1.0]))
    assert heun.order == 2 and heun.init_noise_sigma == 1.0
    x = torch.randn(2, 3)
    assert heun.scale_model_input(x, heun.timesteps[0]) is x


def test_euler_is_exact_on_a_constant_field():
    scheduler = FlowMatchingScheduler(path_type="GVP", solver="euler")
    x0 = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    drift = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    out, calls = _run_loop(scheduler, lambda x, t: drift, x0, steps=7)
    assert calls == 7
    torch.testing.assert_close(out, (x0.float() + drift.float()).double(), rtol=0, atol=1e-6)


def test_heun_is_exact_for_fields_linear_in_t_and_euler_is_not():
    a, b = torch.randn(2, 5), torch.randn(2, 5)
    x0 = torch.randn(2, 5)
    exact = x0 + a + b / 2  # integral of a + b t over [0, 1]
    heun, calls = _run_loop(FlowMatchingScheduler(solver="heun"), lambda x, t: a + b * t, x0, steps=3)
    assert calls == 6
    torch.testing.assert_close(heun, exact, rtol=0, atol=1e-6)
    euler, _ = _run_loop(FlowMatchingScheduler(solver="euler"), lambda x, t: a + b * t, x0, steps=3)
    torch.testing.assert_close(euler, exact - b / 6, rtol=0, atol=1e-6)  # left Riemann sum misses b / (2n)


@pytest.mark.parametrize("path_type", ["GVP", "Linear"])
def test_solvers_converge_to_the_gaussian_transport_at_their_order(path_type):
    mean, std = 1.5, 0.5
    x0 = torch.randn(4, 8, dtype=torch.float64)
    exact = mean + std * x0
    errors = {}
    for solver in ("euler", "heun"):
        scheduler = FlowMatchingScheduler(path_type=path_type, solver=solver)
        velocity = _gaussian_velocity(scheduler, mean, std)
        errors[solver] = [(_run_loop(scheduler, velocity, x0, n)[0] - exact).abs().max().item() for n in (16, 32)]
    assert 1.6 < errors["euler"][0] / errors["euler"][1] < 2.4  # first order
    assert 3.2 < errors["heun"][0] / errors["heun"][1] < 4.8  # second order
    assert errors["heun"][1] < errors["euler"][1] / 10


@pytest.mark.parametrize("path_type", ["GVP", "Linear"])
def test_dopri5_recovers_the_gaussian_transport_and_counts_evaluations(path_type):
    scheduler = FlowMatchingScheduler(path_type=path_type)
    velocity = _gaussian_velocity(scheduler, 1.5, 0.5)
    calls = []

    def counted(x, t):
        calls.append(t)
        assert t.shape == (x.shape[0],)
        return velocity(x, t[:, None])

    x0 = torch.randn(4, 8, dtype=torch.float64)
    sample, nfe = scheduler.sample_ode(counted, x0, atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(sample, 1.5 + 0.5 * x0, rtol=0, atol=1e-6)
    assert nfe == len(calls) > 6


def test_sample_ode_without_torchdiffeq_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchdiffeq", None)
    with pytest.raises(ImportError, match="torchdiffeq"):
        FlowMatchingScheduler().sample_ode(lambda x, t: x, torch.zeros(1, 2))


def test_gvp_boundaries_and_target_is_the_time_derivative():
    scheduler = FlowMatchingScheduler(path_type="GVP")
    noise, data = torch.randn(3, 2, 4, dtype=torch.float64), torch.randn(3, 2, 4, dtype=torch.float64)
    torch.testing.assert_close(scheduler.interpolate(noise, data, 0.0), noise)
    torch.testing.assert_close(scheduler.interpolate(noise, data, 1.0), data, rtol=0, atol=1e-15)
    t = torch.tensor([0.1, 0.5, 0.93], dtype=torch.float64)
    x_t = scheduler.interpolate(noise, data, t)
    angle = (math.pi / 2) * t[:, None, None]
    torch.testing.assert_close(x_t, torch.sin(angle) * data + torch.cos(angle) * noise)
    h = 1e-6
    derivative = (scheduler.interpolate(noise, data, t + h) - scheduler.interpolate(noise, data, t - h)) / (2 * h)
    torch.testing.assert_close(scheduler.velocity_target(noise, data, t), derivative, rtol=0, atol=1e-8)


def test_linear_path_and_target():
    scheduler = FlowMatchingScheduler(path_type="Linear")
    noise, data = torch.randn(2, 5), torch.randn(2, 5)
    t = torch.tensor([0.25, 0.8])
    torch.testing.assert_close(scheduler.interpolate(noise, data, t), t[:, None] * data + (1 - t[:, None]) * noise)
    torch.testing.assert_close(scheduler.velocity_target(noise, data, t), data - noise)


def test_linear_euler_matches_diffusers_flow_match_euler():
    """diffusers: x = sigma noise + (1 - sigma) data, velocity noise - data. Here t = 1 - sigma, v = -that."""
    steps = 6
    ours = FlowMatchingScheduler(path_type="Linear", solver="euler")
    theirs = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    theirs.set_timesteps(sigmas=[1 - i / steps for i in range(steps)])

    weight = torch.randn(4, 4) / 2

    def velocity(x, t):  # any smooth, state- and time-dependent field
        return torch.tanh(x @ weight) * (1 + t) - x * t

    x0 = torch.randn(3, 4)
    ours_sample, _ = _run_loop(ours, velocity, x0, steps)
    x = x0
    for timestep in theirs.timesteps:
        t = 1 - timestep / 1000
        x = theirs.step(-velocity(x, t), timestep, x).prev_sample
    torch.testing.assert_close(ours_sample, x, rtol=1e-5, atol=1e-6)

    noise, data = torch.randn(2, 4), torch.randn(2, 4)
    timestep, sigma = theirs.timesteps[2], theirs.sigmas[2]
    torch.testing.assert_close(
        ours.interpolate(noise, data, 1 - sigma), theirs.scale_noise(data, timestep[None], noise)
    )


def test_step_keeps_the_model_dtype_and_returns_tuples():
    scheduler = FlowMatchingScheduler(solver="euler")
    scheduler.set_timesteps(2)
    x = torch.randn(2, 3).to(torch.bfloat16)
    (out,) = scheduler.step(torch.ones_like(x), scheduler.timesteps[0], x, return_dict=False)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, (x.float() + 0.5).to(torch.bfloat16))


def test_sample_training_t_is_uniform_and_seeded():
    scheduler = FlowMatchingScheduler()
    t = scheduler.sample_training_t(20000, generator=torch.Generator().manual_seed(0))
    assert t.shape == (20000,) and t.dtype == torch.float32
    assert 0 <= t.min() and t.max() < 1
    assert abs(t.mean().item() - 0.5) < 0.01 and abs(t.var().item() - 1 / 12) < 0.005
    again = scheduler.sample_training_t(20000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(t, again)


def test_save_and_load_round_trip(tmp_path):
    scheduler = FlowMatchingScheduler(path_type="Linear", solver="euler")
    scheduler.save_pretrained(tmp_path)
    loaded = FlowMatchingScheduler.from_pretrained(tmp_path)
    assert loaded.config.path_type == "Linear" and loaded.config.solver == "euler"
    loaded.set_timesteps(5)
    scheduler.set_timesteps(5)
    torch.testing.assert_close(loaded.timesteps, scheduler.timesteps)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="path_type"):
        FlowMatchingScheduler(path_type="VP")
    with pytest.raises(ValueError, match="solver"):
        FlowMatchingScheduler(solver="rk4")
    scheduler = FlowMatchingScheduler(solver="euler")
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="set_timesteps"):
        scheduler.step(x, 0.0, x)
    with pytest.raises(ValueError, match="num_inference_steps"):
        scheduler.set_timesteps(0)
    scheduler.set_timesteps(2)
    with pytest.raises(ValueError, match="timesteps\\[0\\]"):
        scheduler.step(x, 0.5, x)
    with pytest.raises(ValueError, match="shape"):
        scheduler.step(torch.zeros(2, 4), 0.0, x)
    scheduler.step(x, 0.0, x)
    scheduler.step(x, 0.5, x)
    with pytest.raises(ValueError, match="steps are done"):
        scheduler.step(x, 0.5, x)
    with pytest.raises(ValueError, match="same shape"):
        scheduler.interpolate(torch.zeros(2, 3), torch.zeros(2, 4), 0.5)
    with pytest.raises(ValueError, match="t must be"):
        scheduler.velocity_target(x, x, torch.zeros(3))
    with pytest.raises(ValueError, match="batch_size"):
        scheduler.sample_training_t(0)
    with pytest.raises(ValueError, match="atol"):
        scheduler.sample_ode(lambda v, t: v, x, atol=0.0)
