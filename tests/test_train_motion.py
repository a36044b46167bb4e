"""Motion training through the shared loop: the VAE stage, latent Motion Mamba and MLD on the frozen VAE,
frame mode, exported pipelines, seeded item draws, bitwise resume, and config errors that name the key."""

import json
import re
import shutil

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file
from test_train_support import logged_losses, run_in_process, tiny_config
from transformers import BertConfig, BertModel, BertTokenizer

from ssmgen.data.motion import Text2MotionDataset, build_synthetic_dataset, recover_from_ric
from ssmgen.models import MotionVAE
from ssmgen.train.config import ObjectiveConfig
from ssmgen.train.data import SeededItems
from ssmgen.train.objectives import EpsilonObjective, MotionVAEObjective
from ssmgen.train.registry import validate_config

TEXT_DIM = 16
FAST = ["--logging.trackers", "[jsonl]"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """60 synthetic motions; the tiny configs keep the 40..67-frame ones (about 10 items)."""
    return build_synthetic_dataset(tmp_path_factory.mktemp("data") / "synthetic", 60, seed=0)


@pytest.fixture(scope="module")
def text_encoder(tmp_path_factory, synthetic):
    """A 2-layer BERT (16-d) whose vocabulary holds the synthetic captions' words, saved as a folder."""
    words = sorted({w for f in (synthetic / "texts").glob("*.txt") for w in re.findall(r"[a-z]+", f.read_text())})
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *words]
    folder = tmp_path_factory.mktemp("text_encoder")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocabulary), hidden_size=TEXT_DIM, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    BertModel(config).save_pretrained(folder)
    BertTokenizer(vocab={w: i for i, w in enumerate(vocabulary)}).save_pretrained(folder)
    return folder


def motion_config(name, output_dir, synthetic, *overrides):
    return tiny_config(name, output_dir, "--data.path", str(synthetic), *FAST, *overrides)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory, synthetic):
    output_dir = tmp_path_factory.mktemp("vae")
    result = run_in_process(motion_config("motion_vae", output_dir, synthetic, "--max_steps", "16"))
    return output_dir, result


def window_means(output_dir, size=6):
    losses = logged_losses(output_dir)
    steps = sorted(losses)
    return np.mean([losses[s] for s in steps[:size]]), np.mean([losses[s] for s in steps[-size:]])


# --------------------------------------------------------------------------------------------------
# Objectives and data draws against closed forms
# --------------------------------------------------------------------------------------------------


def test_masked_eps_loss_counts_only_the_real_frames():
    objective = EpsilonObjective(ObjectiveConfig(name="eps"))
    sample = torch.randn(3, 10, 5)
    mask = (torch.arange(10)[None] < torch.tensor([10, 6, 3])[:, None])[..., None]

    def exact_on_real_frames(noisy, timesteps):  # the true noise on real frames, garbage on padding
        abar = objective.noise_scheduler.alphas_cumprod[timesteps][:, None, None]
        noise = (noisy - abar.sqrt() * sample) / (1 - abar).sqrt()
        return torch.where(mask, noise, torch.full_like(noise, 50.0))

    loss, _ = objective.loss(exact_on_real_frames, sample, mask=mask)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    unmasked, _ = objective.loss(exact_on_real_frames, sample)
    assert unmasked.item() > 100
    with pytest.raises(ValueError, match="mask selects no element"):
        objective.loss(exact_on_real_frames, sample, mask=torch.zeros_like(mask))


