"""The FID Inception-v3 network (TF graph ``inception-2015-12-05``) and its feature extractor.

Every published FID uses the same network: the TensorFlow Inception-v3 graph first used by TTUR. Its
PyTorch port differs from torchvision's Inception-v3 in three places (1008 classes; average pools
that do not count padding; a max pool in the last block). Two files hold that port with the key
layout of torchvision's ``Inception3(num_classes=1008, aux_logits=False)``:

* pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``,
* torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``.

:class:`InceptionFeatureExtractor` loads either from a path (``weights=`` or the
``SSMGEN_INCEPTION_WEIGHTS`` environment variable) and maps uint8 images to pool3 features with one
of two resize protocols:

* ``"tf"`` (default): TF1 bilinear resize on [0, 255] then ``(x - 128) / 128``, as in TTUR, the ADM
  evaluator (DiT's numbers) and torch-fidelity;
* ``"pytorch-fid"``: ``x / 255``, PyTorch bilinear (half-pixel) resize, then ``2x - 1``, as in pytorch-fid.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ssmgen.eval.assets import MissingAssetError, require_asset, weights_fingerprint

INCEPTION_WEIGHTS_ENV = "SSMGEN_INCEPTION_WEIGHTS"
INCEPTION_WEIGHTS_FILES = {
    "pt_inception-2015-12-05-6726825d.pth": (
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
    ),
    "weights-inception-2015-12-05-6726825d.pth": (
        "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
    ),
}
INCEPTION_FEATURE_DIMS = (64, 192, 768, 2048)
INCEPTION_NUM_CLASSES = 1008
INCEPTION_INPUT_SIZE = 299
RESIZE_MODES = ("tf", "pytorch-fid")


# --------------------------------------------------------------------------------------------------
# The network. Module names follow torchvision's Inception3 so the published state dicts load as is.
# --------------------------------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _chain(x: torch.Tensor, *layers: nn.Module) -> torch.Tensor:
    for layer in layers:
        x = layer(x)
    return x


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-1 average pool that, like TensorFlow's, does not count the zero padding."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """Mixed_5b/5c/5d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch1x1(x),
                _chain(x, self.branch5x5_1, self.branch5x5_2),
                _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
                self.branch_pool(_tf_avg_pool(x)),
            ],
            dim=1,
        )


class InceptionB(nn.Module):
    """Mixed_6a (35 -> 17): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch3x3(x),
                _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
                F.max_pool2d(x, kernel_size=3, stride=2),
            ],
            dim=1,
        )


class InceptionC(nn.Module):
    """Mixed_6b..6e: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avgpool-1x1."""

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        row, col = dict(kernel_size=(1, 7), padding=(0, 3)), dict(kernel_size=(7, 1), padding=(3, 0))
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, **row)
        self.branch7x7_3 = BasicConv2d(c7, 192, **col)
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, **row)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, **row)
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3)
        double += (self.branch7x7dbl_4, self.branch7x7dbl_5)
        return torch.cat(
            [
                self.branch1x1(x),
                _chain(x, self.branch7x7_1, self.branch7x7_2, self.branch7x7_3),
                _chain(x, *double),
                self.branch_pool(_tf_avg_pool(x)),
            ],
            dim=1,
        )


class InceptionD(nn.Module):
    """Mixed_7a (17 -> 8): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4)
        return torch.cat(
            [
                _chain(x, self.branch3x3_1, self.branch3x3_2),
                _chain(x, *seven),
                F.max_pool2d(x, kernel_size=3, stride=2),
            ],
            dim=1,
        )


