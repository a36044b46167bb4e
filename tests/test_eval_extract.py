"""Batched and distributed feature extraction with per-sample seeds.

The oracle is a plain loop that draws each sample alone from its own seed. The distributed case runs
this file under ``torchrun`` with 2 CPU processes (gloo) and must give the single-process result.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from ssmgen.eval.assets import weights_fingerprint
from ssmgen.eval.extract import (
    extract_generated_features,
    extract_image_features,
    feature_protocol,
    quantize_images,
    run_extractor,
)

NUM_SAMPLES, SEED = 7, 11


def toy_sample_fn(indices: list[int], seeds: list[int]) -> torch.Tensor:
    """A 'generator' whose sample depends only on its seed: (B, 1, 6, 6) in [0, 1]."""
    return torch.stack([torch.rand(1, 6, 6, generator=torch.Generator().manual_seed(s)) for s in seeds])


class ToyExtractor(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(36, 5)
        with torch.no_grad():
            self.proj.weight.copy_(torch.linspace(-1, 1, 180).view(5, 36))
            self.proj.bias.zero_()

    def forward(self, images):
        features = self.proj(images.float().flatten(1) / 255)
        return {"features": features, "logits": features[:, :3]}


def one_sample_at_a_time() -> np.ndarray:
    extractor = ToyExtractor()
    rows = [extractor(quantize_images(toy_sample_fn([i], [SEED + i]), "round"))["features"] for i in range(NUM_SAMPLES)]
    return torch.cat(rows).detach().double().numpy()


def test_quantisation_modes_and_range_check():
    images = torch.tensor([0.0, 0.5 / 255, 1.5 / 255, 0.999, 1.0]).view(1, 1, 1, 5)
    assert quantize_images(images, "round").flatten().tolist() == [0, 0, 2, 255, 255]
    assert quantize_images(images, "truncate").flatten().tolist() == [0, 0, 1, 254, 255]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        quantize_images(images * 2 - 1)
    with pytest.raises(ValueError, match="mode"):
        quantize_images(images, "nearest")


@pytest.mark.parametrize("batch_size", [1, 3, 100])
def test_generated_features_equal_the_one_at_a_time_oracle(batch_size):
    features = extract_generated_features(
        toy_sample_fn, NUM_SAMPLES, ToyExtractor(), batch_size=batch_size, seed=SEED, progress=False
    )
    assert features["features"].shape == (NUM_SAMPLES, 5) and features["logits"].shape == (NUM_SAMPLES, 3)
    np.testing.assert_allclose(features["features"], one_sample_at_a_time(), rtol=1e-5, atol=1e-5)


def test_image_features_keep_order_and_reject_mixed_sizes():
    images = [torch.full((1, 6, 6), i, dtype=torch.uint8) for i in range(5)]
    features = extract_image_features(images, ToyExtractor(), batch_size=2, progress=False)["features"]
    expected = ToyExtractor()(torch.stack(images))["features"].detach().double().numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="share one shape"):
        extract_image_features([images[0], torch.zeros(1, 5, 5, dtype=torch.uint8)], ToyExtractor(), progress=False)


def test_plain_modules_get_a_protocol_from_their_class_and_weights():
    extractor = ToyExtractor()
    protocol = feature_protocol(extractor, "round")
    assert protocol.extractor == "ToyExtractor" and protocol.resize == "none"
    assert protocol.weights_sha256 == weights_fingerprint(extractor.state_dict())
    assert run_extractor(nn.Flatten(), torch.zeros(2, 1, 2, 2, dtype=torch.uint8))["features"].shape == (2, 4)
    with pytest.raises(ValueError, match="shape"):
        run_extractor(nn.Identity(), torch.zeros(2, 1, 2, 2, dtype=torch.uint8))


def test_two_processes_give_the_single_process_result(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.getcwd())
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = subprocess.run([*command, __file__, str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = one_sample_at_a_time()
    for rank in (0, 1):  # every process receives all features, in index order
        np.testing.assert_allclose(np.load(tmp_path / f"rank{rank}.npy"), expected, rtol=1e-5, atol=1e-5)


if __name__ == "__main__":  # the distributed worker, started by torchrun from the test above
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    assert accelerator.num_processes == 2
    gathered = extract_generated_features(
        toy_sample_fn, NUM_SAMPLES, ToyExtractor(), batch_size=2, seed=SEED, accelerator=accelerator, progress=False
    )
    np.save(os.path.join(sys.argv[1], f"rank{accelerator.process_index}.npy"), gathered["features"])
