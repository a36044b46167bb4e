"""The digits classifier: trained locally, accurate on held-out digits, a deterministic FID extractor."""

import json

import numpy as np
import pytest
import torch

from ssmgen.eval.digits_classifier import (
    DigitsFeatureExtractor,
    digits_reference_images,
    digits_split,
    train_digits_classifier,
)
from ssmgen.eval.extract import extract_image_features, feature_protocol
from ssmgen.eval.stats import FIDStatistics


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("digits-classifier")
    train_digits_classifier(out_dir, resolution=16, seed=0)
    return out_dir


def test_training_writes_weights_config_and_summary(classifier_dir):
    assert (classifier_dir / "diffusion_pytorch_model.safetensors").is_file()
    config = json.loads((classifier_dir / "config.json").read_text())
    assert config["resolution"] == 16 and config["num_classes"] == 10
    summary = json.loads((classifier_dir / "training.json").read_text())
    assert summary["num_train"] + summary["num_held_out"] == 1797


def test_reloaded_classifier_is_accurate_on_held_out_digits(classifier_dir):
    extractor = DigitsFeatureExtractor.from_pretrained(classifier_dir)
    _, (held_out_images, held_out_labels) = digits_split(16, held_out_fraction=0.2, seed=0)
    as_uint8 = ((held_out_images + 1) / 2 * 255).round().to(torch.uint8)  # how samples reach the extractor
    accuracy = (extractor.classify(as_uint8) == held_out_labels).double().mean().item()
    assert accuracy >= 0.95


def test_features_are_deterministic_and_batch_size_invariant(classifier_dir):
    extractor = DigitsFeatureExtractor.from_pretrained(classifier_dir)
    images = digits_reference_images(16)[0][:60]
    big = extract_image_features(images, extractor, batch_size=60, progress=False)
    small = extract_image_features(images, extractor, batch_size=7, progress=False)
    np.testing.assert_allclose(big["features"], small["features"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(
        big["logits"], extract_image_features(images, extractor, 60, progress=False)["logits"]
    )
    assert big["features"].shape == (60, 128) and big["logits"].shape == (60, 10)


def test_digits_fid_separates_real_digits_from_noise(classifier_dir):
    extractor = DigitsFeatureExtractor.from_pretrained(classifier_dir)
    protocol = feature_protocol(extractor, "uint8")
    images = digits_reference_images(16)[0]
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    half_a, half_b = images[order[:800]], images[order[800:1600]]
    noise = torch.randint(0, 256, (800, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))

    def stats(x):
        return FIDStatistics.from_features(
            extract_image_features(x, extractor, 200, progress=False)["features"], protocol
        )

    real_vs_real = stats(half_a).frechet_distance(stats(half_b))
    real_vs_noise = stats(half_a).frechet_distance(stats(noise))
    assert real_vs_noise > 20 * real_vs_real


def test_bad_inputs_are_clear_errors(classifier_dir, tmp_path):
    extractor = DigitsFeatureExtractor.from_pretrained(classifier_dir)
    with pytest.raises(ValueError, match=r"\(B, 1, 16, 16\)"):
        extractor(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        extractor(torch.zeros(2, 1, 16, 16))
    with pytest.raises(FileNotFoundError, match="python -m ssmgen.eval.digits_classifier"):
        DigitsFeatureExtractor.from_pretrained(tmp_path / "missing")
