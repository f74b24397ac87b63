"""Case after the search: words written as where they came from, at no cost to the judge's score."""
from __future__ import annotations

import numpy as np
import pytest

from semcomp.decoders.case import commonest, mid_forms, truecase
from semcomp.decoders.edit import WordPairs
from semcomp.decoders.refine import refine

CORPUS = ["He lives in Paris now.", "Yesterday he was in Paris.", "It rained. The city was quiet.",
          "She met the mayor of the city.", "They took the train to the U.S. coast."]


def test_mid_forms_count_words_after_the_first_and_not_after_a_sentence_end():
    counts = mid_forms(CORPUS)
    assert counts[("paris", "Paris")] == 2 and counts[("he", "he")] == 1
    assert ("he", "He") not in counts and ("the", "The") not in counts  # first words, one after "rained."
    assert counts[("u.s", "U.S")] == 1
    assert commonest(counts)["the"] == "the" and commonest(counts)["paris"] == "Paris"


def test_truecase_takes_the_neighbours_forms_then_the_corpus_and_the_style_of_the_best():
    forms = WordPairs(CORPUS).forms
    like = ["Mayor Brown lives in the city.", "The mayor of Lyon met them."]
    # "He" and "The" came from a first word, "paris" from fusion's lower-cased clause
    assert truecase("and He met The mayor in paris", like, forms) == "And he met the mayor in Paris"
    assert truecase("lives in Paris. he was the Mayor", like, forms) == "Lives in Paris. He was the mayor"
    assert truecase("met Brown in Lyon", like) == "Met Brown in Lyon"  # the neighbours alone know the names
    assert truecase("And He was in Paris", ["lol he was in paris"], forms) == "and he was in paris"
    assert truecase("unknown Zorblat words", like, forms) == "Unknown Zorblat words"  # no evidence: as it was


def _bag(texts: list[str]) -> np.ndarray:
    """A judge that, like all-MiniLM-L6-v2, lower-cases first: a bag of WORDS."""
    return np.array([[t.lower().replace(",", " ").split().count(w) for w in WORDS] for t in texts], np.float32) + 1e-3


def _capitals_cost(texts: list[str]) -> np.ndarray:
    """A judge that reads case: each capital letter pulls a sentence away from any target."""
    return np.hstack([_bag(texts), [[sum(c.isupper() for c in t)] for t in texts]]).astype(np.float32)


WORDS = ["we", "flew", "south", "paris", "was", "far", "the", "trip", "long"]
NBRS = [("We flew south, the trip was long.", 0.9), ("Paris was far.", 0.8)]


def test_the_winner_is_written_again_at_no_cost_to_the_judges_score():
    """Fusion lower-cases a second clause's first word: 'Paris' comes back as the dictionary
    writes it mid-sentence, and the score is the raw winner's to the last digit."""
    target = _bag(["we flew south paris was far"])[0]
    raw = "We flew south, paris was far"
    r = refine(NBRS, target, _bag, None, rounds=0, fuse=True, pairs=WordPairs(CORPUS))
    assert r["reconstruction"] == "We flew south, Paris was far"
    e = _bag([raw])[0]
    assert r["score"] == pytest.approx(float(e @ target / np.linalg.norm(e) / np.linalg.norm(target)), abs=1e-6)
    assert refine(NBRS, target, _bag, None, rounds=0, fuse=True)["reconstruction"] == raw  # no evidence for 'Paris'
    t2 = np.append(target, 0.0).astype(np.float32)
    kept = refine(NBRS, t2, _capitals_cost, None, rounds=0, fuse=True, pairs=WordPairs(CORPUS))
    assert kept["reconstruction"] == raw  # the capital would cost this judge: the raw form stays


def test_a_sentence_someone_wrote_stays_as_written():
    """The inverter's (or a model's) line wins unedited: its case is the writer's, even where the
    neighbours write a word otherwise."""
    nbrs = [("We flew south, the trip was long.", 0.9)]
    target = _bag(["the trip was far"])[0]
    r = refine(nbrs, target, _bag, None, rounds=0, proposals=["The Trip was far."], pairs=WordPairs(CORPUS))
    assert r["reconstruction"] == "The Trip was far."
    edited = refine(nbrs, target, _bag, None, rounds=0, proposals=["The Trip was far long"], edit_steps=2)
    assert edited["reconstruction"] == "The trip was far"  # an edit of it is the search's: written again
