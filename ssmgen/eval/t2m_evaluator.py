"""The T2M text-motion evaluator (Guo et al., CVPR 2022) that HumanML3D / KIT-ML papers report with.

It loads the original assets from user-given paths (nothing is downloaded):

* ``finest.tar`` (``checkpoints/{t2m,kit}/text_mot_match/model/``) with ``torch.load(weights_only=True)``;
  its ``text_encoder``, ``movement_encoder`` and ``motion_encoder`` state dicts load as is;
* the evaluator's own motion statistics ``meta/mean.npy`` and ``meta/std.npy``
  (``t2m/Comp_v6_KLD01`` for HumanML3D, ``kit/Comp_v6_KLD005`` for KIT-ML);
* the GloVe vocabulary ``our_vab_data.npy``, ``our_vab_words.pkl``, ``our_vab_idx.pkl``. The two
  pickles are read by a restricted unpickler that only builds lists, dicts, strings and numbers.

Architecture (names as in the checkpoint):

* text: word vector (300) + Linear(POS one-hot 15 -> 300) -> Linear(300 -> 512) -> BiGRU(512) with a
  learned initial state -> cat(last states) -> Linear(1024 -> 512) -> LayerNorm -> LeakyReLU(0.2) -> Linear(512);
* movement: features without the 4 foot contacts -> Conv1d(k4, s2) -> Dropout -> LeakyReLU ->
  Conv1d(k4, s2) -> Dropout -> LeakyReLU -> Linear(512): time is downsampled by 4;
* motion: Linear(512 -> 1024) -> BiGRU(1024) over ``length // 4`` steps -> Linear(2048 -> 1024) ->
  LayerNorm -> LeakyReLU(0.2) -> Linear(512).

Unlike the original wrapper, embeddings come back in input order (sequences are packed with
``enforce_sorted=False``, which gives the same numbers as sorting by length).
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ssmgen.eval.assets import require_asset

POS_TAGS = (
    "VERB", "NOUN", "DET", "ADP", "NUM", "AUX", "PRON", "ADJ", "ADV",
    "Loc_VIP", "Body_VIP", "Obj_VIP", "Act_VIP", "Desc_VIP", "OTHER",
)  # fmt: skip
# Words whose POS the original vectorizer overrides with a "very important part" class.
VIP_WORDS = {
    "Loc_VIP": (
        "left right clockwise counterclockwise anticlockwise forward back backward up down straight curve"
    ).split(),
    "Body_VIP": "arm chin foot feet face hand mouth leg waist eye knee shoulder thigh".split(),
    "Obj_VIP": "stair dumbbell chair window floor car ball handrail baseball basketball".split(),
    "Act_VIP": (
        "walk run swing pick bring kick put squat throw hop dance jump turn stumble stop sit lift lower "
        "raise wash stand kneel stroll rub bend balance flap jog shuffle lean rotate spin spread climb"
    ).split(),
    "Desc_VIP": "slowly carefully fast careful slow quickly happy angry sad happily angrily sadly".split(),
}
MAX_TEXT_LEN = 20  # words kept per caption; sos/eos make it 22
UNIT_LENGTH = 4  # frames per motion-encoder step
FOOT_CONTACT_FEATURES = 4

_ASSET_HELP = (
    "Get the T2M evaluator (t2m.tar.gz: {t2m,kit}/text_mot_match/model/finest.tar and "
    "{t2m/Comp_v6_KLD01,kit/Comp_v6_KLD005}/meta/{mean,std}.npy) and the GloVe files "
    "(glove/our_vab_{data.npy,words.pkl,idx.pkl}) from the text-to-motion or MLD repositories "
    "(EricGuo5513/text-to-motion, ChenFengYe/motion-latent-diffusion prepare/ scripts) and pass their paths."
)


# --------------------------------------------------------------------------------------------------
# GloVe vocabulary
# --------------------------------------------------------------------------------------------------


class _ContainersOnlyUnpickler(pickle.Unpickler):
    """Builds only built-in containers, strings and numbers; any other global is refused."""

    ALLOWED = {
        (module, name)
        for module in ("builtins", "__builtin__")  # protocols 0-2 spell the module the Python 2 way
        for name in ("list", "dict", "tuple", "set", "frozenset", "str", "int", "float")
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain containers are allowed")


def load_plain_pickle(path: str | os.PathLike):
    """Unpickle a file holding only lists/dicts/tuples/sets of strings and numbers (never code)."""
    with open(path, "rb") as handle:
        return _ContainersOnlyUnpickler(io.BytesIO(handle.read())).load()


class GloVeVectorizer:
    """``"word/POS"`` tokens -> (GloVe vector (300,), POS one-hot (15,)) as the T2M data loaders do.

    Unknown words map to the ``unk`` vector with POS ``OTHER``; words in :data:`VIP_WORDS` get
    their VIP class instead of their POS tag.
    """

    def __init__(self, vectors: np.ndarray, words: list[str], word_to_index: dict[str, int]):
        if "unk" not in word_to_index:
            raise ValueError("the GloVe vocabulary must contain 'unk'")
        self.word_vectors = {word: vectors[word_to_index[word]] for word in words}
        self.vip_class = {word: tag for tag, members in VIP_WORDS.items() for word in members}

    @classmethod
    def from_dir(cls, glove_dir: str | os.PathLike, prefix: str = "our_vab") -> GloVeVectorizer:
        glove_dir = Path(glove_dir)
        paths = {
            part: require_asset(glove_dir / f"{prefix}_{part}", what="A T2M GloVe file", how_to_get=_ASSET_HELP)
            for part in ("data.npy", "words.pkl", "idx.pkl")
        }
        vectors = np.load(paths["data.npy"], allow_pickle=False)
        words = load_plain_pickle(paths["words.pkl"])
        word_to_index = load_plain_pickle(paths["idx.pkl"])
        if not isinstance(words, list | tuple) or not isinstance(word_to_index, dict):
            raise ValueError(f"{glove_dir}: expected a word list and a word->index dict")
        return cls(vectors, list(words), word_to_index)

    def pos_one_hot(self, tag: str) -> np.ndarray:
        one_hot = np.zeros(len(POS_TAGS), dtype=np.float32)
        one_hot[POS_TAGS.index(tag) if tag in POS_TAGS else POS_TAGS.index("OTHER")] = 1.0
        return one_hot

    def __call__(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        word, separator, tag = token.rpartition("/")
        if not separator:
            raise ValueError(f"tokens must look like 'word/POS', got {token!r}")
        if word not in self.word_vectors:
            return self.word_vectors["unk"], self.pos_one_hot("OTHER")
        return self.word_vectors[word], self.pos_one_hot(self.vip_class.get(word, tag))

    def encode(self, token_lists: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token lists -> word vectors (B, 22, 300), POS one-hots (B, 22, 15), lengths (B,).

        Captions are cut to 20 words, wrapped in ``sos``/``eos`` and padded with ``unk``. Token lists
        that are already framed (``Text2MotionDataset`` items) are unwrapped first.
        """
        words, tags, lengths = [], [], []
        for tokens in token_lists:
            if tokens and tokens[0] == "sos/OTHER":
                tokens = tokens[1 : tokens.index("eos/OTHER")] if "eos/OTHER" in tokens else tokens[1:]
            tokens = ["sos/OTHER", *tokens[:MAX_TEXT_LEN], "eos/OTHER"]
            lengths.append(len(tokens))
            tokens += ["unk/OTHER"] * (MAX_TEXT_LEN + 2 - len(tokens))
            vectors, one_hots = zip(*(self(token) for token in tokens), strict=True)
            words.append(np.stack(vectors))
            tags.append(np.stack(one_hots))
        return (
            torch.from_numpy(np.stack(words)).float(),
            torch.from_numpy(np.stack(tags)).float(),
            torch.tensor(lengths, dtype=torch.long),
        )


