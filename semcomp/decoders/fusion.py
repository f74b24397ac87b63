"""Fusion: new sentences from the clauses of the nearest dictionary sentences, no model needed.

A decoded embedding often lies between its neighbours: its sentence shares a clause with one and a
clause with another. Each neighbour's clauses alone, and each pair of clauses from two neighbours,
are candidates the embedder then judges (docs/generative.md has what that gives).
"""
from __future__ import annotations

import re
from typing import Sequence

# Where a sentence splits into clauses: punctuation inside it, coordinating and relative words, dashes.
_CLAUSE = re.compile(r",?\s+(?:and|but|which|while|because|so|or)\s+|[,;:]\s+|\s+-+\s+|\s+–\s+")


def clauses(sentence: str, min_words: int = 2) -> list[str]:
    """The sentence's clauses of at least `min_words` words, end punctuation off."""
    return [c.strip(" .!?") for c in _CLAUSE.split(sentence) if len(c.split()) >= min_words]


def fusions(neighbours: Sequence[tuple[str, float]], top: int = 3) -> list[str]:
    """Candidates from the `top` best neighbours (best first): each clause alone, and each clause
    followed by a clause of another neighbour, none longer in words than the longest neighbour.
    Without that cap the judge favoured run-ons holding two sentences' content: SBERT cosine rose,
    BERTScore fell below similarity decoding's (measured)."""
    best = [t for t, _ in neighbours[:top]]
    longest = max((len(t.split()) for t in best), default=0)
    parts = [clauses(t) for t in best]
    out = [c for p in parts for c in p]
    for i, a in enumerate(parts):
        for j, b in enumerate(parts):
            if i != j:
                out += [f"{x}, {y[0].lower()}{y[1:]}" for x in a for y in b]
    return [s for s in dict.fromkeys(out) if s not in best and len(s.split()) <= longest]
