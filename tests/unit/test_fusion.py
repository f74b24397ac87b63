"""The fusion decoder: clauses of the nearest dictionary sentences recombined, judged by the embedder."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semcomp.decoders.fusion import clauses, fusions
from semcomp.decoders.refine import refine


WORDS = "alpha beta gamma delta epsilon zeta eta theta".split()


def _bag_of_words(texts: list[str]) -> np.ndarray:
    """A judge that sees only which of WORDS a sentence holds."""
    e = np.stack([sum((np.eye(8, dtype=np.float32)[WORDS.index(w)] for w in t.replace(",", " ").replace(".", " ").split()
                       if w in WORDS), np.zeros(8, np.float32)) for t in texts])
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-9)


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
    embed = _bag_of_words
    target = embed(["alpha beta epsilon zeta"])[0]
    nbrs = [("alpha beta, gamma delta", 0.5), ("eta theta, epsilon zeta", 0.5)]
    r = refine(nbrs, target, embed, lambda *a: pytest.fail("no model in the fusion decoder"), rounds=0, fuse=True)
    assert r["reconstruction"] == "alpha beta, epsilon zeta" and r["score"] == pytest.approx(1.0, abs=1e-6)
    far = refine([("gamma delta", 0.9), ("eta theta", 0.1)], embed(["gamma delta"])[0], embed, None, 0, fuse=True)
    assert far["reconstruction"] == "gamma delta" and far["score"] == pytest.approx(1.0, abs=1e-6)


def test_edits_delete_swap_or_insert_one_word_of_a_neighbours():
    from semcomp.decoders.edit import edits, vocabulary

    vocab = vocabulary([("The red car stopped.", 0.9), ("A blue van is parked!", 0.8)])
    assert vocab == ["The", "red", "car", "stopped", "blue", "van", "parked"]
    out = edits("The red car", ["blue", "van"])
    assert "red car" in out and "The car" in out and "The blue car" in out and "The red van" in out
    assert "blue The red car" in out and "The red blue car" in out and "The red car van" in out
    # 3 deletions, 3 x 2 swaps, 4 x 2 insertions
    assert "The red car" not in out and len(out) == len(set(out)) == 3 + 3 * 2 + 4 * 2


def test_end_punctuation_stays_at_the_end():
    """A neighbour's last word ('parked.') never lands mid-sentence, and the sentence keeps its end."""
    from semcomp.decoders.edit import edits

    out = edits('He said "the red car."', ["parked.", "van!"])
    assert 'He said "the red van."' in out and 'He said "the red."' in out
    assert 'He said "the red car parked."' in out and 'He said "the parked red car."' in out
    assert all(s.endswith('."') and s.count(".") == 1 and "!" not in s for s in out)


def test_edit_steps_climb_the_judge_and_stop_at_a_local_optimum():
    """A bag-of-words judge: the target is 'alpha beta gamma'; the best neighbour misses 'gamma'
    and holds 'delta'; two edits (swap delta for gamma) reach the target, then the search stops."""
    vocab = ["alpha", "beta", "gamma", "delta", "omega"]

    def embed(texts):
        return np.array([[t.split().count(w) for w in vocab] for t in texts], np.float32) + 1e-3

    target = embed(["alpha beta gamma"])[0]
    nbrs = [("alpha beta delta", 0.8), ("gamma omega omega", 0.5)]
    calls = []
    counted = lambda texts: calls.append(len(texts)) or embed(texts)  # noqa: E731
    plain = refine(nbrs, target, counted, None, rounds=0)
    assert plain["reconstruction"] == "alpha beta delta"
    calls.clear()
    r = refine(nbrs, target, counted, None, rounds=0, edit_steps=5)
    assert r["reconstruction"] == "alpha beta gamma" and r["score"] == pytest.approx(1.0, abs=1e-3)
    assert len(calls) == 1 + 2  # the neighbour, then one step that finds it and one that finds nothing better


