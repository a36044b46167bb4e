"""Text-motion pairs from a HumanML3D / KIT-ML style folder, sampled as MLD's ``Text2MotionDatasetV2``.

Folder layout (HumanML3D, KIT-ML and ``build_synthetic_dataset`` all write it)::

    root/
      new_joint_vecs/<id>.npy   features (frames, 263 or 251) float32
      texts/<id>.txt            one caption per line: ``caption#word/POS word/POS ...#start#end``
      train.txt, val.txt, test.txt   one id per line
      Mean.npy, Std.npy         feature statistics (see ``normalization``)

Sampling rules (MLD, ``mld/data/humanml/data/dataset.py``):

- a motion is kept when ``min_length <= frames < max_length + unit_length`` (MLD: 40 <= frames < 200);
- captions with ``start#end`` of ``0#0`` describe the whole motion; any other caption becomes its own
  sample on ``motion[int(start * fps):int(end * fps)]`` (same length filter), named ``A_<id>``, ``B_<id>``...;
  a motion with no whole-clip caption is only used through its segments;
- each draw picks one of the sample's captions at random, rounds the length down to a multiple of
  ``unit_length`` (and one unit further with probability 1/3 when ``unit_length < 10``), crops at a random
  start, and z-normalises with the folder's ``Mean.npy`` / ``Std.npy``;
- tokens are framed as ``sos/OTHER ... eos/OTHER`` and padded with ``unk/OTHER`` (or cropped) to
  ``max_text_len + 2``, for the T2M evaluator's word vectoriser;
- ``collate_motion_batch`` sorts a batch by length, longest first, and zero-pads.
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from .normalization import denormalize, load_mean_std

__all__ = [
    "Caption",
    "Text2MotionDataset",
    "collate_motion_batch",
    "format_caption_line",
    "pad_tokens",
    "parse_caption_line",
    "read_captions",
    "read_split",
]


@dataclass(frozen=True)
class Caption:
    """One line of a ``texts/<id>.txt`` file; ``start == end == 0`` means the whole motion."""

    text: str
    tokens: tuple[str, ...]
    start: float = 0.0
    end: float = 0.0

    @property
    def whole_motion(self) -> bool:
        return self.start == 0.0 and self.end == 0.0


def parse_caption_line(line: str) -> Caption:
    """Parse ``caption#word/POS word/POS ...#start#end``; NaN times count as 0 (as in MLD)."""
    parts = line.strip().split("#")
    if len(parts) != 4:
        raise ValueError(f"a caption line must be 'caption#tokens#start#end', got {line.strip()!r}")
    try:
        start, end = (float(x) for x in parts[2:])
    except ValueError as error:
        raise ValueError(f"caption start/end must be numbers (seconds), got {parts[2]!r}, {parts[3]!r}") from error
    start, end = (0.0 if np.isnan(t) else t for t in (start, end))
    return Caption(parts[0], tuple(parts[1].split(" ")), start, end)


def format_caption_line(caption: Caption) -> str:
    """The text-file line of a caption (the inverse of ``parse_caption_line``)."""
    return f"{caption.text}#{' '.join(caption.tokens)}#{caption.start}#{caption.end}"


def read_captions(path: str | Path) -> list[Caption]:
    """All captions of one ``texts/<id>.txt`` file (blank lines are skipped)."""
    captions = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                captions.append(parse_caption_line(line))
            except ValueError as error:
                raise ValueError(f"{path}, line {number}: {error}") from None
    return captions


