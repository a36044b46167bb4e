"""The text-motion batch that motion evaluators and metrics consume.

A dataset item is a mapping with ``"motion"`` (T, F) raw (un-normalised) motion features, the
caption as ``"text"`` (the key of :class:`ssmgen.data.motion.Text2MotionDataset`) or ``"caption"``,
optionally ``"length"`` (int, default T) and ``"tokens"`` (``"word/POS"`` strings as in HumanML3D's
``texts/*.txt``, raw or already framed with ``sos``/``eos``; the T2M evaluator needs them).
Each evaluator normalises motions with its own statistics, so items always carry raw features:
build ``Text2MotionDataset(..., normalize=False)`` for evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class MotionTextBatch:
    """motions (B, T, F) zero-padded raw features, lengths (B,) int64, captions, optional tokens."""

    motions: torch.Tensor
    lengths: torch.Tensor
    captions: list[str]
    tokens: list[list[str]] | None = None

    def __len__(self) -> int:
        return len(self.captions)


def pad_motions(motions: Sequence[torch.Tensor | np.ndarray]) -> torch.Tensor:
    """Stack (T_i, F) motions into (B, max T_i, F), zero-padded at the end."""
    tensors = [torch.as_tensor(m) for m in motions]
    if not tensors or any(t.dim() != 2 for t in tensors) or len({t.shape[1] for t in tensors}) != 1:
        raise ValueError(
            f"motions must be a non-empty list of (T, F) arrays with one F, got {[tuple(t.shape) for t in tensors]}"
        )
    return torch.nn.utils.rnn.pad_sequence([t.float() for t in tensors], batch_first=True)


def item_caption(item: Mapping) -> str:
    """The caption of a dataset item: its ``"text"`` or ``"caption"`` entry."""
    for key in ("text", "caption"):
        if key in item:
            return str(item[key])
    raise ValueError(f"a motion item needs a 'text' or 'caption' entry, got keys {sorted(item)}")


def collate_motion_text(items: Sequence[Mapping]) -> MotionTextBatch:
    """Collate dataset items (see the module docstring) into a :class:`MotionTextBatch`."""
    if len(items) == 0:
        raise ValueError("items must not be empty")
    motions = pad_motions([item["motion"] for item in items])
    lengths = torch.tensor([int(item.get("length", len(item["motion"]))) for item in items], dtype=torch.long)
    if (lengths < 1).any() or (lengths > torch.tensor([len(item["motion"]) for item in items])).any():
        raise ValueError(f"each length must be in [1, len(motion)], got {lengths.tolist()}")
    captions = [item_caption(item) for item in items]
    with_tokens = ["tokens" in item for item in items]
    if any(with_tokens) and not all(with_tokens):
        raise ValueError("either every item or no item must carry 'tokens'")
    tokens = [list(item["tokens"]) for item in items] if all(with_tokens) else None
    return MotionTextBatch(motions=motions, lengths=lengths, captions=captions, tokens=tokens)