def test_word_triples_keep_edits_to_what_the_dictionary_says():
    """Only edits whose new word triples occur in the corpus: 'The blue car stopped here.' is made
    of triples of the two sentences; 'The car stopped here.' joins 'The car stopped', never seen."""
    from semcomp.decoders.edit import WordPairs, edits

    pairs = WordPairs(["The blue car stopped at the light.", "A red car stopped here."])
    out = edits("The red car stopped here.", ["blue", "light."], pairs)
    assert out == ["The blue car stopped here."]
    assert "The car stopped here." in edits("The red car stopped here.", ["blue"], None)
    assert pairs.allows("the BLUE car, stopped".split(), 1) and not pairs.allows("the car".split(), 0)


def test_no_edit_makes_a_word_twice_in_a_row():
    """'and and', 'the The': never made by an insertion, a swap or a deletion's join."""
    from semcomp.decoders.edit import edits

    out = edits("the cat and the dog.", ["and", "cat", "The"], None)
    assert out and not [e for e in out if re.search(r"\b(\w+) \1\b", e, re.I)]
    assert "the cat and dog." in out  # other deletions and swaps stay
    joined = edits("the big the dog.", [], None)  # deleting 'big' would join 'the the'
    assert "big the dog." in joined and "the the dog." not in joined


_TOY = ["the", "red", "car", "stopped", "here", "a", "Blue", "van", "parked", "at"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_TOY), min_size=1, max_size=7), min_size=1, max_size=12),
       st.lists(st.sampled_from(_TOY + ["car.", "here!", "Van,"]), max_size=6), st.sampled_from(["", ".", "!"]))
def test_the_triple_filter_keeps_exactly_the_edits_whose_triples_the_corpus_holds(corpus, vocab, end):
    """Against a plain reference (a set of lower-cased triples, no hashing): for a sentence of the
    corpus, the edits kept are those of all edits whose every word triple occurs in the corpus."""
    from semcomp.decoders.edit import WordPairs, edits

    sentences = [" ".join(ws) + end for ws in corpus]

    def triples(s: str) -> set[tuple[str, ...]]:
        k = ["<s>", *(re.sub(r"[^\w']", "", w.lower()) for w in s.split()), "</s>"]
        return {tuple(k[i:i + 3]) for i in range(len(k) - 2)}

    seen = set().union(*map(triples, sentences))
    pairs = WordPairs(sentences)
    for s in sentences:
        assert edits(s, vocab, pairs) == [e for e in edits(s, vocab, None) if triples(e) <= seen]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_TOY), min_size=1, max_size=7), min_size=1, max_size=12),
       st.lists(st.sampled_from(_TOY + ["car.", "here!", "Van,", "the"]), max_size=6),
       st.lists(st.sampled_from(_TOY + ["Car", "van."]), min_size=1, max_size=8))
def test_edits_are_every_plain_edit_that_keeps_to_the_triples_in_order(corpus, vocab, words):
    """`edits` (keys sliced, written out only when kept) against the plain way: build every edit's
    words, drop those that double a word beside the edit or make a triple over it the corpus lacks.
    The same sentences in the same order (the int8 judge's scores depend on its batches). The
    sentence need not be the corpus's, so triples it already had count too."""
    from semcomp.decoders.edit import WordPairs, _end, edits

    key = lambda w: re.sub(r"[^\w']", "", w.lower())  # noqa: E731
    marked = lambda ws: ["<s>", *map(key, ws), "</s>"]  # noqa: E731
    seen = {tuple(k[i:i + 3]) for ws in corpus for k in [marked(ws)] for i in range(len(k) - 2)}
    sentence = " ".join(words)
    ws, tail = words[:-1] + [_end(words[-1])[0]], _end(words[-1])[1]
    vs = list(dict.fromkeys(_end(v)[0] for v in vocab))
    plain = []
    for i in range(len(ws) + 1):
        if i < len(ws):
            plain.append((ws[:i] + ws[i + 1:], (i - 1, i)))
        for v in vs:
            plain.append((ws[:i] + [v] + ws[i:], (i,)))
            if i < len(ws) and v.lower() != ws[i].lower():
                plain.append((ws[:i] + [v] + ws[i + 1:], (i,)))

    def fine(new: list[str], at: tuple[int, ...]) -> bool:
        k = marked(new)
        doubled = any(0 <= j < len(new) - 1 and k[j + 1] and k[j + 1] == k[j + 2] for a in at for j in (a - 1, a))
        return bool(new) and not doubled and all(tuple(k[s:s + 3]) in seen for a in at
                                                 for s in range(len(k) - 2) if s <= a + 1 < s + 3)

    want = list(dict.fromkeys(" ".join(new) + tail for new, at in plain if fine(new, at)))
    want = [e for e in want if e != sentence]
    assert edits(sentence, vocab, WordPairs([" ".join(c) for c in corpus])) == want


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_TOY), min_size=1, max_size=7), min_size=1, max_size=12),
       st.lists(st.tuples(st.lists(st.sampled_from(_TOY + ["car.", "Van,"]), min_size=1, max_size=8),
                          st.lists(st.integers(-1, 8), min_size=1, max_size=2)), max_size=20))
