"""Flow-matching scheduler for the SiT stochastic-interpolant paths that DiMSUM trains on.

Time runs from t = 0 (noise x0 ~ N(0, I)) to t = 1 (data x1), and the model predicts the velocity
``v(x_t, t) = d x_t / dt``:

* ``"GVP"`` (DiMSUM's setting): ``x_t = sin(pi t / 2) x1 + cos(pi t / 2) x0``, a variance-preserving path.
* ``"Linear"``: ``x_t = t x1 + (1 - t) x0`` (rectified flow; diffusers' flow-matching schedulers use the
  same path with ``sigma = 1 - t`` and velocity ``x0 - x1 = -v``).

Sampling integrates ``dx/dt = v(x, t)`` from t = 0 to 1, either with the fixed-step loop diffusers pipelines
know (``set_timesteps`` / ``timesteps`` / ``step``; Euler or Heun on a uniform grid) or with the adaptive
``dopri5`` solver of torchdiffeq through :meth:`FlowMatchingScheduler.sample_ode`, the sampler of the
DiMSUM paper (atol 1e-6, rtol 1e-3).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput

PATH_TYPES = ("GVP", "Linear")
SOLVERS = ("euler", "heun")


def _expand_time(t: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """A scalar or (B,) time -> a tensor broadcastable against ``like`` (B, ...), on like's dtype/device."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        return t
    if t.ndim != 1 or t.shape[0] != like.shape[0]:
        raise ValueError(f"t must be a scalar or of shape ({like.shape[0]},), got {tuple(t.shape)}")
    return t.view(-1, *([1] * (like.ndim - 1)))