class InceptionE(nn.Module):
    """Mixed_7b/7c: 1x1 | 1x1-(1x3,3x1) | 1x1-3x3-(1x3,3x1) | pool-1x1.

    ``pool="avg"`` (Mixed_7b) is TF's padding-free average pool; ``pool="max"`` (Mixed_7c) is the
    3x3 stride-1 max pool that the FID graph has in its last block.
    """

    def __init__(self, in_channels: int, pool: str):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        row, col = dict(kernel_size=(1, 3), padding=(0, 1)), dict(kernel_size=(3, 1), padding=(1, 0))
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, **row)
        self.branch3x3_2b = BasicConv2d(384, 384, **col)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, **row)
        self.branch3x3dbl_3b = BasicConv2d(384, 384, **col)
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch3x3_1(x)
        double = _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2)
        pooled = _tf_avg_pool(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(single),
                self.branch3x3_2b(single),
                self.branch3x3dbl_3a(double),
                self.branch3x3dbl_3b(double),
                self.branch_pool(pooled),
            ],
            dim=1,
        )


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 on normalised input (B, 3, 299, 299) in [-1, 1].

    ``forward(x, feature_dim)`` returns ``{"features": (B, feature_dim)}`` for feature_dim in
    64/192/768/2048 (spatially averaged activations after the first max pool, the second max pool,
    Mixed_6e, and pool3) and, for 2048, also ``"logits"`` (B, 1008): pool3 times the classifier
    weights without the bias, the logits TTUR, ADM and torch-fidelity use for the Inception Score.
    The network runs only as far as ``feature_dim`` needs.
    """

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(2048, INCEPTION_NUM_CLASSES)

    def forward(self, x: torch.Tensor, feature_dim: int = 2048) -> dict[str, torch.Tensor]:
        if feature_dim not in INCEPTION_FEATURE_DIMS:
            raise ValueError(f"feature_dim must be one of {INCEPTION_FEATURE_DIMS}, got {feature_dim!r}")
        x = _chain(x, self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (B, 64, 73, 73)
        if feature_dim == 64:
            return {"features": x.mean(dim=(2, 3))}
        x = _chain(x, self.Conv2d_3b_1x1, self.Conv2d_4a_3x3)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (B, 192, 35, 35)
        if feature_dim == 192:
            return {"features": x.mean(dim=(2, 3))}
        x = _chain(x, self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a)
        x = _chain(x, self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e)  # (B, 768, 17, 17)
        if feature_dim == 768:
            return {"features": x.mean(dim=(2, 3))}
        x = _chain(x, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c)  # (B, 2048, 8, 8)
        pool3 = x.mean(dim=(2, 3))
        return {"features": pool3, "logits": pool3 @ self.fc.weight.T}


# --------------------------------------------------------------------------------------------------
# Resizing
# --------------------------------------------------------------------------------------------------


def resize_bilinear_tf1(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TensorFlow 1.x ``resize_bilinear`` (align_corners=False) of (B, C, H, W) float images.

    TF1 maps output pixel ``i`` to source ``i * in / out`` (no half-pixel offset) in float32 and
    clamps the upper neighbour at the border; PyTorch's bilinear uses half-pixel centres instead.
    """
    if images.dim() != 4 or not torch.is_floating_point(images):
        raise ValueError(f"images must be a float (B, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}")

    def source_grid(in_size: int, out_size: int):
        scale = torch.tensor(in_size / out_size, dtype=torch.float32)
        coords = torch.arange(out_size, dtype=torch.float32) * scale
        lower = coords.long()
        upper = (lower + 1).clamp(max=in_size - 1)
        frac = (coords - lower.float()).to(images.dtype)
        return lower.to(images.device), upper.to(images.device), frac.to(images.device)

    y0, y1, dy = source_grid(images.shape[2], size[0])
    x0, x1, dx = source_grid(images.shape[3], size[1])
    rows_top, rows_bottom = images[:, :, y0, :], images[:, :, y1, :]
    top = rows_top[..., x0] + (rows_top[..., x1] - rows_top[..., x0]) * dx
    bottom = rows_bottom[..., x0] + (rows_bottom[..., x1] - rows_bottom[..., x0]) * dx
    return top + (bottom - top) * dy[:, None]