def test_the_batched_triple_lookup_matches_a_plain_set_for_any_words_and_positions(corpus, asked):
    """`WordPairs.allow` (cached hashes, one lookup for all) against a set of triples, for words
    the corpus need not hold: a (words, positions) pair passes when every triple over a position
    (sentence marks included, position -1 the start mark) is in the set."""
    from semcomp.decoders.edit import WordPairs

    def keys(ws: list[str]) -> list[str]:
        return ["<s>", *(re.sub(r"[^\w']", "", w.lower()) for w in ws), "</s>"]

    seen = {tuple(k[i:i + 3]) for ws in corpus for k in [keys(ws)] for i in range(len(k) - 2)}
    asked = [(ws, [min(a, len(ws)) for a in at]) for ws, at in asked]
    want = [all(tuple(k[s:s + 3]) in seen for a in at for s in range(len(k) - 2) if s <= a + 1 < s + 3)
            for ws, at in asked for k in [keys(ws)]]
    assert WordPairs([" ".join(ws) for ws in corpus]).allow(asked).tolist() == want


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_TOY), min_size=1, max_size=7), min_size=1, max_size=12),
       st.lists(st.lists(st.sampled_from(_TOY + ["car.", "zebra", "Van,"]), max_size=8), min_size=1, max_size=6))
def test_fluency_is_stupid_backoff_over_the_corpus_counts(corpus, asked):
    """`WordPairs.fluency` (hashed count tables, one lookup an order) against plain Counters: the
    mean log of count(context + word) / count(context) at the longest context seen, x 0.4 a
    backed-off order, half a count of order 1 for a word never seen."""
    from collections import Counter

    from semcomp.decoders.edit import WordPairs

    def keys(ws: list[str]) -> list[str]:
        return ["<s>", *(re.sub(r"[^\w']", "", w.lower()) for w in ws), "</s>"]

    c = Counter(tuple(k[i:i + m]) for ws in corpus for k in [keys(ws)] for m in (1, 2, 3) for i in range(len(k) - m + 1))
    total = sum(v for g, v in c.items() if len(g) == 1)

    def reference(ws: list[str]) -> float:
        k, logs = keys(ws), []
        for i in range(1, len(k)):
            top = min(3, i + 1)
            hit = next((m for m in range(top, 0, -1) if c[tuple(k[i - m + 1:i + 1])]), 0)
            g = tuple(k[i - hit + 1:i + 1])
            p = c[g] / (c[g[:-1]] if hit > 1 else total) if hit else 0.5 / total
            logs.append(math.log(0.4 ** (top - max(hit, 1)) * p))
        return sum(logs) / len(logs)

    got = WordPairs([" ".join(ws) for ws in corpus]).fluency([" ".join(ws) for ws in asked])
    assert got == pytest.approx([reference(ws) for ws in asked], abs=1e-9)


