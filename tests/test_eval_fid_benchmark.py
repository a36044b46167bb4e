"""benchmarks/fid_images.py on a tiny random diffusers DDPMPipeline, with the digits classifier as extractor.

The oracle recomputes FID independently: each sample drawn alone from its seed, quantised, embedded,
and the Fréchet distance taken with numpy's covariance and scipy's sqrtm.
"""

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

from ssmgen.eval.digits_classifier import DigitsFeatureExtractor, digits_reference_images, train_digits_classifier
from ssmgen.eval.extract import feature_protocol
from ssmgen.eval.fid import ImageFolder, pipeline_sampler, reference_statistics
from ssmgen.eval.stats import FIDStatistics

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "fid_images.py"
NUM_SAMPLES, STEPS = 12, 3


def load_benchmark():
    spec = importlib.util.spec_from_file_location("fid_images_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid-benchmark")
    train_digits_classifier(root / "classifier", resolution=16, epochs=1)
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=20)).save_pretrained(root / "pipeline")
    extractor = DigitsFeatureExtractor.from_pretrained(root / "classifier")
    reference = reference_statistics(digits_reference_images(16)[0], extractor, progress=False)
    reference.save(root / "reference.npz")
    return root


def oracle_fid(root: Path) -> float:
    extractor = DigitsFeatureExtractor.from_pretrained(root / "classifier")
    pipe = DDPMPipeline.from_pretrained(root / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    features = []
    for index in range(NUM_SAMPLES):
        generator = [torch.Generator().manual_seed(index)]
        image = pipe(batch_size=1, generator=generator, num_inference_steps=STEPS, output_type="np").images
        uint8 = torch.from_numpy(np.round(image * 255).astype(np.uint8)).permute(0, 3, 1, 2)
        features.append(extractor(uint8)["features"].double().numpy())
    generated = np.concatenate(features)
    real = extractor(digits_reference_images(16)[0])["features"].double().numpy()
    mu1, mu2 = real.mean(0), generated.mean(0)
    sigma1, sigma2 = np.cov(real, rowvar=False), np.cov(generated, rowvar=False)
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


# 12 samples give a singular covariance product, for which scipy warns; its trace is still accurate.
@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
def test_benchmark_writes_a_row_whose_fid_matches_an_independent_computation(assets, tmp_path):
    out = tmp_path / "rows.jsonl"
    argv = [
        *("--pipeline", str(assets / "pipeline"), "--reference", str(assets / "reference.npz")),
        *("--extractor", "digits", "--digits-classifier", str(assets / "classifier")),
        *("--num-samples", str(NUM_SAMPLES), "--batch-size", "5", "--steps", str(STEPS)),
        *("--out", str(out), "--no-progress"),
    ]
    with pytest.warns(UserWarning, match="rank-deficient"):  # 12 samples of 128-d features
        row = load_benchmark().main(argv)
    assert json.loads(out.read_text().splitlines()[-1]) == row
    assert row["model"] == "pipeline" and row["pipeline"] == "DDPMPipeline" and row["sampler"] == "DDPMScheduler"
    assert row["num_samples"] == NUM_SAMPLES and row["steps"] == STEPS and row["cfg"] is None
    assert row["extractor"] == "digits-classifier/16" and row["quantization"] == "round"
    assert 1.0 <= row["inception_score"] <= 10.0
    assert 0.0 <= row["precision"] <= 1.0 and 0.0 <= row["recall"] <= 1.0 and row["time_s"] > 0
    assert row["fid"] == pytest.approx(oracle_fid(assets), rel=1e-5)


def test_reference_from_an_image_folder_or_adm_batch_equals_the_in_memory_reference(assets, tmp_path):
    from PIL import Image

    extractor = DigitsFeatureExtractor.from_pretrained(assets / "classifier")
    images = digits_reference_images(16)[0][:150]
    for index, image in enumerate(images):
        Image.fromarray(image[0].numpy(), mode="L").save(tmp_path / f"{index:04d}.png")
    assert ImageFolder(tmp_path)[3].shape == (1, 16, 16)
    from_folder = reference_statistics(tmp_path, extractor, progress=False)
    in_memory = reference_statistics(images, extractor, progress=False)
    np.testing.assert_array_equal(from_folder.mu, in_memory.mu)
    assert from_folder.protocol == feature_protocol(extractor, "uint8")
    # an ADM batch: its precomputed Inception statistics do not apply to this extractor, the images do
    np.savez(tmp_path / "batch.npz", arr_0=images.permute(0, 2, 3, 1).numpy(), mu=np.zeros(2048), sigma=np.eye(2048))
    from_adm = reference_statistics(tmp_path / "batch.npz", extractor, progress=False)
    np.testing.assert_array_equal(from_adm.mu, in_memory.mu)


class FakeClassConditionalPipeline:
    """DiTPipeline's call convention; the image encodes the label and the sample's own noise."""

    def __init__(self):
        self.components = {"transformer": SimpleNamespace(config={"num_class_embeds": 4})}
        self.calls = []

    def __call__(self, class_labels, num_inference_steps=50, guidance_scale=4.0, generator=None, output_type="pil"):
        self.calls.append(dict(class_labels=class_labels, steps=num_inference_steps, cfg=guidance_scale))
        noise = [torch.rand(1, generator=g).item() for g in generator]
        images = np.array([[[[label / 4 + value / 8]]] for label, value in zip(class_labels, noise, strict=True)])
        return SimpleNamespace(images=images)  # (B, 1, 1, 1) as (B, H, W, C)


def test_class_conditional_pipelines_get_balanced_labels_and_per_sample_seeds():
    pipe = FakeClassConditionalPipeline()
    sample = pipeline_sampler(pipe, num_inference_steps=7, guidance_scale=1.5)
    images = sample([5, 6, 7], [105, 106, 107])
    assert pipe.calls == [dict(class_labels=[1, 2, 3], steps=7, cfg=1.5)]
    alone = sample([6], [106])
    assert images.shape == (3, 1, 1, 1) and images[1].item() == alone[0].item()
    with pytest.raises(ValueError, match="num_classes"):
        pipeline_sampler(SimpleNamespace(__call__=pipe.__call__, components={}))


def test_stats_and_compare_commands(assets, tmp_path, capsys):
    from PIL import Image

    from ssmgen.eval.fid import main

    for index, image in enumerate(digits_reference_images(16)[0][:150]):
        Image.fromarray(image[0].numpy(), mode="L").save(tmp_path / f"{index:03d}.png")
    classifier = str(assets / "classifier")
    main(["stats", str(tmp_path), str(tmp_path / "a.npz"), "--extractor", "digits", "--digits-classifier", classifier])
    main(["compare", str(tmp_path / "a.npz"), str(assets / "reference.npz")])
    fid = float(capsys.readouterr().out.split()[-1])
    expected = FIDStatistics.load(tmp_path / "a.npz").frechet_distance(FIDStatistics.load(assets / "reference.npz"))
    assert fid == pytest.approx(expected, abs=1e-6) and fid > 0
