"""DiMSUMPipeline: flow integration, guidance, determinism, save/load, dopri5, bad input."""

import math

import pytest
import torch
from diffusers import DDIMScheduler, DiffusionPipeline
from model_cases import BAD_CLASS_CONDITIONAL_ARGUMENTS, randomize_

from ssmgen.models import DiMSUMModel
from ssmgen.pipelines import DiMSUMPipeline
from ssmgen.schedulers import FlowMatchingScheduler


def random_tiny(**overrides) -> DiMSUMModel:
    return randomize_(DiMSUMModel.from_preset("tiny", **overrides).eval(), seed=0)


@pytest.fixture(scope="module")
def pipe():
    pipeline = DiMSUMPipeline(
        random_tiny(in_channels=3),
        FlowMatchingScheduler(solver="euler"),
        id2label={i: f"class{i}" for i in range(10)} | {0: "zero, nil"},
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def sample(pipe, seed=0, **kwargs):
    args = dict(class_labels=[1, 4], num_inference_steps=3, output_type="pt") | kwargs
    return pipe(generator=torch.Generator().manual_seed(seed), **args).images


class ConstantVelocity(torch.nn.Module):
    """A stand-in model whose velocity is known: v = a (class) + b (null class) weights per label."""

    def __init__(self, model: DiMSUMModel):
        super().__init__()
        self.config, self.dtype, self.device = model.config, model.dtype, model.device
        self.calls = []

    def forward(self, sample, timestep, class_labels):
        self.calls.append((sample.shape[0], torch.as_tensor(timestep).clone(), class_labels.clone()))
        v = torch.where(class_labels == self.config.num_classes, -1.0, class_labels.float())
        return type("Out", (), {"sample": v.view(-1, 1, 1, 1).expand_as(sample).clone()})()


def test_euler_loop_integrates_the_guided_velocity(pipe):
    """With v = label (null: -1), 3 Euler steps from x0 move by exactly uncond + s (cond - uncond)."""
    real_model = pipe.model
    stand_in = ConstantVelocity(real_model)
    pipe.model = stand_in
    try:
        x0 = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
        out = sample(pipe, latents=x0, guidance_scale=2.5, output_type="latent")
    finally:
        pipe.model = real_model
    expected_shift = torch.tensor([-1 + 2.5 * (1 + 1), -1 + 2.5 * (4 + 1)]).view(2, 1, 1, 1)
    torch.testing.assert_close(out, x0 + expected_shift)
    assert [float(t) for _, t, _ in stand_in.calls] == pytest.approx([0.0, 1 / 3, 2 / 3])
    assert all(batch == 4 and labels.tolist() == [1, 4, 10, 10] for batch, _, labels in stand_in.calls)


def test_heun_on_the_gvp_path_transports_noise_to_gaussian_data():
    """For data ~ N(mu, s^2 I) the exact GVP velocity field is affine in x, and its flow maps the noise x0
    to mu + s x0: Heun must land there, with second-order convergence."""
    mu, s = 0.7, 0.5

    class GaussianDataVelocity(ConstantVelocity):
        def forward(self, sample, timestep, class_labels):
            t = torch.as_tensor(timestep, dtype=sample.dtype).view(-1, 1, 1, 1)
            a, b = torch.sin(math.pi * t / 2), torch.cos(math.pi * t / 2)  # x_t = a x1 + b x0
            variance, centered = a**2 * s**2 + b**2, sample - a * mu
            data_mean, noise_mean = mu + a * s**2 / variance * centered, b / variance * centered
            return type("Out", (), {"sample": math.pi / 2 * (b * data_mean - a * noise_mean)})()

    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    errors = []
    for steps in (8, 16):
        pipeline = DiMSUMPipeline(GaussianDataVelocity(random_tiny()), FlowMatchingScheduler(solver="heun"))
        pipeline.set_progress_bar_config(disable=True)
        result = pipeline(class_labels=[3], num_inference_steps=steps, guidance_scale=1.0, latents=x0,
                          output_type="latent")  # fmt: skip
        assert result.nfe == 2 * steps
        errors.append((result.images - (mu + s * x0)).abs().max().item())
    assert errors[1] < 1e-2 and errors[0] / errors[1] > 3  # ~4x per halving for a second-order method


def test_same_generator_same_images_and_output_types(pipe):
    a = sample(pipe, seed=3)
    assert a.shape == (2, 3, 8, 8) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, sample(pipe, seed=3))
    assert not torch.equal(a, sample(pipe, seed=4))
    arrays = sample(pipe, seed=3, output_type="np")
    torch.testing.assert_close(torch.from_numpy(arrays).permute(0, 3, 1, 2), a)
    pils = sample(pipe, seed=3, output_type="pil")
    assert len(pils) == 2 and pils[0].size == (8, 8)
    images, nfe = pipe(class_labels=[1, 4], num_inference_steps=3, output_type="pt", return_dict=False,
                       generator=torch.Generator().manual_seed(3))  # fmt: skip
    assert torch.equal(images, a) and nfe == 3


