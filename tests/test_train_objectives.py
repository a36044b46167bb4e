"""Objectives against closed forms: DDPM noising, Gaussian posterior, KL, discretised decoder, flow paths."""

import math

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from scipy.stats import norm

from ssmgen.train.config import ObjectiveConfig
from ssmgen.train.objectives import (
    EpsilonObjective,
    FlowObjective,
    GaussianDiffusion,
    LearnedSigmaObjective,
    build_objective,
    discretized_gaussian_log_likelihood,
    normal_kl,
)


def linear_alphas_cumprod(steps: int = 1000) -> np.ndarray:
    """DDPM's linear schedule computed independently in float64."""
    betas = np.linspace(1e-4, 0.02, steps, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def test_normal_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean1, mean2 = (
        torch.randn(50, generator=g, dtype=torch.float64),
        torch.randn(50, generator=g, dtype=torch.float64),
    )
    logvar1, logvar2 = (
        torch.randn(50, generator=g, dtype=torch.float64),
        torch.randn(50, generator=g, dtype=torch.float64),
    )
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean1, (0.5 * logvar1).exp()),
        torch.distributions.Normal(mean2, (0.5 * logvar2).exp()),
    )
    torch.testing.assert_close(normal_kl(mean1, logvar1, mean2, logvar2), expected, rtol=1e-12, atol=1e-12)


def test_discretized_log_likelihood_matches_scipy_bins():
    """Bin probabilities of a Gaussian discretised to 256 levels, outer bins open-ended (ADM's decoder)."""
    g = torch.Generator().manual_seed(1)
    levels = torch.randint(0, 256, (400,), generator=g).double()
    x = levels / 127.5 - 1.0
    means = x + 0.05 * torch.randn(400, generator=g, dtype=torch.float64)
    log_scales = -3.0 + torch.rand(400, generator=g, dtype=torch.float64)
    got = discretized_gaussian_log_likelihood(x, means, log_scales).numpy()

    xs, mu, sd = x.numpy(), means.numpy(), np.exp(log_scales.numpy())
    upper = norm.cdf((xs + 1 / 255 - mu) / sd)
    lower = norm.cdf((xs - 1 / 255 - mu) / sd)
    probability = np.where(levels.numpy() == 0, upper, np.where(levels.numpy() == 255, 1 - lower, upper - lower))
    np.testing.assert_allclose(np.exp(got), probability, rtol=1e-6, atol=1e-10)
    # The 256 bin probabilities of one Gaussian sum to one.
    grid = torch.arange(256, dtype=torch.float64) / 127.5 - 1.0
    total = discretized_gaussian_log_likelihood(grid, torch.full_like(grid, 0.3), torch.full_like(grid, -1.5)).exp()
    assert total.sum().item() == pytest.approx(1.0, abs=1e-9)


def test_posterior_is_the_product_of_gaussians():
    """q(x_{t-1} | x_t, x_0) by Bayes: N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1}) x N(x_t; sqrt(a_t) x, b_t)."""
    abar = linear_alphas_cumprod()
    diffusion = GaussianDiffusion(torch.from_numpy(np.linspace(1e-4, 0.02, 1000)))
    t = torch.tensor([1, 10, 500, 999])
    x0, xt = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    abar_prev = np.append(1.0, abar[:-1])[t]
    alpha = (abar / np.append(1.0, abar[:-1]))[t]
    prior_var, lik_var = 1 - abar_prev, 1 - alpha
    precision = 1 / prior_var + alpha / lik_var
    expected_mean = (
        np.sqrt(abar_prev)[:, None] * x0.numpy() / prior_var[:, None]
        + np.sqrt(alpha)[:, None] * xt.numpy() / lik_var[:, None]
    ) / precision[:, None]
    np.testing.assert_allclose(diffusion.posterior_mean(x0, xt, t).numpy(), expected_mean, rtol=1e-10)
    np.testing.assert_allclose(diffusion.posterior_variance[t].numpy(), 1 / precision, rtol=1e-10)


def test_learned_range_variance_matches_diffusers_scheduler():
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", variance_type="learned_range")
    diffusion = GaussianDiffusion(scheduler.betas)
    for t in (1, 37, 400, 999):
        v = torch.tensor([-1.0, -0.3, 0.5, 1.0], dtype=torch.float64)
        ours = diffusion.learned_range_log_variance(v, torch.full((4,), t))
        theirs = torch.stack([scheduler._get_variance(t, predicted_variance=vi.float()) for vi in v]).double()
        # diffusers recomputes beta_t = 1 - abar_t / abar_{t-1} in float32, hence the float32 tolerance.
        torch.testing.assert_close(ours, theirs, rtol=5e-5, atol=0)


def _noise_from(xt, x0, t, abar):
    a = torch.from_numpy(abar)[t].to(x0.dtype).view(-1, *([1] * (x0.ndim - 1)))
    return (xt - a.sqrt() * x0) / (1 - a).sqrt()