def test_motion_vae_loss_is_mld_recipe_over_real_frames(synthetic):
    dataset = Text2MotionDataset(synthetic, "train", max_length=64)
    mean, std = torch.from_numpy(dataset.mean), torch.from_numpy(dataset.std)
    target = torch.stack([dataset.draw(i, torch.Generator().manual_seed(i))["motion"][:40] for i in range(2)])
    mask = torch.arange(40)[None] < torch.tensor([40, 28])[:, None]
    kl = torch.tensor([0.3, 0.5])
    config = ObjectiveConfig(name="motion_vae", kl_weight=0.01, joints_weight=2.0)

    def to_joints(features):
        return recover_from_ric(features * std + mean)

    objective = MotionVAEObjective(config)
    perfect, metrics = objective.loss(target, kl, target, mask, to_joints)
    assert perfect.item() == pytest.approx(0.01 * 0.4) and metrics["features"] == 0 and metrics["joints"] == 0
    # A constant offset d < 1 on the real frames of the normalised features: SmoothL1 = d^2 / 2 per element.
    shifted = target + 0.2 * mask[..., None]
    shifted[1, 28:] = 99.0  # padding never counts
    _, metrics = objective.loss(shifted, kl, target, mask, to_joints)
    assert metrics["features"].item() == pytest.approx(0.02, rel=1e-5)
    joints_error = torch.nn.functional.smooth_l1_loss(to_joints(shifted), to_joints(target), reduction="none")
    expected = torch.cat([joints_error[0].flatten(), joints_error[1, :28].flatten()]).mean()
    assert metrics["joints"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_seeded_items_depend_on_seed_epoch_and_index_only(synthetic):
    dataset = Text2MotionDataset(synthetic, "train", max_length=64)
    items = SeededItems(dataset, seed=3, collate=list)

    def key(item):
        return item["text"], item["length"], item["motion"].sum().item()

    forward = [key(items[(0, i)]) for i in range(len(items))]
    backward = [key(items[(0, i)]) for i in reversed(range(len(items)))][::-1]
    assert forward == backward  # order (and so the worker or the resume point) does not matter
    other_epoch = [key(items[(1, i)]) for i in range(len(items))]
    other_seed = [key(SeededItems(dataset, seed=4, collate=list)[(0, i)]) for i in range(len(items))]
    assert forward != other_epoch and forward != other_seed


# --------------------------------------------------------------------------------------------------
# Training runs
# --------------------------------------------------------------------------------------------------


def test_vae_stage_learns_and_exports_the_vae_with_its_statistics(vae_run, synthetic):
    output_dir, result = vae_run
    first, last = window_means(output_dir)
    assert last < 0.8 * first
    record = json.loads((output_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert {"features", "joints", "kl"} <= set(record)
    vae = MotionVAE.from_pretrained(result.pipeline / "vae")
    ema = load_file(result.checkpoint / "ema.safetensors")
    torch.testing.assert_close(next(vae.parameters()), ema["shadow.0"], rtol=0, atol=0)  # the EMA weights
    statistics = json.loads((result.pipeline / "normalization.json").read_text())
    np.testing.assert_allclose(statistics["feature_mean"], np.load(synthetic / "Mean.npy"), rtol=1e-6)
    np.testing.assert_allclose(statistics["feature_std"], np.load(synthetic / "Std.npy"), rtol=1e-6)


@pytest.mark.parametrize("family", ["motion_mamba", "mld"])
def test_latent_stage_learns_on_the_frozen_vae_and_exports_a_loadable_pipeline(
    family, vae_run, synthetic, text_encoder, tmp_path
):
    import ssmgen.pipelines  # noqa: F401  (lets diffusers load ssmgen pipeline folders)

    vae_dir, vae_result = vae_run
    overrides = ["--model.vae", str(vae_dir), "--model.text_encoder", str(text_encoder), "--max_steps", "30"]
    overrides += ["--optim.lr", "5e-3", "--data.batch_size", "10", "--logging.sample_every_steps", "30"]
    result = run_in_process(motion_config(family, tmp_path, synthetic, *overrides))
    first, last = window_means(tmp_path)
    assert last < 0.9 * first
    assert len(list((tmp_path / "samples").glob("motion-0000030-*.gif"))) == 2

    pipe = DiffusionPipeline.from_pretrained(result.pipeline)
    assert type(pipe).__name__ == "MotionMambaPipeline" and type(pipe.scheduler).__name__ == "DDIMScheduler"
    assert pipe.model.config.text_dim == TEXT_DIM
    stage1 = MotionVAE.from_pretrained(vae_result.pipeline / "vae").state_dict()
    assert all(torch.equal(value, stage1[key]) for key, value in pipe.vae.state_dict().items())  # frozen
    original_text = BertModel.from_pretrained(text_encoder).state_dict()
    assert all(torch.equal(value, original_text[key]) for key, value in pipe.text_encoder.state_dict().items())
    np.testing.assert_allclose(pipe.config.feature_mean, np.load(synthetic / "Mean.npy"), rtol=1e-6)
    out = pipe(["a man walks forward", "a woman jumps"], num_frames=[44, 40], num_inference_steps=3,
               generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert out.features.shape == (2, 44, 263) and out.joints.shape == (2, 44, 22, 3)
    assert np.isfinite(out.joints).all() and (out.joints[1, 40:] == 0).all()


def test_frame_mode_learns_on_the_features_with_masked_frames(synthetic, text_encoder, tmp_path):
    import ssmgen.pipelines  # noqa: F401

    overrides = ["--model.text_encoder", str(text_encoder), "--max_steps", "12", "--optim.lr", "5e-3"]
    result = run_in_process(motion_config("motion_mamba_frame", tmp_path, synthetic, *overrides))
    first, last = window_means(tmp_path, size=3)
    assert last < 0.97 * first
    pipe = DiffusionPipeline.from_pretrained(result.pipeline)
    assert pipe.vae is None and pipe.model.frame_mode
    out = pipe("a person waves", num_frames=70, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.features.shape == (1, 70, 263) and np.isfinite(out.joints).all()


def test_caption_dropout_uses_the_empty_prompt_embedding(vae_run, synthetic, text_encoder, tmp_path):
    """prepare_batch against the exported pipeline's own encode_prompt (batched, padded) as the oracle."""
    from ssmgen.train.data import build_dataset
    from ssmgen.train.objectives import build_objective
    from ssmgen.train.registry import get_family

    def prepared(dropout):
        overrides = ["--model.vae", str(vae_run[0]), "--model.text_encoder", str(text_encoder)]
        config = motion_config(
            "motion_mamba", tmp_path, synthetic, *overrides, "--model.cond_dropout_prob", str(dropout)
        )
        dataset, info = build_dataset(config.data, config.seed)
        family = get_family(config.model.family)
        hooks = family.hooks(config, info, build_objective(config.objective), family)
        model = hooks.build_model()
        batch = dataset.collate([dataset[(0, i)] for i in range(4)])
        return hooks.prepare_batch(batch, torch.device("cpu")), batch, hooks.pipeline(model)

    kept, batch, pipe = prepared(0.0)
    torch.testing.assert_close(kept["encoder_hidden_states"], pipe.encode_prompt(batch["text"]), atol=1e-5, rtol=0)
    assert kept["sample"].shape == (4, 2, 32)  # the tiny VAE's latent
    dropped, _, pipe = prepared(0.999)
    torch.testing.assert_close(dropped["encoder_hidden_states"], pipe.encode_prompt([""]).expand(4, -1))


def test_resume_replays_the_uninterrupted_motion_run_bitwise(vae_run, synthetic, text_encoder, tmp_path):
    """Data workers draw captions and crops from (seed, epoch, index), so a resumed run sees the same items."""
    overrides = ["--model.vae", str(vae_run[0]), "--model.text_encoder", str(text_encoder), "--max_steps", "6"]
    overrides += ["--checkpoint.every_steps", "3", "--checkpoint.total_limit", "null", "--data.num_workers", "1"]
    overrides += ["--data.batch_size", "4"]  # 2 batches per epoch: the resume point is mid-epoch
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    run_in_process(motion_config("motion_mamba", reference, synthetic, *overrides))
    shutil.copytree(reference / "checkpoint-3", crashed / "checkpoint-3")  # killed after writing checkpoint-3
    run_in_process(motion_config("motion_mamba", crashed, synthetic, *overrides, "--resume", "latest"))
    expected = logged_losses(reference)
    assert logged_losses(crashed) == {step: expected[step] for step in (4, 5, 6)}
    ours, theirs = (
        load_file(crashed / "checkpoint-6" / "model.safetensors"),
        load_file(reference / "checkpoint-6" / "model.safetensors"),
    )
    assert all(ours[k].equal(theirs[k]) for k in theirs)


# --------------------------------------------------------------------------------------------------
# Config errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("motion_mamba", ["--model.text_encoder", "null"], r"^model.text_encoder: model.family 'motion_mamba' needs"),
        ("motion_mamba", ["--model.vae", "null"], r"^model.vae: model.family 'motion_mamba' in latent mode needs"),
        ("mld", ["--model.vae", "null"], r"^model.vae: model.family 'mld' in latent mode needs"),
        ("motion_mamba_frame", ["--model.vae", "somewhere"], r"^model.vae: frame mode trains on the motion features"),
        ("motion_vae", ["--model.text_encoder", "x"], r"^model.text_encoder: model.family 'motion_vae' does not use"),
        ("motion_vae", ["--objective.name", "eps"], r"^objective.name: 'eps' is not supported by model.family"),
        ("motion_vae", ["--data.max_frames", "66"], r"^data.min_frames / data.max_frames: need"),
        ("motion_vae", ["--data.dataset", "digits"], r"^data.dataset: 'digits' holds image data"),
        ("motion_vae", ["--objective.kl_weight", "-1"], r"^objective.kl_weight must be >= 0"),
        ("motion_mamba", ["--model.preset", "huge"], r"^model.preset: unknown preset 'huge'"),
    ],
)
def test_config_errors_name_the_key(name, overrides, message, tmp_path):
    config = motion_config(name, tmp_path, tmp_path / "data", *overrides)
    with pytest.raises(ValueError, match=message):
        validate_config(config)


def test_build_time_errors_name_the_key(vae_run, synthetic, text_encoder, tmp_path):
    base = ["--model.text_encoder", str(text_encoder)]
    cases = [
        (["--model.vae", str(tmp_path)], r"^model.vae: .* holds no MotionVAE"),
        (["--model.vae", str(vae_run[0]), "--data.max_frames", "300"], r"^data.max_frames: 300 frames exceed the 252"),
        (
            ["--model.vae", str(vae_run[0]), "--model.text_encoder", str(tmp_path / "missing")],
            r"^model.text_encoder: could not load",
        ),
        (["--model.vae", str(vae_run[0]), "--data.split", "nope"], r"^data.split: .* has no nope.txt"),
        (["--model.vae", str(vae_run[0]), "--data.synthetic_motions", "61"], r"^data.path: .* holds 60 synthetic"),
        (["--model.vae", str(vae_run[0]), "--model.kwargs.text_dim", "8"], r"model.kwargs.text_dim=8 contradicts"),
    ]
    for overrides, message in cases:
        with pytest.raises(ValueError, match=message):
            run_in_process(motion_config("motion_mamba", tmp_path / "run", synthetic, *base, *overrides))
    other = tmp_path / "other"  # the VAE's statistics are not this folder's
    shutil.copytree(synthetic, other)
    np.save(other / "Mean.npy", np.load(synthetic / "Mean.npy") + 1.0)
    with pytest.raises(ValueError, match=r"^model.vae: .* other statistics than the data's"):
        run_in_process(motion_config("motion_mamba", tmp_path / "run", other, *base, "--model.vae", str(vae_run[0])))