class FlowMatchingScheduler(SchedulerMixin, ConfigMixin):
    """SiT / DiMSUM flow-matching scheduler (velocity prediction, t = 0 noise -> t = 1 data).

    Fixed-step sampling with ``num_inference_steps = n`` uses the grid ``t_i = i / n``:

    * ``solver="euler"``: ``timesteps = [t_0, ..., t_{n-1}]``, one model evaluation per step.
    * ``solver="heun"``: ``timesteps = [t_0, t_1, t_1, t_2, ..., t_{n-1}, t_n]``, two evaluations per step.
      As in diffusers' ``HeunDiscreteScheduler``, even calls of :meth:`step` take the Euler predictor and
      remember it, odd calls apply the trapezoidal corrector. Every step is a full Heun step (the velocity is
      well defined at t = 1), so fields linear in t are integrated exactly.

    Args:
        path_type: ``"GVP"`` or ``"Linear"`` (see the module docstring).
        solver: ``"euler"`` or ``"heun"`` for the fixed-step loop.
    """

    _compatibles: list[str] = []

    @register_to_config
    def __init__(self, path_type: str = "GVP", solver: str = "heun") -> None:
        if path_type not in PATH_TYPES:
            raise ValueError(f"path_type must be one of {PATH_TYPES}, got {path_type!r}")
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
        self.init_noise_sigma = 1.0
        self.num_inference_steps: int | None = None
        self.time_grid: list[float] | None = None
        self.timesteps: torch.Tensor | None = None
        self._evaluation_times: list[float] = []
        self._step_index = 0
        self._heun_start: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def order(self) -> int:
        """Model evaluations per integration step (diffusers pipelines size their progress bar with it)."""
        return 2 if self.config.solver == "heun" else 1

    @property
    def step_index(self) -> int:
        """Index into ``timesteps`` of the next :meth:`step` call."""
        return self._step_index

    # --- the path -------------------------------------------------------------------------------------

    def path_coefficients(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(alpha, sigma, d_alpha, d_sigma)`` at t, with ``x_t = alpha x1 + sigma x0``."""
        if self.config.path_type == "GVP":
            angle = t * (math.pi / 2)
            return (
                torch.sin(angle),
                torch.cos(angle),
                (math.pi / 2) * torch.cos(angle),
                -(math.pi / 2) * torch.sin(angle),
            )
        return t, 1 - t, torch.ones_like(t), -torch.ones_like(t)

    def sample_training_t(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Training times t ~ U[0, 1), (batch_size,) float32 (velocity training needs no endpoint eps)."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        source_device = generator.device if generator is not None else device
        return torch.rand(batch_size, generator=generator, device=source_device).to(device)

    def _check_pair(self, noise: torch.Tensor, data: torch.Tensor) -> None:
        if noise.shape != data.shape:
            raise ValueError(
                f"noise and data must have the same shape, got {tuple(noise.shape)} and {tuple(data.shape)}"
            )

    def interpolate(self, noise: torch.Tensor, data: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """``x_t = alpha(t) data + sigma(t) noise``; noise, data (B, ...), t scalar or (B,)."""
        self._check_pair(noise, data)
        alpha, sigma, _, _ = self.path_coefficients(_expand_time(t, data))
        return alpha * data + sigma * noise

    def velocity_target(self, noise: torch.Tensor, data: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Regression target ``d x_t / dt = d_alpha(t) data + d_sigma(t) noise``, shaped like ``data``."""
        self._check_pair(noise, data)
        _, _, d_alpha, d_sigma = self.path_coefficients(_expand_time(t, data))
        return d_alpha * data + d_sigma * noise

    # --- fixed-step sampling ----------------------------------------------------------------------------

    def scale_model_input(self, sample: torch.Tensor, timestep: float | torch.Tensor | None = None) -> torch.Tensor:
        """Identity: the model takes x_t as it is."""
        return sample

    def set_timesteps(self, num_inference_steps: int, device: torch.device | str | None = None) -> None:
        """Build the uniform grid on [0, 1] and the model-evaluation times ``timesteps`` (see class doc)."""
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}")
        grid = [i / num_inference_steps for i in range(num_inference_steps + 1)]
        if self.config.solver == "euler":
            evaluation_times = grid[:-1]
        else:
            evaluation_times = [t for i in range(num_inference_steps) for t in (grid[i], grid[i + 1])]
        self.num_inference_steps = num_inference_steps
        self.time_grid = grid
        self.timesteps = torch.tensor(evaluation_times, dtype=torch.float32, device=device)
        self._evaluation_times = self.timesteps.cpu().tolist()
        self._step_index = 0
        self._heun_start = None

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor]:
        """Advance the sample with the velocity ``model_output = v(sample, timestep)``.

        ``timestep`` must be ``timesteps[step_index]``. The update runs in float32 and the result takes
        ``model_output``'s dtype.
        """
        if self.timesteps is None or self.time_grid is None:
            raise ValueError("call set_timesteps(num_inference_steps) before step()")
        if self._step_index >= len(self.timesteps):
            raise ValueError(f"all {len(self.timesteps)} steps are done; call set_timesteps() to sample again")
        if model_output.shape != sample.shape:
            raise ValueError(
                f"model_output must have the sample's shape {tuple(sample.shape)}, got {tuple(model_output.shape)}"
            )
        timestep = torch.as_tensor(timestep)
        expected = self._evaluation_times[self._step_index]
        if timestep.numel() != 1 or abs(float(timestep) - expected) > 1e-6:
            raise ValueError(f"timestep must be timesteps[{self._step_index}] = {expected}, got {timestep}")

        velocity = model_output.float()
        if self.config.solver == "euler":
            interval = self._step_index
            start = sample.float()
        else:
            interval = self._step_index // 2
            if self._heun_start is None:  # predictor: remember the start point and its velocity
                start = sample.float()
                self._heun_start = (start, velocity)
            else:  # corrector: trapezoid from the remembered start point
                start, start_velocity = self._heun_start
                velocity = 0.5 * (start_velocity + velocity)
                self._heun_start = None
        dt = self.time_grid[interval + 1] - self.time_grid[interval]
        prev_sample = (start + dt * velocity).to(model_output.dtype)
        self._step_index += 1

        if not return_dict:
            return (prev_sample,)
        return SchedulerOutput(prev_sample=prev_sample)

    # --- adaptive sampling --------------------------------------------------------------------------------

    def sample_ode(
        self,
        velocity_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        noise: torch.Tensor,
        method: str = "dopri5",
        atol: float = 1e-6,
        rtol: float = 1e-3,
        options: dict | None = None,
    ) -> tuple[torch.Tensor, int]:
        """Integrate ``dx/dt = velocity_fn(x, t)`` from t = 0 (``noise``) to t = 1 with torchdiffeq.

        Args:
            velocity_fn: ``(x (B, ...), t (B,)) -> v (B, ...)``; t is filled with the current time.
            noise: (B, ...) starting point x0, float32 or float64.
            method: a torchdiffeq solver; ``"dopri5"`` (adaptive) is DiMSUM's sampler. Fixed-grid torchdiffeq
                solvers need ``options={"step_size": ...}``.
            atol, rtol: error tolerances of adaptive solvers (DiMSUM: 1e-6, 1e-3).
            options: extra solver options passed to ``torchdiffeq.odeint``.

        Returns:
            ``(sample, nfe)``: the state at t = 1 and the number of ``velocity_fn`` calls.
        """
        try:
            from torchdiffeq import odeint
        except ImportError as error:
            raise ImportError(
                "FlowMatchingScheduler.sample_ode needs the torchdiffeq package: pip install torchdiffeq "
                "(or use set_timesteps()/step() for fixed-step Euler / Heun sampling)"
            ) from error
        if atol <= 0 or rtol <= 0:
            raise ValueError(f"atol and rtol must be positive, got {atol} and {rtol}")
        evaluations = 0

        def rhs(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            nonlocal evaluations
            evaluations += 1
            return velocity_fn(x, t.to(x.dtype).expand(x.shape[0]))

        times = torch.tensor([0.0, 1.0], dtype=noise.dtype, device=noise.device)
        trajectory = odeint(rhs, noise, times, method=method, atol=atol, rtol=rtol, options=options)
        return trajectory[-1], evaluations