def test_eps_objective_noises_with_ddpm_marginal_and_scores_mse():
    objective = EpsilonObjective(ObjectiveConfig(name="eps"))
    x0 = torch.rand(256, 1, 4, 4, dtype=torch.float64) * 2 - 1
    seen = {}

    def predict(xt, t):
        seen["xt"], seen["t"] = xt, t
        return torch.zeros_like(xt)

    torch.manual_seed(0)
    loss, _ = objective.loss(predict, x0)
    noise = _noise_from(seen["xt"], x0, seen["t"], linear_alphas_cumprod())
    assert loss.item() == pytest.approx(noise.pow(2).mean().item(), rel=1e-4)
    assert abs(noise.mean().item()) < 0.05 and noise.std().item() == pytest.approx(1.0, abs=0.05)
    assert seen["t"].dtype == torch.long and 0 <= seen["t"].min() and seen["t"].max() < 1000

    # A model that predicts the true noise scores zero.
    def oracle(xt, t):
        return _noise_from(xt, x0, t, linear_alphas_cumprod())

    loss, _ = objective.loss(oracle, x0)
    assert loss.item() < 1e-8


def test_eps_vlb_is_zero_for_the_true_posterior_and_kl_for_beta():
    objective = LearnedSigmaObjective(ObjectiveConfig(name="eps_vlb"))
    diffusion = objective.diffusion
    x0 = torch.rand(8, 2, 4, 4, dtype=torch.float64) * 2 - 1
    t = torch.tensor([1, 2, 10, 100, 300, 500, 800, 999])
    eps = torch.randn_like(x0)
    abar = torch.from_numpy(linear_alphas_cumprod())[t].view(-1, 1, 1, 1)
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * eps

    at_posterior = diffusion.vlb_bits_per_dim(x0, xt, t, eps, torch.full_like(x0, -1.0))
    torch.testing.assert_close(at_posterior, torch.zeros(8, dtype=torch.float64), atol=1e-9, rtol=0)

    # v = +1 gives variance beta_t: the KL between two Gaussians with the same mean, in bits.
    at_beta = diffusion.vlb_bits_per_dim(x0, xt, t, eps, torch.full_like(x0, 1.0))
    posterior_var, beta = diffusion.posterior_variance[t], diffusion.betas[t]
    expected = 0.5 * (-1 + beta.log() - posterior_var.log() + posterior_var / beta) / math.log(2)
    torch.testing.assert_close(at_beta, expected, rtol=1e-9, atol=1e-12)


def test_eps_vlb_trains_eps_by_mse_only_and_variance_by_vlb():
    objective = LearnedSigmaObjective(ObjectiveConfig(name="eps_vlb"))
    x0 = torch.rand(16, 1, 4, 4) * 2 - 1
    output = torch.zeros(16, 2, 4, 4, requires_grad=True)
    seen = {}

    def predict(xt, t):
        seen["xt"], seen["t"] = xt, t
        return output

    loss, metrics = objective.loss(predict, x0)
    assert loss.item() == pytest.approx(metrics["mse"].item() + metrics["vlb"].item(), rel=1e-6)
    loss.backward()
    noise = _noise_from(seen["xt"].double(), x0.double(), seen["t"], linear_alphas_cumprod()).float()
    # d/d eps of mean((eps - noise)^2) over (B, C, H, W) elements, with eps = 0.
    expected_eps_grad = 2 * (0 - noise) / noise.numel()
    torch.testing.assert_close(output.grad[:, :1], expected_eps_grad, rtol=1e-3, atol=1e-6)
    assert output.grad[:, 1:].abs().sum() > 0


def test_eps_vlb_rejects_single_width_output():
    objective = LearnedSigmaObjective(ObjectiveConfig(name="eps_vlb"))
    with pytest.raises(ValueError, match="eps and variance"):
        objective.loss(lambda xt, t: xt, torch.zeros(2, 3, 4, 4))


@pytest.mark.parametrize("path", ["gvp", "linear"])
def test_flow_objective_regresses_the_path_velocity(path):
    objective = FlowObjective(ObjectiveConfig(name="flow", flow_path=path))
    x1 = torch.rand(512, 1, 2, 2, dtype=torch.float64) * 2 - 1
    seen = {}

    def predict(xt, t):
        seen["xt"], seen["t"] = xt, t
        return torch.zeros_like(xt)

    loss, _ = objective.loss(predict, x1)
    t = seen["t"].view(-1, 1, 1, 1)
    assert seen["t"].min() >= 0 and seen["t"].max() < 1
    if path == "gvp":  # x_t = sin(pi t / 2) x1 + cos(pi t / 2) x0 (DiMSUM / SiT GVP)
        s, c = torch.sin(math.pi * t / 2), torch.cos(math.pi * t / 2)
        x0 = (seen["xt"] - s * x1) / c
        velocity = math.pi / 2 * (c * x1 - s * x0)
    else:
        x0 = (seen["xt"] - t * x1) / (1 - t)
        velocity = x1 - x0
    keep = (seen["t"] < 0.95).view(-1)  # recovering x0 divides by cos or 1 - t
    assert abs(x0[keep].mean().item()) < 0.05 and x0[keep].std().item() == pytest.approx(1.0, abs=0.05)
    assert loss.item() == pytest.approx(velocity.pow(2).mean().item(), rel=1e-6)


def test_unknown_objective_names_the_allowed_ones():
    with pytest.raises(ValueError, match="objective.name.*allowed: eps, eps_vlb, flow"):
        build_objective(ObjectiveConfig(name="v_prediction"))