def test_a_fluency_weight_picks_what_reads_like_the_dictionary_never_below_the_best_neighbour():
    """Cosines set by hand: word soup (0.62) beats a sentence of the corpus (0.60) on cosine
    alone; with a fluency weight the sentence wins; a heavier weight would rank a fluent
    sentence the judge puts below the best neighbour (0.45 < 0.50) first, and it is not picked."""
    from semcomp.decoders.edit import WordPairs

    cos = {"the cat sat on the mat": 0.5, "mat the on sat cat the": 0.62, "the cat sat on a mat": 0.6,
           "a dog sat on a mat": 0.45}

    def embed(texts: list[str]) -> np.ndarray:
        return np.array([[cos[t], math.sqrt(1 - cos[t] ** 2)] for t in texts], np.float32)

    pairs = WordPairs(["the cat sat on a mat", "a dog sat on a mat", "a dog sat on a mat"])
    fluent = dict(zip(cos, pairs.fluency(list(cos))))
    assert fluent["a dog sat on a mat"] > fluent["the cat sat on a mat"] > fluent["mat the on sat cat the"]

    def pick(weight: float) -> dict:
        return refine([("the cat sat on the mat", 0.5)], np.array([1.0, 0.0]), embed,
                      lambda *a: ["mat the on sat cat the", "the cat sat on a mat", "a dog sat on a mat"],
                      rounds=1, pairs=pairs, fluency=weight)

    assert pick(0.0)["reconstruction"] == "mat the on sat cat the"
    assert pick(0.1)["reconstruction"] == "the cat sat on a mat"
    heavy = pick(5.0)
    assert 0.45 + 5 * fluent["a dog sat on a mat"] > 0.6 + 5 * fluent["the cat sat on a mat"]  # it would rank first
    assert heavy["reconstruction"] == "the cat sat on a mat" and heavy["score"] == pytest.approx(0.6, abs=1e-6)


def test_a_language_model_picks_among_the_top_candidates_only_and_never_below_the_best_neighbour():
    """Cosines and log-probabilities set by hand. The model prefers the fluent sentence (0.59) to
    word soup (0.62), but only among the `pick_top` best, and never a sentence the judge puts below
    the best neighbour, however fluent."""
    cos = {"the cat sat on the mat": 0.5, "mat the on sat cat the": 0.62, "the cat sat on a mat": 0.59,
           "a cat sat on a mat": 0.58, "a dog sat on a mat": 0.45}
    read = {"the cat sat on the mat": -3.0, "mat the on sat cat the": -7.0, "the cat sat on a mat": -3.5,
            "a cat sat on a mat": -2.0, "a dog sat on a mat": -1.0}
    asked: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        return np.array([[cos[t], math.sqrt(1 - cos[t] ** 2)] for t in texts], np.float32)

    def logprob(texts: list[str]) -> np.ndarray:
        asked.append(list(texts))
        return np.array([read[t] for t in texts])

    def pick(weight: float, top: int) -> str:
        return refine([("the cat sat on the mat", 0.5)], np.array([1.0, 0.0]), embed,
                      lambda *a: [t for t in cos if t != "the cat sat on the mat"], rounds=1,
                      pick=logprob, pick_weight=weight, pick_top=top)["reconstruction"]

    assert pick(0.0, 8) == "mat the on sat cat the" and not asked  # weight 0: the model is not asked
    assert pick(0.01, 2) == "the cat sat on a mat"  # 0.59 - 0.035 beats 0.62 - 0.07
    assert asked[-1] == ["mat the on sat cat the", "the cat sat on a mat"]  # the two best by the judge
    assert pick(0.01, 3) == "a cat sat on a mat"  # 0.58 - 0.02 beats both
    assert pick(10.0, 8) == "a cat sat on a mat"  # not "a dog sat on a mat" (-10 + 0.45), below the floor
    assert sorted(asked[-1]) == sorted(t for t in cos if cos[t] >= 0.5)  # what is below it is never read


def test_an_edit_beam_leaves_a_local_optimum_that_stops_one_best_sentence():
    """The judge likes 'one three' best after one edit, but only 'one four' leads (one more edit)
    to 'three four'."""
    judged = {"one two": 0.3, "one three": 0.6, "one four": 0.5, "three four": 0.9}

    def embed(texts):
        s = np.array([judged.get(t, 0.0) for t in texts], np.float32)
        return np.stack([s, np.sqrt(1 - s ** 2)], axis=1)

    target, nbrs = np.array([1.0, 0.0]), [("one two", 0.3), ("three four", 0.1)]
    greedy = refine(nbrs, target, embed, None, rounds=0, edit_steps=5)
    beam = refine(nbrs, target, embed, None, rounds=0, edit_steps=5, edit_beam=2)
    assert greedy["reconstruction"] == "one three" and greedy["score"] == pytest.approx(0.6)
    assert beam["reconstruction"] == "three four" and beam["score"] == pytest.approx(0.9)


