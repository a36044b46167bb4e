"""Training objectives: what a model is asked to predict and the loss that scores it.

* ``eps``: DDPM noise prediction, ``|eps - eps_theta(x_t, t)|^2`` with integer t ~ U{0..T-1}.
* ``flow``: velocity matching on the SiT GVP (DiMSUM) or linear path, t ~ U[0, 1) with t = 1 the data.
* ``motion_vae``: not a denoising objective: MLD's motion-VAE reconstruction loss (see
  :class:`MotionVAEObjective`), which the ``motion_vae`` family's hooks call.
* ``eps_vlb``: DiT/ADM "learned sigma" (IDDPM hybrid loss). The model outputs ``2C`` channels: ``C`` for eps
  and ``C`` for ``v`` in [-1, 1] that interpolates the log-variance between the posterior variance and beta_t
  (``LEARNED_RANGE``). Loss = MSE(eps) + ``vlb_weight`` x L_vlb, where L_vlb is the KL between the true
  posterior q(x_{t-1} | x_t, x_0) and the model's p(x_{t-1} | x_t) (at t = 0 the discretised Gaussian decoder
  NLL), in bits per dimension, computed with the eps prediction detached so that it trains only the variance.

Every objective draws its noise and timesteps from the global torch RNG, which accelerate saves in each
checkpoint: a resumed run draws exactly what the uninterrupted run would have drawn.

``eps`` and ``flow`` take an optional ``mask`` (broadcastable to the sample, True where the loss counts), e.g.
the real frames of zero-padded motions; the loss is then the mean over the masked elements.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, SchedulerMixin

from ssmgen.schedulers.flow_matching import FlowMatchingScheduler

from .config import ObjectiveConfig

Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``predict(noisy_sample, timesteps) -> model output``; the loop binds the model and the conditions."""


