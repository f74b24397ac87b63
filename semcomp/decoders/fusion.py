"""Fusion: new sentences from the clauses of the nearest dictionary sentences, no model needed.

A decoded embedding usually lies between its neighbours: its sentence shares a clause with one and
a clause with another. Each neighbour's clauses alone, and each top neighbour extended by a clause
of another, are candidates the embedder then judges; on WikiText held-out they raised the text
cosine more than a 135M model's samples did (docs/generative.md).
"""
from __future__ import annotations

import re
from typing import Sequence

# Where a sentence splits into clauses: punctuation inside it, coordinating and relative words, dashes.
_CLAUSE = re.compile(r"[,;:]\s+|\s+(?:and|but|which|while|because|so|or)\s+|\s+-+\s+|\s+–\s+")


def clauses(sentence: str, min_words: int = 2) -> list[str]:
    """The sentence's clauses of at least `min_words` words, end punctuation off."""
    return [c.strip(" .!?") for c in _CLAUSE.split(sentence) if len(c.split()) >= min_words]


def fusions(neighbours: Sequence[tuple[str, float]], top: int = 3, per: int = 3) -> list[str]:
    """Candidates from the `top` best neighbours (best first): each one's clauses alone, and each
    one followed by up to `per` clauses of another, none longer in words than the longest of them.
    Without that cap the judge favoured run-ons that hold two sentences' content: SBERT cosine
    rose, BERTScore fell below similarity decoding's (measured)."""
    best = [t for t, _ in neighbours[:top]]
    longest = max((len(t.split()) for t in best), default=0)
    out: list[str] = []
    for i, a in enumerate(best):
        out += clauses(a)
        for j, b in enumerate(best):
            if i != j:
                out += [f"{a.rstrip(' .!?')}, {c[0].lower()}{c[1:]}." for c in clauses(b)[:per]]
    return [s for s in dict.fromkeys(out) if s not in best and len(s.split()) <= longest]