def test_edit_neighbours_widens_the_pool_fusions_and_edit_words_draw_on():
    """Only the fourth neighbour holds 'epsilon zeta': three never reach the target, four do,
    through the config key the fusion decoder reads."""
    from semcomp import decoders
    from semcomp.config import load_config
    from semcomp.decoders.edit import vocabulary

    embed = _bag_of_words
    nbrs = [("alpha beta, gamma delta", 0.6), ("gamma delta, eta theta", 0.5), ("eta theta, gamma delta", 0.4),
            ("eta theta, epsilon zeta", 0.3)]
    items = [{"neighbours": nbrs, "target": embed(["alpha beta epsilon zeta"])[0]}]
    got = {}
    for k in (3, 4):
        cfg = load_config(None, [f"llm_edit_neighbours={k}", "llm_edit_steps=0"])
        got[k] = decoders.text_decoder(cfg, "fusion", None)(items, embed)[0]
    assert got[3]["score"] < 0.9 and "epsilon" not in got[3]["reconstruction"]
    assert got[4]["reconstruction"] == "alpha beta, epsilon zeta" and got[4]["score"] == pytest.approx(1.0, abs=1e-6)
    assert "epsilon" not in vocabulary(nbrs, top=3) and "epsilon" in vocabulary(nbrs, top=4)


def test_edit_lines_lend_the_words_of_what_the_model_wrote_to_the_edit_search():
    """The neighbour misses 'gamma', the inverter's line has it: with edit_lines=1 an edit swaps it in."""
    vocab = ["alpha", "beta", "gamma", "delta", "omega"]

    def embed(texts):
        return np.array([[t.split().count(w) for w in vocab] for t in texts], np.float32) + 1e-3

    target, nbrs, lines = embed(["alpha beta gamma"])[0], [("alpha beta delta", 0.8)], ["gamma omega omega"]
    alone = refine(nbrs, target, embed, None, rounds=0, edit_steps=4, proposals=lines)
    assert alone["reconstruction"] == "alpha beta"  # delta deleted; no gamma to put in
    lent = refine(nbrs, target, embed, None, rounds=0, edit_steps=4, proposals=lines, edit_lines=1)
    assert lent["reconstruction"] == "alpha beta gamma" and lent["score"] == pytest.approx(1.0, abs=1e-3)


def test_the_best_few_are_scored_again_by_the_exact_judge():
    """An int8 judge approximates the fp32 one; the search climbs its errors. With `exact` and
    `rescore_top`, the best few (and the best neighbour, the floor) are scored again and the
    exact best of them wins; without, the approximate judge's favourite does."""
    target = _bag_of_words(["alpha beta gamma"])[0]
    nbrs = [("alpha beta delta", 0.6), ("gamma epsilon", 0.5)]
    proposals = ["alpha beta eta", "alpha beta gamma delta"]

    def rough(texts: list[str]) -> np.ndarray:  # pulls sentences with 'eta' to the target, as an int8 error might
        e = _bag_of_words(texts) + 2.0 * np.array([[("eta" in t.split())] * 3 + [0] * 5 for t in texts], np.float32)
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    exact_calls: list[list[str]] = []
    exact = lambda texts: exact_calls.append(list(texts)) or _bag_of_words(texts)  # noqa: E731
    approx = refine(nbrs, target, rough, None, 0, proposals=proposals)
    assert approx["reconstruction"] == "alpha beta eta"
    r = refine(nbrs, target, rough, None, 0, proposals=proposals, exact=exact, rescore_top=2)
    assert r["reconstruction"] == "alpha beta gamma delta" and r["score"] == pytest.approx(3 / 12 ** 0.5, abs=1e-6)
    assert len(exact_calls) == 1 and set(exact_calls[0]) == {*proposals, "alpha beta delta"}
    assert refine(nbrs, target, rough, None, 0, proposals=proposals, exact=exact, rescore_top=0) == approx
    # the floor is the best neighbour's exact score: a candidate only the rough judge liked does not pass it
    assert refine(nbrs[:1], target, rough, None, 0, proposals=["eta zeta"])["reconstruction"] == "eta zeta"
    low = refine(nbrs[:1], target, rough, None, 0, proposals=["eta zeta"], exact=exact, rescore_top=1)
    assert low["reconstruction"] == "alpha beta delta"
