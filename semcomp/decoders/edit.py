"""Edit search: one-word edits of the best candidate, judged by the embedder, kept while they help.

The neighbours often hold the right words in the wrong sentence. Each step tries every one-word
edit of the current best sentence (a word deleted, or replaced by a word of the top neighbours)
and keeps the best-scored edit if it beats the sentence; a few steps cost a few hundred embedder
calls and no model. docs/generative.md has what it gives, and what it costs in readability.
"""
from __future__ import annotations

from typing import Sequence


def vocabulary(neighbours: Sequence[tuple[str, float]], top: int = 3, limit: int = 16) -> list[str]:
    """Words of the `top` best neighbours (best first, each once, case kept), at most `limit`;
    words of one or two letters are left out (they rarely carry the meaning the judge scores)."""
    words = [w for t, _ in neighbours[:top] for w in t.split() if len(w.strip(".,;:!?\"'()")) > 2]
    return list(dict.fromkeys(words))[:limit]


def edits(sentence: str, vocab: Sequence[str]) -> list[str]:
    """Every one-word edit of `sentence`: each word deleted, each word replaced by a vocabulary word."""
    words = sentence.split()
    out = []
    for i, w in enumerate(words):
        out.append(" ".join(words[:i] + words[i + 1:]))
        out += [" ".join(words[:i] + [v] + words[i + 1:]) for v in vocab if v != w]
    return [s for s in dict.fromkeys(out) if s and s != sentence]
