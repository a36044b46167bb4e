"""MotionVAE: reconstruction after brief training on synthetic motions, masking, KL, lengths, save/load."""

import pytest
import torch

from ssmgen.data.motion import Text2MotionDataset, build_synthetic_dataset, collate_motion_batch
from ssmgen.models import MotionVAE
from ssmgen.models.motion_vae import DiagonalGaussian


def tiny(**overrides) -> MotionVAE:
    torch.manual_seed(0)
    return MotionVAE.from_preset("tiny", **overrides)


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((a - b).square().mean(-1) * mask).sum() / mask.sum()


def test_reconstructs_a_batch_of_synthetic_motions_after_brief_training(tmp_path):
    root = build_synthetic_dataset(tmp_path / "motions", num_motions=6, seed=0)
    dataset = Text2MotionDataset(root, "all", seed=0)
    whole = [i for i, sample in enumerate(dataset.samples) if "_" not in sample.name][:4]  # no sub-clips
    batch = collate_motion_batch([dataset[i] for i in whole])
    frames = 64  # a short crop keeps the test fast
    x, lengths, mask = (
        batch["motion"][:, :frames],
        batch["length"].clamp(max=frames),
        batch["mask"][:, :frames],
    )
    vae = tiny(num_layers=1)  # one layer per stack learns fastest; the skip wiring is tested with the layers
    optimizer = torch.optim.AdamW(vae.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):  # reconstruction (MSE, which learns faster than MLD's SmoothL1 here) + 1e-4 KL
        out = vae(x, lengths, generator=generator)
        loss = masked_mse(out.sample, x, mask) + 1e-4 * out.latent_dist.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    vae.eval()
    with torch.no_grad():
        recon = vae(x, lengths, sample_posterior=False).sample
    error = masked_mse(recon, x, mask)
    frame_means = (x * mask[..., None]).sum(0) / mask.sum(0)[:, None]  # what a collapsed VAE would output
    assert error < 0.1 * masked_mse(torch.zeros_like(x), x, mask)  # far below the zero motion's error
    assert error < 0.25 * masked_mse(frame_means.expand_as(x), x, mask)  # and the batch's mean motion's


def test_padding_never_reaches_the_latent_or_the_valid_frames():
    vae = tiny().eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 50, 263, generator=gen)
    lengths = torch.tensor([50, 31])
    junk = x.clone()
    junk[1, 31:] = float("nan")  # anything past a length is ignored, even NaN
    with torch.no_grad():
        dist = vae.encode(x, lengths).latent_dist
        torch.testing.assert_close(vae.encode(junk, lengths).latent_dist.mean, dist.mean)
        alone = vae.encode(x[1:, :31], 31).latent_dist.mean
        torch.testing.assert_close(alone, dist.mean[1:], rtol=1e-5, atol=1e-5)
        decoded = vae.decode(dist.mean, lengths).sample
        assert decoded.shape == (2, 50, 263) and (decoded[1, 31:] == 0).all()
        short = vae.decode(dist.mean[1:], 31).sample
        torch.testing.assert_close(short[0], decoded[1, :31], rtol=1e-5, atol=1e-5)
        assert vae.decode(dist.mean, lengths, num_frames=60).sample.shape == (2, 60, 263)


def test_kl_matches_torch_distributions_and_sampling_is_seeded():
    gen = torch.Generator().manual_seed(2)
    mean, logvar = torch.randn(3, 2, 5, generator=gen), torch.randn(3, 2, 5, generator=gen)
    dist = DiagonalGaussian(mean, logvar)
    q = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    torch.testing.assert_close(dist.kl(), torch.distributions.kl_divergence(q, p).sum(dim=(1, 2)))
    first = dist.sample(torch.Generator().manual_seed(3))
    assert torch.equal(first, dist.sample(torch.Generator().manual_seed(3)))
    assert first.shape == mean.shape and not torch.equal(first, mean)


def test_latent_shape_presets_and_save_load(tmp_path):
    vae = tiny().eval()
    x = torch.randn(2, 40, 263)
    with torch.no_grad():
        z = vae.encode(x, 40).latent_dist.mean
        assert z.shape == (2, 2, 32)
        expected = vae.decode(z, 40).sample
    vae.save_pretrained(tmp_path)
    loaded = MotionVAE.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded.decode(z, 40).sample, expected)
    with torch.device("meta"):
        paper, mld = MotionVAE.from_preset("paper"), MotionVAE.from_preset("mld-1")
    assert paper.global_motion_token.shape == (4, 256) and mld.global_motion_token.shape == (2, 256)
    assert (len(paper.encoder.input_blocks), len(paper.decoder.output_blocks)) == (4, 4)


def test_bad_inputs_are_rejected():
    vae = tiny()
    x = torch.randn(2, 30, 263)
    with pytest.raises(ValueError, match="lengths"):
        vae.encode(x, torch.tensor([30, 0]))
    with pytest.raises(ValueError, match="lengths"):
        vae.encode(x, torch.tensor([31, 30]))
    with pytest.raises(ValueError, match="lengths"):
        vae.encode(x, torch.tensor([30.0, 20.0]))
    with pytest.raises(ValueError, match="lengths"):
        vae.decode(torch.randn(1, 2, 32), vae.max_decode_frames + 1)
    x[0, 3, 7] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        vae.encode(x, 30)
    with pytest.raises(ValueError, match="features"):
        vae.encode(torch.randn(2, 30, 251), 30)
    with pytest.raises(ValueError, match="NaN or infinite"):
        vae.decode(torch.full((1, 2, 32), float("nan")), 10)
