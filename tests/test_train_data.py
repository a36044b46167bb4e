"""Training data: the resumable sharded order, ADM's crop, image folders and latent caches."""

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DiffusionPipeline
from PIL import Image
from test_train_support import run_in_process, tiny_config
from torchvision import transforms

from ssmgen.data.images import ImageFolderDataset, LatentCacheDataset, center_crop_arr, random_flip
from ssmgen.train.data import DataPosition, ShardedEpochBatches
from ssmgen.train.encode_latents import encode_latents


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_sharded_batches_are_disjoint_cover_each_epoch_and_reshuffle():
    n, b, world = 23, 3, 2
    ranks = [iter(ShardedEpochBatches(n, b, world, r, seed=5, start=DataPosition())) for r in range(world)]
    per_epoch = n // (b * world)  # 3 global batches, 5 examples dropped
    epochs = []
    for _ in range(2):
        seen = [i for _ in range(per_epoch) for it in ranks for i in next(it)]
        assert len(seen) == len(set(seen)) == per_epoch * b * world
        epochs.append(seen)
    assert epochs[0] != epochs[1]
    assert set(epochs[0]) <= set(range(n))


def test_sharded_batches_resume_where_they_stopped():
    full = take(iter(ShardedEpochBatches(20, 4, 1, 0, seed=1, start=DataPosition())), 12)
    position = DataPosition()
    for _ in range(7):
        position.advance(batches_per_epoch=5)
    assert (position.epoch, position.batch) == (1, 2)
    resumed = take(iter(ShardedEpochBatches(20, 4, 1, 0, seed=1, start=position)), 5)
    assert resumed == full[7:]


def test_global_batch_larger_than_dataset_is_refused():
    with pytest.raises(ValueError, match=r"data.batch_size: the global batch \(8 x 2 processes\) is larger"):
        ShardedEpochBatches(10, 8, 2, 0, seed=0, start=DataPosition())


def pattern_image(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_center_crop_matches_torchvision_resize_and_crop():
    image = pattern_image(36, 24)  # short side < 2 x 16: a bicubic resize to 24x16, then the central 16x16
    expected = transforms.CenterCrop(16)(
        transforms.Resize(16, interpolation=transforms.InterpolationMode.BICUBIC)(image)
    )
    np.testing.assert_array_equal(np.asarray(center_crop_arr(image, 16)), np.asarray(expected))


def test_center_crop_halves_large_images_with_a_box_filter():
    image = pattern_image(96, 64)  # 64 >= 2 x 16 twice: two box halvings to 24x16, then the crop
    pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(np.array(image)).permute(2, 0, 1).double(), 4)
    expected = pooled[:, :, 4:20].permute(1, 2, 0).numpy()
    # Each halving rounds to uint8, so two halvings differ from one 4x4 average by up to 2 levels.
    np.testing.assert_allclose(np.asarray(center_crop_arr(image, 16)), expected, atol=2.0)


def test_random_flip_flips_about_half_with_the_global_rng():
    images = torch.arange(64 * 4, dtype=torch.float32).reshape(64, 1, 1, 4)
    torch.manual_seed(0)
    flipped = random_flip(images)
    torch.manual_seed(0)
    again = random_flip(images)
    torch.testing.assert_close(flipped, again)
    is_flipped = (flipped == images.flip(-1)).flatten(1).all(1)
    assert ((flipped == images).flatten(1).all(1) | is_flipped).all()
    assert 16 < int(is_flipped.sum()) < 48


def save_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_with_classes_and_flat(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    save_png(tmp_path / "classes" / "dog" / "a.png", pixels)
    save_png(tmp_path / "classes" / "cat" / "b.png", pixels)
    save_png(tmp_path / "classes" / "cat" / "c.png", pixels)
    dataset = ImageFolderDataset(tmp_path / "classes", resolution=8)
    assert dataset.class_names == ("cat", "dog") and len(dataset) == 3
    assert [int(dataset[i]["class_labels"]) for i in range(3)] == [0, 0, 1]
    expected = torch.from_numpy(pixels).permute(2, 0, 1).float() / 127.5 - 1
    torch.testing.assert_close(dataset[0]["sample"], expected)

    save_png(tmp_path / "flat" / "x.png", pixels)
    flat = ImageFolderDataset(tmp_path / "flat", resolution=8)
    assert flat.class_names is None and set(flat[0]) == {"sample"}

    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="data.path: no images"):
        ImageFolderDataset(tmp_path / "empty", resolution=8)


