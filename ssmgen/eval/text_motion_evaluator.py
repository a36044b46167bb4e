"""A native contrastive text-motion evaluator, trainable offline on any motion dataset.

When the original T2M evaluator (:mod:`ssmgen.eval.t2m_evaluator`) is not available, or the data is
not HumanML3D/KIT (e.g. the built-in synthetic motions), train this one and use it with
:func:`ssmgen.eval.motion.evaluate_motion`. Its numbers are comparable only with numbers from
the same trained evaluator, never with the papers'.

* text: a word embedding over a vocabulary built from the training captions (no download), a BiGRU,
  a projection head;
* motion: features normalised with training-set statistics, two stride-2 convolutions (time / 4),
  a BiGRU over ``length // 4`` steps, a projection head;
* both embeddings are L2-normalised; training minimises the symmetric InfoNCE loss with a learned
  temperature, treating samples with identical captions as positives of each other.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ssmgen.eval.motion_batch import MotionTextBatch, collate_motion_text, item_caption
from ssmgen.eval.t2m_evaluator import bigru_last_states, projection_head

PAD, UNKNOWN = "<pad>", "<unk>"
_WORD = re.compile(r"[a-z0-9]+")
DOWNSAMPLE = 4


def tokenize_caption(caption: str) -> list[str]:
    """Lower-case alphanumeric words of a caption."""
    return _WORD.findall(caption.lower())


def build_vocabulary(captions: Sequence[str], min_count: int = 1) -> list[str]:
    """``[<pad>, <unk>, words seen at least min_count times (sorted)]``."""
    counts = Counter(word for caption in captions for word in tokenize_caption(caption))
    return [PAD, UNKNOWN, *sorted(word for word, count in counts.items() if count >= min_count)]


class ContrastiveTextMotionEvaluator(ModelMixin, ConfigMixin):
    """``encode_text(captions)`` and ``encode_motion(raw motions (B, T, F), lengths (B,))`` -> unit vectors (B, D)."""

    @register_to_config
    def __init__(
        self,
        vocabulary: list[str],
        num_features: int,
        embed_dim: int = 256,
        hidden_size: int = 256,
        max_text_len: int = 32,
    ):
        super().__init__()
        if vocabulary[:2] != [PAD, UNKNOWN]:
            raise ValueError(f"vocabulary must start with {[PAD, UNKNOWN]} (use build_vocabulary)")
        self.word_index = {word: i for i, word in enumerate(vocabulary)}
        self.word_embedding = nn.Embedding(len(vocabulary), hidden_size, padding_idx=0)
        self.text_gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        self.text_head = projection_head(hidden_size, embed_dim)
        self.motion_convs = nn.Sequential(
            nn.Conv1d(num_features, hidden_size, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv1d(hidden_size, hidden_size, 4, 2, 1),
            nn.LeakyReLU(0.2),
        )
        self.motion_gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        self.motion_head = projection_head(hidden_size, embed_dim)
        self.text_initial_state = nn.Parameter(torch.zeros(2, 1, hidden_size))
        self.motion_initial_state = nn.Parameter(torch.zeros(2, 1, hidden_size))
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # log(1 / 0.07), as in CLIP
        self.register_buffer("motion_mean", torch.zeros(num_features))
        self.register_buffer("motion_std", torch.ones(num_features))

    def set_motion_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-feature normalisation (F,); features with zero spread must be given std 1 by the caller."""
        if (std <= 0).any():
            raise ValueError("std must be positive for every feature")
        self.motion_mean.copy_(mean)
        self.motion_std.copy_(std)

    def token_ids(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions -> word ids (B, L) zero-padded and lengths (B,), at most ``max_text_len`` words."""
        unknown = self.word_index[UNKNOWN]
        ids = [
            [self.word_index.get(w, unknown) for w in tokenize_caption(c)][: self.config.max_text_len] or [unknown]
            for c in captions
        ]
        lengths = torch.tensor([len(row) for row in ids])
        padded = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
        for row, words in enumerate(ids):
            padded[row, : len(words)] = torch.tensor(words)
        return padded, lengths

    def encode_text(self, captions: list[str], tokens: list[list[str]] | None = None) -> torch.Tensor:
        """Unit text embeddings (B, embed_dim); ``tokens`` is accepted for interface parity and unused."""
        ids, lengths = self.token_ids(list(captions))
        words = self.word_embedding(ids.to(self.device))
        states = bigru_last_states(self.text_gru, self.text_initial_state, words, lengths)
        return F.normalize(self.text_head(states), dim=-1)

    def encode_motion(self, motions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Unit motion embeddings (B, embed_dim) of raw features (B, T, F) with lengths (B,) >= 4."""
        num_features = self.config.num_features
        if motions.dim() != 3 or motions.shape[-1] != num_features:
            raise ValueError(f"motions must have shape (B, T, {num_features}), got {tuple(motions.shape)}")
        lengths = torch.as_tensor(lengths)
        if lengths.shape != (motions.shape[0],) or (lengths < DOWNSAMPLE).any() or (lengths > motions.shape[1]).any():
            raise ValueError(f"lengths must be (B,) in [{DOWNSAMPLE}, T={motions.shape[1]}], got {lengths.tolist()}")
        normalised = (motions.to(self.motion_mean) - self.motion_mean) / self.motion_std
        codes = self.motion_convs(normalised.transpose(1, 2)).transpose(1, 2)
        states = bigru_last_states(self.motion_gru, self.motion_initial_state, codes, lengths // DOWNSAMPLE)
        return F.normalize(self.motion_head(states), dim=-1)

    def forward(self, batch: MotionTextBatch) -> torch.Tensor:
        """Symmetric InfoNCE loss of a batch."""
        text = self.encode_text(batch.captions)
        motion = self.encode_motion(batch.motions, batch.lengths)
        return contrastive_loss(text, motion, self.logit_scale, batch.captions)


def contrastive_loss(
    text: torch.Tensor, motion: torch.Tensor, logit_scale: torch.Tensor, captions: list[str] | None = None
) -> torch.Tensor:
    """Symmetric InfoNCE between unit embeddings (B, D); identical captions are all positives."""
    logits = logit_scale.clamp(max=4.6052).exp() * text @ motion.T  # scale at most 100, as in CLIP
    if captions is None:
        targets = torch.eye(len(text), device=text.device)
    else:
        ids = {caption: i for i, caption in enumerate(dict.fromkeys(captions))}
        labels = torch.tensor([ids[c] for c in captions], device=text.device)
        targets = (labels[:, None] == labels[None, :]).float()
    targets = targets / targets.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets.T)) / 2