# --------------------------------------------------------------------------------------------------
# Encoders (module names match finest.tar)
# --------------------------------------------------------------------------------------------------


def projection_head(hidden_size: int, output_size: int) -> nn.Sequential:
    """cat(forward, backward) (2H) -> Linear(H) -> LayerNorm -> LeakyReLU(0.2) -> Linear(output)."""
    return nn.Sequential(
        nn.Linear(2 * hidden_size, hidden_size),
        nn.LayerNorm(hidden_size),
        nn.LeakyReLU(0.2),
        nn.Linear(hidden_size, output_size),
    )


def bigru_last_states(gru: nn.GRU, initial: torch.Tensor, inputs: torch.Tensor, lengths: torch.Tensor):
    """Concatenated final forward/backward states (B, 2H) of a BiGRU over padded (B, T, H) inputs."""
    packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
    _, last = gru(packed, initial.expand(-1, inputs.shape[0], -1).contiguous())
    return torch.cat([last[0], last[1]], dim=-1)


class T2MTextEncoder(nn.Module):
    """Word vectors (B, L, 300), POS one-hots (B, L, 15), lengths (B,) -> text embeddings (B, 512)."""

    def __init__(self, word_size: int = 300, pos_size: int = 15, hidden_size: int = 512, output_size: int = 512):
        super().__init__()
        self.pos_emb = nn.Linear(pos_size, word_size)
        self.input_emb = nn.Linear(word_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        self.output_net = projection_head(hidden_size, output_size)
        self.hidden = nn.Parameter(torch.zeros(2, 1, hidden_size))

    def forward(self, word_vectors: torch.Tensor, pos_one_hots: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        inputs = self.input_emb(word_vectors + self.pos_emb(pos_one_hots))
        return self.output_net(bigru_last_states(self.gru, self.hidden, inputs, lengths))


class T2MMovementEncoder(nn.Module):
    """Normalised motion features (B, T, F - 4) -> movement codes (B, T // 4, 512)."""

    def __init__(self, input_size: int, hidden_size: int = 512, output_size: int = 512):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv1d(input_size, hidden_size, 4, 2, 1),
            nn.Dropout(0.2),
            nn.LeakyReLU(0.2),
            nn.Conv1d(hidden_size, output_size, 4, 2, 1),
            nn.Dropout(0.2),
            nn.LeakyReLU(0.2),
        )
        self.out_net = nn.Linear(output_size, output_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out_net(self.main(features.transpose(1, 2)).transpose(1, 2))


class T2MMotionEncoder(nn.Module):
    """Movement codes (B, T', 512) and step counts (B,) -> motion embeddings (B, 512)."""

    def __init__(self, input_size: int = 512, hidden_size: int = 1024, output_size: int = 512):
        super().__init__()
        self.input_emb = nn.Linear(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        self.output_net = projection_head(hidden_size, output_size)
        self.hidden = nn.Parameter(torch.zeros(2, 1, hidden_size))

    def forward(self, movements: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        return self.output_net(bigru_last_states(self.gru, self.hidden, self.input_emb(movements), steps))


# --------------------------------------------------------------------------------------------------
# The evaluator
# --------------------------------------------------------------------------------------------------


class T2MEvaluator(nn.Module):
    """The original T2M evaluator: ``encode_text(captions, tokens)`` and ``encode_motion(raw, lengths)``.

    Motions are raw (un-normalised) features (B, T, F); the evaluator normalises them with its own
    ``mean``/``std`` (F,), drops the 4 foot-contact features and encodes ``length // 4`` steps.
    Texts are HumanML3D ``"word/POS"`` token lists (``captions`` are not used).
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray, vectorizer: GloVeVectorizer | None = None):
        super().__init__()
        mean, std = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
        if mean.ndim != 1 or mean.shape != std.shape:
            raise ValueError(f"mean and std must be vectors of one length, got {mean.shape} and {std.shape}")
        if (std <= 0).any():
            raise ValueError("std must be positive")
        num_features = mean.shape[0]
        self.register_buffer("mean", torch.from_numpy(mean))
        self.register_buffer("std", torch.from_numpy(std))
        self.text_encoder = T2MTextEncoder()
        self.movement_encoder = T2MMovementEncoder(num_features - FOOT_CONTACT_FEATURES)
        self.motion_encoder = T2MMotionEncoder()
        self.vectorizer = vectorizer

    @classmethod
    def from_files(
        cls,
        checkpoint: str | os.PathLike,
        mean: str | os.PathLike,
        std: str | os.PathLike,
        glove_dir: str | os.PathLike,
    ) -> T2MEvaluator:
        """Load ``finest.tar``, the evaluator's ``meta/mean.npy`` / ``meta/std.npy`` and the GloVe folder."""
        checkpoint = require_asset(checkpoint, what="The T2M evaluator checkpoint finest.tar", how_to_get=_ASSET_HELP)
        mean_path = require_asset(mean, what="The T2M evaluator meta/mean.npy", how_to_get=_ASSET_HELP)
        std_path = require_asset(std, what="The T2M evaluator meta/std.npy", how_to_get=_ASSET_HELP)
        evaluator = cls(
            np.load(mean_path, allow_pickle=False),
            np.load(std_path, allow_pickle=False),
            GloVeVectorizer.from_dir(glove_dir),
        )
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        for name in ("text_encoder", "movement_encoder", "motion_encoder"):
            if name not in state:
                raise ValueError(f"{checkpoint} has no {name!r} (keys: {sorted(state)}); is it a T2M finest.tar?")
            getattr(evaluator, name).load_state_dict(state[name])
        return evaluator.eval().requires_grad_(False)

    @torch.no_grad()
    def encode_text(self, captions: list[str], tokens: list[list[str]] | None = None) -> torch.Tensor:
        if tokens is None:
            raise ValueError(
                "the T2M evaluator needs 'word/POS' tokens for each caption (HumanML3D texts/*.txt, second field)"
            )
        if len(tokens) != len(captions):
            raise ValueError(f"got {len(captions)} captions but {len(tokens)} token lists")
        if self.vectorizer is None:
            raise ValueError("this evaluator has no GloVe vectorizer; build it with T2MEvaluator.from_files")
        words, tags, lengths = self.vectorizer.encode(tokens)
        device = self.mean.device
        return self.text_encoder(words.to(device), tags.to(device), lengths)

    @torch.no_grad()
    def encode_motion(self, motions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        num_features = self.mean.shape[0]
        if motions.dim() != 3 or motions.shape[-1] != num_features:
            raise ValueError(f"motions must have shape (B, T, {num_features}), got {tuple(motions.shape)}")
        lengths = torch.as_tensor(lengths)
        if lengths.shape != (motions.shape[0],) or (lengths < UNIT_LENGTH).any() or (lengths > motions.shape[1]).any():
            raise ValueError(f"lengths must be (B,) in [{UNIT_LENGTH}, T={motions.shape[1]}], got {lengths.tolist()}")
        normalised = (motions.to(self.mean) - self.mean) / self.std
        movements = self.movement_encoder(normalised[..., :-FOOT_CONTACT_FEATURES])
        return self.motion_encoder(movements, lengths // UNIT_LENGTH)