def tiny_autoencoder(folder):
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
        scaling_factor=0.5,
    )
    vae.save_pretrained(folder)
    return vae.eval()


@pytest.fixture
def digit_folder(tmp_path):
    rng = np.random.default_rng(2)
    for label in ("0", "1"):
        for k in range(3):
            save_png(tmp_path / "images" / label / f"{k}.png", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    return tmp_path / "images"


def test_encode_latents_mean_matches_the_autoencoder(tmp_path, digit_folder):
    vae = tiny_autoencoder(tmp_path / "vae")
    out = encode_latents(
        str(tmp_path / "vae"),
        digit_folder,
        16,
        tmp_path / "cache",
        batch_size=4,
        num_workers=0,
        flip=True,
        mode="mean",
        device="cpu",
    )
    cache = LatentCacheDataset(out)
    meta = json.loads((out / "meta.json").read_text())
    assert len(cache) == 12 and meta["latent_shape"] == [4, 8, 8] and meta["class_names"] == ["0", "1"]
    images = ImageFolderDataset(digit_folder, 16)
    with torch.no_grad():
        for i in (0, 5):
            x = images[i]["sample"][None]
            torch.testing.assert_close(
                cache[i]["sample"], vae.encode(x).latent_dist.mean[0] * 0.5, atol=1e-5, rtol=1e-5
            )
            torch.testing.assert_close(
                cache[i + 6]["sample"], vae.encode(x.flip(-1)).latent_dist.mean[0] * 0.5, atol=1e-5, rtol=1e-5
            )
            assert int(cache[i]["class_labels"]) == int(cache[i + 6]["class_labels"]) == images[i]["class_labels"]
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())


def test_encode_latents_samples_the_posterior(tmp_path, digit_folder):
    vae = tiny_autoencoder(tmp_path / "vae")
    out = encode_latents(str(tmp_path / "vae"), digit_folder, 16, tmp_path / "cache", num_workers=0, device="cpu")
    cache = LatentCacheDataset(out)
    images = ImageFolderDataset(digit_folder, 16)
    with torch.no_grad():
        posterior = vae.encode(torch.stack([images[i]["sample"] for i in range(6)])).latent_dist
    z = torch.stack([cache[i]["sample"] for i in range(6)]) / 0.5
    standardized = (z - posterior.mean) / posterior.std
    assert abs(standardized.mean().item()) < 0.1 and standardized.std().item() == pytest.approx(1.0, abs=0.1)


def test_encode_latents_refuses_a_resolution_the_autoencoder_cannot_halve(tmp_path, digit_folder):
    tiny_autoencoder(tmp_path / "vae")
    with pytest.raises(ValueError, match="resolution 15 is not a multiple"):
        encode_latents(str(tmp_path / "vae"), digit_folder, 15, tmp_path / "cache", device="cpu")


def test_dit_trains_on_a_latent_cache_and_exports_the_autoencoder(tmp_path, digit_folder):
    import ssmgen.pipelines  # noqa: F401  (registers the ssmgen pipeline classes with diffusers)

    tiny_autoencoder(tmp_path / "vae")
    cache = encode_latents(
        str(tmp_path / "vae"), digit_folder, 16, tmp_path / "cache", num_workers=0, flip=True, device="cpu"
    )
    overrides = ["--data.dataset", "latents", "--data.path", str(cache), "--data.resolution", "16"]
    overrides += ["--data.batch_size", "4", "--max_steps", "3"]
    result = run_in_process(tiny_config("dit", tmp_path / "run", *overrides))
    pipeline = DiffusionPipeline.from_pretrained(result.pipeline)
    assert isinstance(pipeline.vae, AutoencoderKL) and pipeline.model.config.sample_size == 8
    assert not pipeline.scheduler.config.clip_sample  # latents are not confined to [-1, 1]
    images = pipeline(class_labels=[0, 1], num_inference_steps=2, guidance_scale=1.5, output_type="np").images
    assert images.shape == (2, 16, 16, 3)
