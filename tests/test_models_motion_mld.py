"""MLDDenoiser and the shared condition tokens: diffusers' timestep embedding as the oracle, MLD's token order
and output (no projection after the final LayerNorm), save/load, bad input."""

import pytest
import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps

from ssmgen.models import MLDDenoiser
from ssmgen.models.motion_conditioning import MotionConditionEmbedder


def tiny(**overrides) -> MLDDenoiser:
    torch.manual_seed(0)
    return MLDDenoiser.from_preset("tiny", **overrides)


def inputs(batch=2, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, 2, 16, generator=gen),
        torch.tensor([17, 640][:batch]),
        torch.randn(batch, 16, generator=gen),
    )


def test_time_token_equals_diffusers_timesteps_and_timestep_embedding():
    """MLD embeds t with Timesteps(768, flip_sin_to_cos=True, downscale_freq_shift=0) + TimestepEmbedding."""
    torch.manual_seed(2)
    ours = MotionConditionEmbedder(hidden_size=32, text_dim=8, time_embed_dim=768)
    proj = Timesteps(768, flip_sin_to_cos=True, downscale_freq_shift=0)
    embedding = TimestepEmbedding(768, 32)
    embedding.linear_1.load_state_dict(ours.time_embedding.mlp[0].state_dict())
    embedding.linear_2.load_state_dict(ours.time_embedding.mlp[2].state_dict())
    t = torch.tensor([0, 1, 37, 999])
    text = torch.randn(4, 8)
    tokens = ours(t, text)
    torch.testing.assert_close(tokens[:, 0], embedding(proj(t)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tokens[:, 1], ours.text_proj[1](torch.relu(text)))  # ReLU, then Linear


def test_tokens_are_latent_first_and_the_output_is_the_final_layer_norm():
    model = tiny().eval()
    z, t, text = inputs()
    seen = {}
    model.encoder.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    out = model(z, t, text).sample
    assert out.shape == z.shape
    expected = torch.cat([z, model.condition(t, text)], dim=1) + model.query_pos
    torch.testing.assert_close(seen["x"], expected)
    norm = model.encoder.norm  # no output projection: each output token is a LayerNorm output
    standardized = (out - norm.bias) / norm.weight
    torch.testing.assert_close(standardized.mean(-1), torch.zeros(2, 2), rtol=0, atol=1e-5)
    torch.testing.assert_close(standardized.var(-1, unbiased=False), torch.ones(2, 2), rtol=0, atol=1e-3)


def test_paper_preset_structure_and_save_load(tmp_path):
    with torch.device("meta"):
        paper = MLDDenoiser.from_preset("paper")
    assert paper.sample_shape(4, 196) == (4, 1, 256) and paper.query_pos.shape == (3, 256)
    assert (len(paper.encoder.input_blocks), len(paper.encoder.output_blocks)) == (4, 4)
    model = tiny().eval()
    z, t, text = inputs()
    expected = model(z, t, text.unsqueeze(1)).sample
    model.save_pretrained(tmp_path)
    loaded = MLDDenoiser.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded(z, t, text).sample, expected)
    assert torch.equal(loaded(z, t, text, return_dict=False)[0], expected)


def test_bad_inputs_are_rejected():
    model = tiny()
    z, t, text = inputs()
    with pytest.raises(ValueError, match="sample"):
        model(z[:, :1], t, text)
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        model(z, t, text[:1])
    with pytest.raises(ValueError, match="num_layers"):
        tiny(num_layers=4)
    with pytest.raises(ValueError, match="preset"):
        MLDDenoiser.from_preset("mld-2")