def read_split(path: str | Path) -> list[str]:
    """Motion ids of a split file, one per line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"split file {path} not found")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def pad_tokens(tokens: tuple[str, ...] | list[str], max_text_len: int = 20) -> tuple[list[str], int]:
    """Frame tokens with ``sos/OTHER`` and ``eos/OTHER`` (cropping to ``max_text_len`` words first) and pad
    with ``unk/OTHER`` to ``max_text_len + 2``; returns (tokens, length including sos and eos)."""
    framed = ["sos/OTHER", *list(tokens)[:max_text_len], "eos/OTHER"]
    return framed + ["unk/OTHER"] * (max_text_len + 2 - len(framed)), len(framed)


@dataclass
class _Sample:
    name: str
    motion: np.ndarray
    captions: list[Caption]


def _segment_name(index: int, motion_id: str) -> str:
    prefix = chr(ord("A") + index) if index < 26 else str(index)
    return f"{prefix}_{motion_id}"


class Text2MotionDataset(Dataset):
    """Text-motion samples of one split of a HumanML3D-layout folder (see the module docstring).

    Args:
        root: the dataset folder.
        split: split file name without ``.txt`` ("train", "val", "test", ...).
        min_length, max_length: frame range; motions and segments with ``min_length <= frames <
            max_length + unit_length`` are kept and crops never exceed ``max_length``. MLD uses 40 / 196
            for both HumanML3D and KIT-ML; raise ``max_length`` for models that take longer motions.
        unit_length: crop lengths are multiples of this (4, the evaluator's downsampling factor).
        fps: frame rate for caption start/end times (20 for HumanML3D, 12.5 for KIT-ML).
        max_text_len: words kept for the evaluator tokens (see ``pad_tokens``).
        normalize: z-normalise motions with ``mean`` / ``std`` (default: the folder's statistics).
        seed: None draws from torch's global RNG (which PyTorch seeds per DataLoader worker); an int
            gives every worker its own private stream, so a run replays exactly.

    Items are dicts: ``motion`` (length, D) float32 tensor, ``length``, ``text``, ``tokens`` (padded),
    ``text_length`` and ``name``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        min_length: int = 40,
        max_length: int = 196,
        unit_length: int = 4,
        fps: float = 20.0,
        max_text_len: int = 20,
        normalize: bool = True,
        mean: np.ndarray | None = None,
        std: np.ndarray | None = None,
        seed: int | None = None,
    ) -> None:
        if unit_length < 1:
            raise ValueError(f"unit_length must be >= 1, got {unit_length}")
        if max_length % unit_length:
            raise ValueError(f"max_length must be a multiple of unit_length={unit_length}, got {max_length}")
        if not 2 * unit_length <= min_length <= max_length:
            raise ValueError(
                f"need 2 * unit_length <= min_length <= max_length, got min_length={min_length}, "
                f"max_length={max_length}, unit_length={unit_length}"
            )
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.root = Path(root)
        self.split = split
        self.min_length, self.max_length, self.unit_length = min_length, max_length, unit_length
        self.fps, self.max_text_len, self.normalize, self.seed = fps, max_text_len, normalize, seed
        if (mean is None) != (std is None):
            raise ValueError("pass both mean and std, or neither to use the folder's Mean.npy / Std.npy")
        if mean is None:
            mean, std = load_mean_std(self.root)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.samples = self._load_samples(read_split(self.root / f"{split}.txt"))
        self._rng: torch.Generator | None = None
        self._rng_worker: int | None = None

    @property
    def feature_dim(self) -> int:
        return int(self.mean.shape[0])

    def _keeps(self, frames: int) -> bool:
        return self.min_length <= frames < self.max_length + self.unit_length

    def _load_samples(self, ids: list[str]) -> list[_Sample]:
        samples, missing = [], []
        for motion_id in ids:
            motion_path = self.root / "new_joint_vecs" / f"{motion_id}.npy"
            text_path = self.root / "texts" / f"{motion_id}.txt"
            if not (motion_path.is_file() and text_path.is_file()):
                missing.append(motion_id)
                continue
            motion = np.load(motion_path, allow_pickle=False)
            if motion.ndim != 2 or motion.shape[1] != self.feature_dim:
                raise ValueError(f"{motion_path}: expected features (frames, {self.feature_dim}), got {motion.shape}")
            if not np.isfinite(motion).all():
                raise ValueError(f"{motion_path} contains NaN or infinite values; remove {motion_id} from the split")
            motion = motion.astype(np.float32, copy=False)
            if not self._keeps(len(motion)):
                continue
            whole, segments = [], 0
            for caption in read_captions(text_path):
                if caption.whole_motion:
                    whole.append(caption)
                    continue
                segment = motion[int(caption.start * self.fps) : int(caption.end * self.fps)]
                if self._keeps(len(segment)):
                    samples.append(_Sample(_segment_name(segments, motion_id), segment, [caption]))
                    segments += 1
            if whole:
                samples.append(_Sample(motion_id, motion, whole))
        if missing:
            warnings.warn(
                f"{len(missing)} ids of {self.split}.txt have no new_joint_vecs/ or texts/ file and are skipped "
                f"(first: {missing[:3]})",
                stacklevel=3,
            )
        if not samples:
            raise ValueError(
                f"no motion of split {self.split!r} in {self.root} has between {self.min_length} and "
                f"{self.max_length + self.unit_length - 1} frames"
            )
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    def _generator(self) -> torch.Generator | None:
        if self.seed is None:
            return None
        info = get_worker_info()
        worker = 0 if info is None else info.id + 1
        if self._rng is None or self._rng_worker != worker:
            self._rng = torch.Generator().manual_seed(self.seed * 1_000_003 + worker)
            self._rng_worker = worker
        return self._rng

    @staticmethod
    def _randint(high: int, generator: torch.Generator | None) -> int:
        """A uniform integer in [0, high)."""
        return int(torch.randint(high, (), generator=generator))

    def crop_length(self, frames: int, generator: torch.Generator | None = None) -> int:
        """The training length for a motion of ``frames`` frames: MLD's "single"/"double" unit rounding."""
        units = frames // self.unit_length
        if self.unit_length < 10 and self._randint(3, generator) == 2:
            units -= 1
        return units * self.unit_length

    def __getitem__(self, index: int) -> dict:
        return self.draw(index, self._generator())

    def draw(self, index: int, generator: torch.Generator | None) -> dict:
        """Item ``index`` with its caption, length and crop drawn from ``generator`` (None: torch's global RNG).

        A caller that seeds ``generator`` from (seed, epoch, index) makes every draw reproducible whatever
        the worker that makes it, e.g. when a training run resumes mid-epoch.
        """
        sample = self.samples[index]
        caption = sample.captions[self._randint(len(sample.captions), generator)]
        length = self.crop_length(len(sample.motion), generator)
        start = self._randint(len(sample.motion) - length + 1, generator)
        motion = sample.motion[start : start + length]
        if self.normalize:
            motion = (motion - self.mean) / self.std
        tokens, text_length = pad_tokens(caption.tokens, self.max_text_len)
        return {
            "motion": torch.from_numpy(np.ascontiguousarray(motion, dtype=np.float32)),
            "length": length,
            "text": caption.text,
            "tokens": tokens,
            "text_length": text_length,
            "name": sample.name,
        }

    def denormalize(self, features):
        """Undo the normalisation: ``features * std + mean`` (numpy or torch, (..., D))."""
        return denormalize(features, self.mean, self.std)


def collate_motion_batch(items: list[dict]) -> dict:
    """Batch dataset items, longest first (as MLD's collate), zero-padding motions to the longest.

    Returns ``motion`` (B, T_max, D), ``length`` (B,) long, ``mask`` (B, T_max) bool (True on real frames),
    ``text_length`` (B,) long, and the lists ``text``, ``tokens``, ``name``.
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    items = sorted(items, key=lambda item: item["length"], reverse=True)
    lengths = torch.tensor([item["length"] for item in items], dtype=torch.long)
    motion = torch.nn.utils.rnn.pad_sequence([item["motion"] for item in items], batch_first=True)
    return {
        "motion": motion,
        "length": lengths,
        "mask": torch.arange(motion.shape[1])[None] < lengths[:, None],
        "text": [item["text"] for item in items],
        "tokens": [item["tokens"] for item in items],
        "text_length": torch.tensor([item["text_length"] for item in items], dtype=torch.long),
        "name": [item["name"] for item in items],
    }
