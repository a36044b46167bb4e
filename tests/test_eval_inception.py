"""The FID Inception against pytorch-fid and torch-fidelity, with one random weights file for all three.

No weights can be downloaded, so a random state dict with the published key layout is saved to a
file and loaded strictly into both peers' networks and ours; with the same uint8 images the features
must match (each resize mode against the library that defines it).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_fid import inception as pytorch_fid_inception
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from ssmgen.eval.assets import MissingAssetError
from ssmgen.eval.inception import (
    INCEPTION_WEIGHTS_ENV,
    InceptionFeatureExtractor,
    random_fid_inception_state_dict,
    resize_bilinear_tf1,
    resolve_inception_weights,
)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(random_fid_inception_state_dict(seed=0), path)
    return path


@pytest.fixture(scope="module")
def images():
    """Two uint8 images of a non-square size, so both resize axes are exercised."""
    return torch.randint(0, 256, (2, 3, 24, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def ours(weights_file, images):
    """Our pool3 features and logits of ``images`` in each resize mode (computed once)."""
    return {mode: InceptionFeatureExtractor(weights_file, resize=mode)(images) for mode in ("tf", "pytorch-fid")}


def test_tf_mode_matches_torch_fidelity(weights_file, images, ours):
    peer = FeatureExtractorInceptionV3(
        "inception-v3-compat",
        ["64", "192", "768", "2048", "logits_unbiased"],
        feature_extractor_weights_path=str(weights_file),
    )
    expected = dict(zip(["64", "192", "768", "2048", "logits"], peer(images), strict=True))
    torch.testing.assert_close(ours["tf"]["features"], expected["2048"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours["tf"]["logits"], expected["logits"], rtol=1e-5, atol=1e-5)
    for dim in (64, 192, 768):
        extractor = InceptionFeatureExtractor(weights_file, resize="tf", feature_dim=dim)
        torch.testing.assert_close(extractor(images)["features"], expected[str(dim)], rtol=1e-5, atol=1e-5)


def test_pytorch_fid_mode_matches_pytorch_fid(weights_file, images, ours, monkeypatch):
    monkeypatch.setattr(
        pytorch_fid_inception, "load_state_dict_from_url", lambda *a, **k: torch.load(weights_file, weights_only=True)
    )
    peer = pytorch_fid_inception.InceptionV3(output_blocks=[0, 1, 2, 3]).eval()
    with torch.no_grad():  # pytorch-fid reads files with ToTensor: x / 255 in float32
        blocks = peer(images.float() / 255)
    expected = {
        dim: F.adaptive_avg_pool2d(b, 1).flatten(1) for dim, b in zip((64, 192, 768, 2048), blocks, strict=True)
    }
    torch.testing.assert_close(ours["pytorch-fid"]["features"], expected[2048], rtol=1e-5, atol=1e-5)
    for dim in (768, 192, 64):
        extractor = InceptionFeatureExtractor(weights_file, resize="pytorch-fid", feature_dim=dim)
        torch.testing.assert_close(extractor(images)["features"], expected[dim], rtol=1e-5, atol=1e-5)


def test_the_two_resize_modes_give_different_features(ours):
    assert (ours["tf"]["features"] - ours["pytorch-fid"]["features"]).abs().max() > 1e-3


def test_tf1_resize_matches_torch_fidelity_and_a_hand_computed_case():
    image = torch.rand(2, 3, 13, 7, generator=torch.Generator().manual_seed(1)) * 255
    expected = interpolate_bilinear_2d_like_tensorflow1x(image, size=(29, 11), align_corners=False)
    torch.testing.assert_close(resize_bilinear_tf1(image, (29, 11)), expected, rtol=0, atol=0)
    # 2 -> 4 pixels: sources 0, 0.5, 1, 1.5 (no half-pixel shift); the last one clamps to pixel 1.
    row = torch.tensor([[[[10.0, 30.0]]]])
    torch.testing.assert_close(resize_bilinear_tf1(row, (1, 4)), torch.tensor([[[[10.0, 20.0, 30.0, 30.0]]]]))


def test_features_are_deterministic_and_batch_size_invariant(weights_file):
    grey = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    extractor = InceptionFeatureExtractor(weights_file)
    together = extractor(grey)["features"]
    # one image at a time, given as RGB with three equal channels (how grey files are read)
    one_by_one = torch.cat([extractor(grey[i : i + 1].expand(-1, 3, -1, -1))["features"] for i in range(2)])
    torch.testing.assert_close(together, one_by_one, rtol=1e-5, atol=1e-6)
    early = InceptionFeatureExtractor(weights_file, feature_dim=192, dtype=torch.float64)
    torch.testing.assert_close(early(grey)["features"], early(grey)["features"], rtol=0, atol=0)


def test_weights_without_batchnorm_counters_load_and_fingerprint_ignores_them(weights_file, tmp_path):
    state_dict = torch.load(weights_file, weights_only=True)
    trimmed = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    torch.save(trimmed, tmp_path / "weights-inception-2015-12-05-6726825d.pth")
    a = InceptionFeatureExtractor(weights_file)
    b = InceptionFeatureExtractor(tmp_path / "weights-inception-2015-12-05-6726825d.pth")
    assert a.weights_sha256 == b.weights_sha256


def test_wrong_state_dict_is_rejected_with_the_offending_keys(tmp_path):
    state_dict = random_fid_inception_state_dict(seed=1)
    state_dict["fc.weight"] = state_dict["fc.weight"][:1000]
    del state_dict["Mixed_7c.branch_pool.conv.weight"]
    torch.save(state_dict, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="Mixed_7c.branch_pool.conv.weight.*fc.weight"):
        InceptionFeatureExtractor(tmp_path / "broken.pth")


def test_missing_weights_error_says_which_file_where_to_get_it_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(tmp_path / "nowhere.pth"))
    with pytest.raises(MissingAssetError) as error:
        InceptionFeatureExtractor()
    message = str(error.value)
    assert "nowhere.pth" in message
    assert "pt_inception-2015-12-05-6726825d.pth" in message and "github.com/mseitzer" in message
    assert "weights-inception-2015-12-05-6726825d.pth" in message and INCEPTION_WEIGHTS_ENV in message


def test_weights_are_found_in_the_default_folder_and_missing_ones_name_it(weights_file, tmp_path, monkeypatch):
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingAssetError, match=str(tmp_path / "cache" / "ssmgen" / "inception")):
        resolve_inception_weights()
    folder = tmp_path / "cache" / "ssmgen" / "inception"
    folder.mkdir(parents=True)
    (folder / "weights-inception-2015-12-05-6726825d.pth").symlink_to(weights_file)
    assert resolve_inception_weights() == folder / "weights-inception-2015-12-05-6726825d.pth"


def test_environment_variable_supplies_the_weights(weights_file, monkeypatch):
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(weights_file))
    assert InceptionFeatureExtractor(feature_dim=64).feature_dim == 64


def test_bad_arguments_raise_value_errors(weights_file):
    with pytest.raises(ValueError, match="resize"):
        InceptionFeatureExtractor(weights_file, resize="bicubic")
    with pytest.raises(ValueError, match="feature_dim"):
        InceptionFeatureExtractor(weights_file, feature_dim=1000)
    with pytest.raises(ValueError, match="uint8"):
        InceptionFeatureExtractor(weights_file, feature_dim=64)(torch.zeros(1, 3, 8, 8))


def test_adm_reference_batch_uses_its_precomputed_statistics_under_the_tf_protocol(weights_file, tmp_path):
    from ssmgen.eval.fid import reference_statistics

    images = torch.randint(0, 256, (3, 8, 8, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    mu, sigma = np.full(2048, 0.5), np.eye(2048)
    np.savez(tmp_path / "VIRTUAL_ref.npz", arr_0=images.numpy(), mu=mu, sigma=sigma)
    extractor = InceptionFeatureExtractor(weights_file, resize="tf")
    reference = reference_statistics(tmp_path / "VIRTUAL_ref.npz", extractor, progress=False)
    np.testing.assert_array_equal(reference.mu, mu)  # whole-dataset statistics, as ADM's evaluator uses them
    expected = extractor(images.permute(0, 3, 1, 2))["features"]
    np.testing.assert_allclose(reference.features, expected.numpy(), rtol=1e-5, atol=1e-6)  # for precision/recall
    assert reference.protocol.resize == "tf" and reference.protocol.quantization == "uint8"