def test_labels_by_name_equal_labels_by_id(pipe):
    assert torch.equal(sample(pipe, class_labels=["nil", "class4"]), sample(pipe, class_labels=[0, 4]))


def test_guidance_scale_one_equals_the_conditional_branch(pipe):
    conditional = sample(pipe, guidance_scale=1.0)  # <= 1: the model only sees the class labels
    barely_guided = sample(pipe, guidance_scale=1.0 + 1e-6)  # > 1: the batched class/null path
    torch.testing.assert_close(barely_guided, conditional, rtol=0, atol=1e-4)
    assert not torch.allclose(sample(pipe, guidance_scale=4.0), conditional, atol=1e-3)


def test_dopri5_matches_a_fine_heun_solution_and_reports_nfe(pipe):
    pytest.importorskip("torchdiffeq")  # the [dev] extra installs it; the pipeline says so when missing
    x0 = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    calls = []
    hook = pipe.model.register_forward_hook(lambda *args: calls.append(1))
    try:
        adaptive = pipe(class_labels=[1, 4], latents=x0, ode_method="dopri5", rtol=1e-5, output_type="latent")
    finally:
        hook.remove()
    assert adaptive.nfe == len(calls) > 6  # one guided (class + null batched) model call per evaluation
    pipe.scheduler = FlowMatchingScheduler(solver="heun")
    try:
        fine = pipe(class_labels=[1, 4], latents=x0, num_inference_steps=20, output_type="latent").images
    finally:
        pipe.scheduler = FlowMatchingScheduler(solver="euler")
    torch.testing.assert_close(adaptive.images, fine, rtol=0, atol=1e-4)


def test_callback_can_replace_latents(pipe):
    seen = []

    def callback(p, step, t, tensors):
        seen.append(step)
        return {"latents": torch.zeros_like(tensors["latents"])} if step == 2 else tensors

    images = sample(pipe, callback_on_step_end=callback, output_type="latent")
    assert seen == [0, 1, 2] and torch.equal(images, torch.zeros_like(images))


def test_save_load_round_trip_through_diffusers(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded, DiMSUMPipeline) and isinstance(loaded.scheduler, FlowMatchingScheduler)
    assert loaded.labels == pipe.labels and loaded.scheduler.config.solver == "euler"
    loaded.set_progress_bar_config(disable=True)
    torch.testing.assert_close(sample(loaded), sample(pipe))


def test_given_latents_are_used(pipe):
    latents = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(sample(pipe, latents=latents, seed=0), sample(pipe, latents=latents, seed=1))
    assert not torch.equal(sample(pipe, latents=latents), sample(pipe))


@pytest.mark.parametrize(
    "kwargs, argument",
    BAD_CLASS_CONDITIONAL_ARGUMENTS
    + [
        (dict(ode_method="rk45"), "ode_method"),
        (dict(ode_method="dopri5", num_inference_steps=10), "num_inference_steps"),
        (dict(ode_method="dopri5", num_inference_steps=None, callback_on_step_end=lambda *a: {}), "callback"),
    ],
)
def test_bad_input(pipe, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        sample(pipe, **kwargs)


def test_other_schedulers_are_refused():
    pipeline = DiMSUMPipeline(random_tiny(), DDIMScheduler())
    with pytest.raises(ValueError, match="scheduler"):
        pipeline(class_labels=[1], num_inference_steps=2)


def test_unconditional_model_uses_batch_size():
    pipeline = DiMSUMPipeline(random_tiny(num_classes=0), FlowMatchingScheduler(solver="euler"))
    pipeline.set_progress_bar_config(disable=True)
    images = pipeline(batch_size=3, num_inference_steps=2, output_type="pt").images
    assert images.shape == (3, 4, 8, 8)
    with pytest.raises(ValueError, match="batch_size"):
        pipeline(num_inference_steps=2)