def motion_statistics(dataset: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and std (F,) over the valid frames of every item; zero spread gives std 1."""
    frames = torch.cat(
        [torch.as_tensor(item["motion"]).float()[: int(item.get("length", len(item["motion"])))] for item in dataset]
    )
    mean, std = frames.mean(dim=0), frames.std(dim=0)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def train_text_motion_evaluator(
    dataset: Sequence,
    out_dir: str | os.PathLike | None = None,
    epochs: int = 50,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    embed_dim: int = 256,
    hidden_size: int = 256,
    min_count: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> ContrastiveTextMotionEvaluator:
    """Train the evaluator on dataset items (see :mod:`ssmgen.eval.motion_batch`; raw motion features).

    The vocabulary and the motion statistics come from ``dataset``. With ``out_dir`` the model is
    saved with ``save_pretrained`` (plus ``training.json`` with the final loss).
    """
    if len(dataset) < 2 or batch_size < 2:
        raise ValueError(f"need at least 2 items and batch_size >= 2, got {len(dataset)} and {batch_size}")
    torch.manual_seed(seed)
    first = dataset[0]
    evaluator = ContrastiveTextMotionEvaluator(
        vocabulary=build_vocabulary([item_caption(item) for item in dataset], min_count),
        num_features=int(torch.as_tensor(first["motion"]).shape[-1]),
        embed_dim=embed_dim,
        hidden_size=hidden_size,
    )
    evaluator.set_motion_statistics(*motion_statistics(dataset))
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(dataset) >= batch_size,
        collate_fn=collate_motion_text,
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = torch.optim.AdamW(evaluator.parameters(), lr=learning_rate, weight_decay=1e-4)
    evaluator.train()
    for _ in tqdm(range(epochs), desc="evaluator epochs", disable=not progress):
        for batch in loader:
            loss = evaluator(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    evaluator.eval().requires_grad_(False)
    if out_dir is not None:
        evaluator.save_pretrained(out_dir)
        summary = dict(epochs=epochs, batch_size=batch_size, num_items=len(dataset), final_loss=loss.item())
        (Path(out_dir) / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    return evaluator
