"""The fusion decoder: clauses of the nearest dictionary sentences recombined, judged by the embedder."""
from __future__ import annotations

import numpy as np
import pytest

from semcomp.decoders.fusion import clauses, fusions
from semcomp.decoders.refine import refine


def test_clauses_split_at_punctuation_and_conjunctions():
    assert clauses("The film was long, but the acting was superb.") == ["The film was long", "the acting was superb"]
    assert clauses("It rained; we stayed in and played cards") == ["It rained", "we stayed in", "played cards"]
    assert clauses("Yes.") == []  # a one-word piece is not a clause


def test_fusions_recombine_the_top_neighbours_within_their_length():
    nbrs = [("The hotel was clean, and the staff were friendly.", 0.7),
            ("The room was small, but the breakfast was great.", 0.6),
            ("Parking cost twenty dollars a night.", 0.5),
            ("An unrelated fourth sentence, never used here.", 0.4)]
    out = fusions(nbrs)
    assert "The hotel was clean, the breakfast was great" in out
    assert "The room was small, the staff were friendly" in out
    assert "the staff were friendly" in out and not any("fourth" in s for s in out)
    longest = max(len(t.split()) for t, _ in nbrs[:3])
    assert all(len(s.split()) <= longest for s in out) and not set(out) & {t for t, _ in nbrs}


def test_fusion_alone_is_judged_and_never_below_the_best_neighbour():
    """rounds 0, fuse: the fusion decoder. A target made of two neighbours' halves is found."""
    words = "alpha beta gamma delta epsilon zeta eta theta".split()
    vec = {w: np.eye(8, dtype=np.float32)[i] for i, w in enumerate(words)}

    def embed(texts):
        e = np.stack([sum((vec[w] for w in t.replace(",", " ").replace(".", " ").split() if w in vec),
                          np.zeros(8, np.float32)) for t in texts])
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-9)

    target = embed(["alpha beta epsilon zeta"])[0]
    nbrs = [("alpha beta, gamma delta", 0.5), ("eta theta, epsilon zeta", 0.5)]
    r = refine(nbrs, target, embed, lambda *a: pytest.fail("no model in the fusion decoder"), rounds=0, fuse=True)
    assert r["reconstruction"] == "alpha beta, epsilon zeta" and r["score"] == pytest.approx(1.0, abs=1e-6)
    far = refine([("gamma delta", 0.9), ("eta theta", 0.1)], embed(["gamma delta"])[0], embed, None, 0, fuse=True)
    assert far["reconstruction"] == "gamma delta" and far["score"] == pytest.approx(1.0, abs=1e-6)