def inception_input(images: torch.Tensor, resize: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Map uint8 images (B, 1 or 3, H, W) to the network input (B, 3, 299, 299) in [-1, 1].

    Grey images are repeated to three channels, as ``PIL.Image.convert("RGB")`` does when the
    reference tools read them from files.
    """
    if images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 in [0, 255], got {images.dtype}; quantise them first")
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (B, 1 or 3, H, W), got {tuple(images.shape)}")
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    size = (INCEPTION_INPUT_SIZE, INCEPTION_INPUT_SIZE)
    if resize == "tf":
        return (resize_bilinear_tf1(images.to(dtype), size) - 128) / 128
    if resize == "pytorch-fid":
        x = F.interpolate(images.to(dtype) / 255, size=size, mode="bilinear", align_corners=False)
        return 2 * x - 1
    raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------


def default_weights_folders() -> list[Path]:
    """Folders searched when no path is given: ssmgen's cache, then pytorch-fid's torch-hub cache."""
    ssmgen_cache = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "ssmgen" / "inception"
    return [ssmgen_cache, Path(torch.hub.get_dir()) / "checkpoints"]


def _missing_weights_help() -> str:
    sources = "\n".join(f"  {name}\n    {url}" for name, url in INCEPTION_WEIGHTS_FILES.items())
    return (
        "ssmgen never downloads weights. Download either file (same TF weights, two key-compatible ports):\n"
        f"{sources}\n"
        f"then pass inception_weights=/path/to/file, set {INCEPTION_WEIGHTS_ENV}=/path/to/file, "
        f"or put it in {default_weights_folders()[0]}/."
    )


def resolve_inception_weights(weights: str | os.PathLike | None = None) -> Path:
    """Find the Inception weights: ``weights``, then ``$SSMGEN_INCEPTION_WEIGHTS``, then the default folders."""
    if weights is None:
        weights = os.environ.get(INCEPTION_WEIGHTS_ENV) or None
    if weights is not None:
        return require_asset(weights, what="The FID Inception weights", how_to_get=_missing_weights_help())
    for folder in default_weights_folders():
        for name in INCEPTION_WEIGHTS_FILES:
            if (folder / name).is_file():
                return folder / name
    raise MissingAssetError(
        "The FID Inception weights were not given and are not in the default folders "
        f"({', '.join(map(str, default_weights_folders()))}).\n{_missing_weights_help()}"
    )


def load_fid_inception(weights: str | os.PathLike | None = None) -> FIDInceptionV3:
    """Build :class:`FIDInceptionV3` and load the pytorch-fid or torch-fidelity weights file."""
    path = resolve_inception_weights(weights)
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state_dict, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state_dict).__name__})")
    network = FIDInceptionV3()
    expected = network.state_dict()
    # Old checkpoints may lack BatchNorm's integer counter, which plays no part in evaluation.
    missing = [k for k in expected if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k}: {tuple(state_dict[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"{path} is not an FID Inception-v3 state dict: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shapes {wrong_shape[:5]}"
        )
    network.load_state_dict(state_dict, strict=False)
    return network.eval().requires_grad_(False)


def random_fid_inception_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A randomly initialised state dict with the published key layout, for tests and offline demos.

    Convolutions get He-normal weights and BatchNorm layers near-identity random statistics, so
    activations keep a sensible scale through the whole network. Its features mean nothing.
    """
    generator = torch.Generator().manual_seed(seed)
    state_dict = {}
    for name, tensor in FIDInceptionV3().state_dict().items():
        if name.endswith("num_batches_tracked"):
            value = torch.zeros_like(tensor)
        elif name.endswith("conv.weight"):
            fan_in = tensor[0].numel()
            value = torch.randn(tensor.shape, generator=generator) * (2.0 / fan_in) ** 0.5
        elif name.endswith(("bn.weight", "bn.running_var")):
            value = 0.8 + 0.4 * torch.rand(tensor.shape, generator=generator)
        elif name.endswith(("bn.bias", "bn.running_mean")):
            value = 0.1 * torch.randn(tensor.shape, generator=generator)
        else:  # the classifier
            value = torch.randn(tensor.shape, generator=generator) / tensor.shape[-1] ** 0.5
        state_dict[name] = value
    return state_dict


# --------------------------------------------------------------------------------------------------
# The feature extractor
# --------------------------------------------------------------------------------------------------


class InceptionFeatureExtractor(nn.Module):
    """uint8 images (B, 1 or 3, H, W) -> ``{"features": (B, feature_dim), "logits": (B, 1008)}``.

    Args:
        weights: path to ``pt_inception-2015-12-05-6726825d.pth`` or
            ``weights-inception-2015-12-05-6726825d.pth``; defaults to ``$SSMGEN_INCEPTION_WEIGHTS``.
        resize: ``"tf"`` (TTUR/ADM/torch-fidelity) or ``"pytorch-fid"``.
        feature_dim: 2048 (pool3, for FID) or 64/192/768; logits come only with 2048.
        dtype: internal precision; float64 makes features independent of the batch size.
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        resize: str = "tf",
        feature_dim: int = 2048,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        if feature_dim not in INCEPTION_FEATURE_DIMS:
            raise ValueError(f"feature_dim must be one of {INCEPTION_FEATURE_DIMS}, got {feature_dim!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.network = load_fid_inception(weights).to(dtype)
        self.resize = resize
        self.feature_dim = feature_dim
        self.dtype_internal = dtype
        self.extractor_id = f"inception-v3-fid/{feature_dim}"
        self.weights_sha256 = weights_fingerprint(self.network.state_dict())

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = inception_input(images, self.resize, self.dtype_internal)
        return self.network(x, self.feature_dim)
