"""A small CNN trained on the built-in digits: the feature extractor of "digits-FID" and a sample classifier.

Its weights are produced locally, never downloaded::

    python -m ssmgen.eval.digits_classifier runs/digits-classifier --resolution 16

trains in seconds on a CPU and writes ``config.json`` + ``diffusion_pytorch_model.safetensors``
(``save_pretrained``) and ``training.json`` (split, epochs, held-out accuracy).
:class:`DigitsFeatureExtractor` turns the trained classifier into an FID feature extractor
(penultimate-layer features, class logits for the Inception Score) and classifies generated samples.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ssmgen.data.digits import DIGITS_NUM_CLASSES, load_digits
from ssmgen.eval.assets import weights_fingerprint
from ssmgen.eval.extract import quantize_images
from ssmgen.runtime import single_threaded


class DigitsClassifier(ModelMixin, ConfigMixin):
    """Images (B, 1, R, R) in [-1, 1] -> class logits (B, num_classes); ``features`` gives (B, feature_dim).

    Three 3x3 convolutions (width, 2 width, 4 width channels; 2x max pools between them), a 2x2
    adaptive average pool, a hidden layer of ``feature_dim`` units (the FID features) and a linear
    classifier. Works for any R >= 8.
    """

    @register_to_config
    def __init__(self, resolution: int = 16, width: int = 16, feature_dim: int = 128, num_classes: int = 10):
        super().__init__()
        if resolution < 8:
            raise ValueError(f"resolution must be >= 8, got {resolution}")
        self.convs = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.hidden = nn.Linear(16 * width, feature_dim)
        self.classifier = nn.Linear(feature_dim, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        resolution = self.config.resolution
        if images.dim() != 4 or tuple(images.shape[1:]) != (1, resolution, resolution):
            raise ValueError(f"images must have shape (B, 1, {resolution}, {resolution}), got {tuple(images.shape)}")
        return F.relu(self.hidden(self.convs(images).flatten(1)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images))


def digits_split(resolution: int, held_out_fraction: float, seed: int):
    """Fixed random train / held-out split of the digits: ((x, y) train, (x, y) held out)."""
    if not 0.0 < held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    images, labels = load_digits(resolution)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    num_held_out = int(round(held_out_fraction * len(images)))
    held_out, train = order[:num_held_out], order[num_held_out:]
    return (images[train], labels[train]), (images[held_out], labels[held_out])


@torch.no_grad()
def accuracy(classifier: DigitsClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images (B, 1, R, R) in [-1, 1] classified as ``labels``."""
    classifier.eval()
    return (classifier(images).argmax(dim=1) == labels).double().mean().item()


def train_digits_classifier(
    out_dir: str | os.PathLike,
    resolution: int = 16,
    seed: int = 0,
    epochs: int = 8,
    batch_size: int = 32,
    learning_rate: float = 3e-3,
    held_out_fraction: float = 0.2,
) -> DigitsClassifier:
    """Train :class:`DigitsClassifier` on a fixed split and save it (weights, config, training.json)."""
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    (train_x, train_y), (held_x, held_y) = digits_split(resolution, held_out_fraction, seed)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    classifier = DigitsClassifier(resolution=resolution, num_classes=DIGITS_NUM_CLASSES)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=learning_rate, total_steps=epochs * -(-len(train_x) // batch_size)
    )
    with single_threaded():  # tensors this small only pay synchronisation for more threads
        for _ in range(epochs):
            classifier.train()
            order = torch.randperm(len(train_x), generator=generator)
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                loss = F.cross_entropy(classifier(train_x[batch]), train_y[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
    classifier.eval()
    summary = dict(
        resolution=resolution,
        seed=seed,
        epochs=epochs,
        held_out_fraction=held_out_fraction,
        num_train=len(train_x),
        num_held_out=len(held_x),
        train_accuracy=accuracy(classifier, train_x, train_y),
        held_out_accuracy=accuracy(classifier, held_x, held_y),
    )
    out_dir = Path(out_dir)
    classifier.save_pretrained(out_dir)
    (out_dir / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    return classifier


class DigitsFeatureExtractor(nn.Module):
    """uint8 digit images (B, 1, R, R) -> ``{"features": (B, feature_dim), "logits": (B, 10)}``."""

    resize = "none"

    def __init__(self, classifier: DigitsClassifier):
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        self.extractor_id = f"digits-classifier/{classifier.config.resolution}"
        self.weights_sha256 = weights_fingerprint(classifier.state_dict())

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> DigitsFeatureExtractor:
        """Load the classifier written by :func:`train_digits_classifier` (or the module's command)."""
        if not (Path(path) / "config.json").is_file():
            raise FileNotFoundError(
                f"No digits classifier at {path}. Train one (seconds on a CPU) with:\n"
                f"  python -m ssmgen.eval.digits_classifier {path}"
            )
        return cls(DigitsClassifier.from_pretrained(path))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8, got {images.dtype}")
        features = self.classifier.features(images.float() / 127.5 - 1.0)
        return {"features": features, "logits": self.classifier.classifier(features)}

    @torch.no_grad()
    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """Predicted digit (B,) of uint8 images (B, 1, R, R)."""
        return self(images)["logits"].argmax(dim=1)


def digits_reference_images(resolution: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as uint8 (N, 1, R, R) (``round(255 x)``, like generated samples) and labels (N,)."""
    images, labels = load_digits(resolution)
    return quantize_images((images + 1) / 2, "round"), labels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the digits classifier used for digits-FID.")
    parser.add_argument("out_dir", help="folder to write config.json, safetensors weights and training.json")
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args(argv)
    train_digits_classifier(args.out_dir, resolution=args.resolution, seed=args.seed, epochs=args.epochs)
    summary = json.loads((Path(args.out_dir) / "training.json").read_text())
    print(f"held-out accuracy {summary['held_out_accuracy']:.4f} -> {args.out_dir}")


if __name__ == "__main__":
    main()
