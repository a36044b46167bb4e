"""Templated captions for the synthetic motions, with HumanML3D-style ``word/POS`` tokens.

HumanML3D tags captions with spaCy (``en_core_web_sm``): nouns and verbs are lemmatised (except "left"),
non-alphabetic tokens are dropped. The synthetic captions come from a closed vocabulary, so a small
lexicon gives the same kind of tokens without spaCy; ``tokenize`` refuses words outside it.
"""

import re

import numpy as np

from .dataset import Caption

__all__ = ["LEXICON", "SUBJECTS", "make_caption", "tokenize"]

# (subject, possessive) pairs; "{poss}" in a verb phrase becomes the possessive.
SUBJECTS = (
    ("a person", "their"),
    ("a man", "his"),
    ("a woman", "her"),
    ("someone", "their"),
    ("the person", "their"),
    ("a figure", "its"),
    ("the man", "his"),
    ("the woman", "her"),
)


def _entries(pos: str, words: str) -> dict[str, tuple[str, str]]:
    """Lexicon entries ``word -> (lemma, pos)`` from "word" or "word:lemma" items."""
    entries = {}
    for item in words.split():
        word, _, lemma = item.partition(":")
        entries[word] = (lemma or word, pos)
    return entries


LEXICON: dict[str, tuple[str, str]] = {
    **_entries("DET", "a an the both each all"),
    **_entries("PRON", "their his her its someone them"),
    **_entries(
        "NOUN",
        "person man woman figure hand:hand hands:hand arm:arm arms:arm leg:leg legs:leg foot:foot feet:foot "
        "head:head circle:circle step:step steps:step jump:jump jumps:jump time:time times:time pace:pace "
        "squat:squat squats:squat punch:punch punches:punch kick:kick kicks:kick chair:chair side:side "
        "air:air place:place ground:ground body:body direction:direction jacks:jack bow:bow curve:curve "
        "fist:fist fists:fist seat:seat degrees:degree way:way",
    ),
    **_entries(
        "VERB",
        "walks:walk walk:walk strolls:stroll runs:run run:run jogs:jog sprints:sprint jumps:jump hops:hop "
        "leaps:leap waves:wave wave:wave kicks:kick kick:kick turns:turn turn:turn spins:spin rotates:rotate "
        "sits:sit squats:squat crouches:crouch punches:punch throws:throw raises:raise lifts:lift lowers:lower "
        "puts:put bows:bow bends:bend does:do takes:take moves:move stands:stand steps:step shuffles:shuffle "
        "goes:go swings:swing holds:hold performs:perform stretches:stretch face:face gets:get "
        "sidesteps:sidestep turning:turn",
    ),
    **_entries(
        "ADV",
        "forward forwards backward backwards sideways slowly quickly briskly fast around then first again "
        "twice once up down straight ahead back clockwise counterclockwise repeatedly overhead high low "
        "steadily",
    ),
    **_entries("ADJ", "left right slow normal quick few jumping full half steady other"),
    **_entries("ADP", "to in with on at above over into of while"),
    **_entries("CCONJ", "and"),
    **_entries("NUM", "two three four five ninety"),
    **_entries("INTJ", "hello"),
}

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def tokenize(text: str) -> tuple[str, ...]:
    """``word/POS`` tokens of a caption (lemmas for nouns and verbs, punctuation dropped)."""
    tokens = []
    for word in _WORD.findall(text.lower()):
        if word not in LEXICON:
            raise ValueError(f"word {word!r} of caption {text!r} is not in the synthetic caption lexicon")
        lemma, pos = LEXICON[word]
        tokens.append(f"{lemma}/{pos}")
    return tuple(tokens)


def make_caption(phrase: str, rng: np.random.Generator, start: float = 0.0, end: float = 0.0) -> Caption:
    """A caption "<subject> <phrase>" with a random subject; ``{poss}`` in the phrase is filled in."""
    subject, possessive = SUBJECTS[rng.integers(len(SUBJECTS))]
    text = f"{subject} {phrase.format(poss=possessive)}"
    if rng.random() < 0.5:
        text += "."
    return Caption(text, tokenize(text), start, end)