class Objective(Protocol):
    name: str

    def output_channels(self, in_channels: int) -> int:
        """Channels the model must output for data with ``in_channels`` channels."""

    def loss(
        self, predict: Predict, sample: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scalar loss for a clean batch ``sample`` (B, C, ...) and extra scalar metrics to log; ``mask``
        (broadcastable to ``sample``) restricts the loss to its True elements."""

    def make_scheduler(self, pixel_space: bool) -> SchedulerMixin:
        """Sampling scheduler matching this objective, for the exported pipeline.

        ``pixel_space``: the data are pixels in [-1, 1], so DDPM schedulers clip their x0 predictions there.
        """


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension but the first: (B, ...) -> (B,)."""
    return x.mean(dim=tuple(range(1, x.ndim)))


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over the elements where ``mask`` (broadcastable to ``values``) is True; all if None."""
    if mask is None:
        return values.mean()
    mask = torch.broadcast_to(mask, values.shape)
    if not mask.any():
        raise ValueError("mask selects no element; every sample needs at least one element in the loss")
    return values.masked_select(mask).mean()


def expand_to(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) with ``ndim`` dimensions, for broadcasting per-sample scalars."""
    return values.reshape(values.shape[0], *([1] * (ndim - 1)))


class EpsilonObjective:
    """DDPM noise prediction (Ho et al. 2020) on a diffusers ``DDPMScheduler`` beta schedule."""

    name = "eps"
    variance_type = "fixed_small"

    def __init__(self, config: ObjectiveConfig):
        self.config = config
        self.noise_scheduler = DDPMScheduler(
            num_train_timesteps=config.num_train_timesteps,
            beta_schedule=config.beta_schedule,
            beta_start=config.beta_start,
            beta_end=config.beta_end,
            prediction_type="epsilon",
            variance_type=self.variance_type,
        )

    def output_channels(self, in_channels: int) -> int:
        return in_channels

    def add_noise(self, sample: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw eps ~ N(0, I) and t ~ U{0..T-1}; return (x_t, eps, t)."""
        noise = torch.randn_like(sample)
        timesteps = torch.randint(
            0, self.config.num_train_timesteps, (sample.shape[0],), device=sample.device, dtype=torch.long
        )
        return self.noise_scheduler.add_noise(sample, noise, timesteps), noise, timesteps

    def loss(
        self, predict: Predict, sample: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        noisy, noise, timesteps = self.add_noise(sample)
        eps = predict(noisy, timesteps).float()
        if eps.shape != sample.shape:
            raise ValueError(
                f"objective 'eps' needs a model output of shape {tuple(sample.shape)}, got {tuple(eps.shape)}"
            )
        return masked_mean((eps - noise.float()).pow(2), mask), {}

    def make_scheduler(self, pixel_space: bool) -> DDPMScheduler:
        return DDPMScheduler.from_config(self.noise_scheduler.config, clip_sample=pixel_space)


class LearnedSigmaObjective(EpsilonObjective):
    """DiT/ADM ``learn_sigma=True``: eps MSE plus the variational bound term for a LEARNED_RANGE variance."""

    name = "eps_vlb"
    variance_type = "learned_range"

    def __init__(self, config: ObjectiveConfig):
        super().__init__(config)
        self.diffusion = GaussianDiffusion(self.noise_scheduler.betas)

    def output_channels(self, in_channels: int) -> int:
        return 2 * in_channels

    def loss(
        self, predict: Predict, sample: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if mask is not None:
            raise ValueError("objective 'eps_vlb' cannot weight elements (its VLB is per sample); use 'eps'")
        noisy, noise, timesteps = self.add_noise(sample)
        output = predict(noisy, timesteps).float()
        channels = sample.shape[1]
        if output.shape[1] != 2 * channels or output.shape[2:] != sample.shape[2:]:
            raise ValueError(
                "objective 'eps_vlb' needs a model output of shape "
                f"{(sample.shape[0], 2 * channels, *sample.shape[2:])} (eps and variance), "
                f"got {tuple(output.shape)}"
            )
        eps, variance_values = output.split(channels, dim=1)
        mse = mean_flat((eps - noise.float()) ** 2)
        # The VLB term sees a frozen eps: the mean is trained by the MSE alone (IDDPM section 3.1).
        vlb = self.diffusion.vlb_bits_per_dim(sample.float(), noisy.float(), timesteps, eps.detach(), variance_values)
        loss = mse + self.config.vlb_weight * vlb
        return loss.mean(), {"mse": mse.mean().detach(), "vlb": vlb.mean().detach()}


class GaussianDiffusion:
    """The posterior and model distributions of a discrete Gaussian diffusion with betas (T,).

    Constants are kept in float64 (as ADM does) and cast to the batch's dtype when gathered.
    """

    def __init__(self, betas: torch.Tensor):
        betas = betas.to(torch.float64)
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        self.betas = betas
        self.alphas_cumprod = alphas_cumprod
        self.posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        # The posterior variance is 0 at t = 0; ADM clips its log to the t = 1 value.
        self.posterior_log_variance_clipped = torch.log(
            torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]])
        )
        self.posterior_mean_coef_x0 = betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod)
        self.posterior_mean_coef_xt = (1.0 - alphas_cumprod_prev) * (1.0 - betas).sqrt() / (1.0 - alphas_cumprod)

    def gather(self, table: torch.Tensor, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``table[t]`` shaped (B, 1, ..., 1) in ``like``'s dtype and device."""
        values = table.to(timesteps.device)[timesteps].to(like.dtype)
        return expand_to(values, like.ndim).to(like.device)

    def posterior_mean(self, x0: torch.Tensor, xt: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Mean of q(x_{t-1} | x_t, x_0) (DDPM eq. 7)."""
        return (
            self.gather(self.posterior_mean_coef_x0, timesteps, x0) * x0
            + self.gather(self.posterior_mean_coef_xt, timesteps, xt) * xt
        )

    def predict_x0(self, xt: torch.Tensor, timesteps: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
        abar = self.gather(self.alphas_cumprod, timesteps, xt)
        return (xt - (1.0 - abar).sqrt() * eps) / abar.sqrt()

    def learned_range_log_variance(self, variance_values: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """LEARNED_RANGE: v in [-1, 1] -> log variance between log(posterior variance) and log(beta_t)."""
        min_log = self.gather(self.posterior_log_variance_clipped, timesteps, variance_values)
        max_log = self.gather(self.betas.log(), timesteps, variance_values)
        fraction = (variance_values + 1.0) / 2.0
        return fraction * max_log + (1.0 - fraction) * min_log

    def vlb_bits_per_dim(
        self,
        x0: torch.Tensor,
        xt: torch.Tensor,
        timesteps: torch.Tensor,
        eps: torch.Tensor,
        variance_values: torch.Tensor,
    ) -> torch.Tensor:
        """Per-sample VLB term L_{t} in bits/dim (B,): KL(q || p_theta) for t > 0, decoder NLL at t = 0."""
        true_mean = self.posterior_mean(x0, xt, timesteps)
        true_log_variance = self.gather(self.posterior_log_variance_clipped, timesteps, x0)
        model_mean = self.posterior_mean(self.predict_x0(xt, timesteps, eps), xt, timesteps)
        model_log_variance = self.learned_range_log_variance(variance_values, timesteps)
        kl = mean_flat(normal_kl(true_mean, true_log_variance, model_mean, model_log_variance)) / math.log(2.0)
        decoder_nll = -mean_flat(
            discretized_gaussian_log_likelihood(x0, means=model_mean, log_scales=0.5 * model_log_variance)
        ) / math.log(2.0)
        return torch.where(timesteps == 0, decoder_nll, kl)


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor, bin_width: float = 2.0 / 255.0
) -> torch.Tensor:
    """Elementwise log-probability (nats) of data ``x`` in [-1, 1] under a Gaussian discretised to 256 bins.

    Bin i covers [x - w/2, x + w/2] with w = 2/255; the two outer bins extend to -inf and +inf (ADM's decoder,
    with the exact normal CDF instead of ADM's tanh approximation).
    """
    half_bin = bin_width / 2.0
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_upper = torch.special.ndtr(inv_std * (centered + half_bin))
    cdf_lower = torch.special.ndtr(inv_std * (centered - half_bin))
    log_cdf_upper = torch.special.log_ndtr(inv_std * (centered + half_bin))
    log_survival_lower = torch.special.log_ndtr(-inv_std * (centered - half_bin))
    log_bin = torch.log((cdf_upper - cdf_lower).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_upper, torch.where(x > 0.999, log_survival_lower, log_bin))


class FlowObjective:
    """Velocity matching on a SiT interpolant (DiMSUM): ``|v_theta(x_t, t) - dx_t/dt|^2`` with t ~ U[0, 1).

    ``x_t = alpha(t) x_1 + sigma(t) x_0`` with x_1 the data and x_0 ~ N(0, I); the path
    (``objective.flow_path``: ``gvp`` or ``linear``) comes from ``ssmgen.schedulers.FlowMatchingScheduler``,
    which also samples.
    """

    name = "flow"
    PATHS = {"gvp": "GVP", "linear": "Linear"}

    def __init__(self, config: ObjectiveConfig):
        if config.flow_path not in self.PATHS:
            raise ValueError(
                f"objective.flow_path: unknown path {config.flow_path!r}; allowed: {', '.join(self.PATHS)}"
            )
        self.config = config
        self.scheduler = FlowMatchingScheduler(path_type=self.PATHS[config.flow_path])

    def output_channels(self, in_channels: int) -> int:
        return in_channels

    def loss(
        self, predict: Predict, sample: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        noise = torch.randn_like(sample)
        t = self.scheduler.sample_training_t(sample.shape[0], device=sample.device).to(sample.dtype)
        velocity = predict(self.scheduler.interpolate(noise, sample, t), t).float()
        target = self.scheduler.velocity_target(noise, sample, t).float()
        if velocity.shape != target.shape:
            raise ValueError(
                f"objective 'flow' needs a model output of shape {tuple(target.shape)}, got {tuple(velocity.shape)}"
            )
        return masked_mean((velocity - target).pow(2), mask), {}

    def make_scheduler(self, pixel_space: bool) -> FlowMatchingScheduler:
        return FlowMatchingScheduler.from_config(self.scheduler.config)


class MotionVAEObjective:
    """MLD's motion-VAE loss (``mld/models/losses/mld.py``), over the real frames of each motion:

    SmoothL1(x_hat, x) + ``joints_weight`` SmoothL1(J(x_hat), J(x)) + ``kl_weight`` KL(q(z | x) || N(0, I)),

    with x the normalised features, J the joint positions ``recover_from_ric`` gives for the un-normalised
    features, and the KL averaged over the latent's elements as MLD's ``KLLoss`` (``kl_divergence(q, p).mean()``).
    MLD averages the reconstruction terms over the padded tensors too; here padding is masked out.
    """

    name = "motion_vae"

    def __init__(self, config: ObjectiveConfig):
        self.config = config

    def loss(
        self,
        reconstruction: torch.Tensor,
        kl: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor,
        to_joints: Callable[[torch.Tensor], torch.Tensor],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """reconstruction, target (B, T, D) normalised features; kl (B,) per latent element; mask (B, T) real
        frames; ``to_joints``: (B, T, D) features -> (B, T, J, 3) joints."""
        reconstruction, target = reconstruction.float(), target.float()
        frames = mask[..., None]
        features = masked_mean(F.smooth_l1_loss(reconstruction, target, reduction="none"), frames)
        joints = masked_mean(
            F.smooth_l1_loss(to_joints(reconstruction), to_joints(target), reduction="none"), frames[..., None]
        )
        kl = kl.float().mean()
        loss = features + self.config.joints_weight * joints + self.config.kl_weight * kl
        return loss, {"features": features.detach(), "joints": joints.detach(), "kl": kl.detach()}


OBJECTIVES: dict[str, Callable[[ObjectiveConfig], Objective | MotionVAEObjective]] = {
    EpsilonObjective.name: EpsilonObjective,
    LearnedSigmaObjective.name: LearnedSigmaObjective,
    FlowObjective.name: FlowObjective,
    MotionVAEObjective.name: MotionVAEObjective,
}


def build_objective(config: ObjectiveConfig) -> Objective:
    """The objective named by ``config.name``."""
    if config.name not in OBJECTIVES:
        raise ValueError(f"objective.name: unknown objective {config.name!r}; allowed: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[config.name](config)
