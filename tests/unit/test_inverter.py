"""The inverter (decoders/inverter.py): a model trained on (embedding, sentence) pairs writes the
sentence back, survives a save and load, and its samples reach the judge as candidates."""
from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import pytest
import torch

from semcomp import decoders
from semcomp.decoders import inverter
from semcomp.decoders.refine import refine
from semcomp.errors import ModelError, UsageError

SENTENCES = ["The cat sat on the mat.", "Stocks fell sharply on Monday.",
             "Please send the report by Friday.", "lol that movie was terrible"]


def _pairs() -> tuple[np.ndarray, np.ndarray, list[np.ndarray], Any]:
    rng = np.random.default_rng(0)
    keys = rng.normal(size=(len(SENTENCES), 16)).astype(np.float32)
    rows = np.repeat(np.arange(len(SENTENCES)), 64)
    emb = keys[rows] + 0.1 * rng.normal(size=(len(rows), 16)).astype(np.float32)  # what codes leave: near, not exact
    tok = inverter.train_tokenizer(SENTENCES * 4, 300)
    return keys, emb, inverter.tokenize(tok, [SENTENCES[r] for r in rows], 24), tok


def _trained(steps: int = 150, init: inverter.Inverter | None = None) -> inverter.Inverter:
    keys, emb, ids, tok = _pairs()
    torch.manual_seed(0)
    model = inverter.train(emb, ids, tok, {"layers": 2, "width": 64, "heads": 4, "prefix": 2, "dropout": 0.0},
                           seconds=120, max_steps=steps, tokens=2048, lr=3e-3, val=16, warmup=10, init=init,
                           log=lambda row: None)
    model.keys = keys
    return model


@pytest.fixture(scope="module")
def trained() -> inverter.Inverter:
    return _trained()


def test_the_tokenizer_keeps_case_and_punctuation_and_ends_with_eos():
    tok = inverter.train_tokenizer(SENTENCES, 300)
    ids = inverter.tokenize(tok, SENTENCES, 64)
    assert all(x[-1] == 0 and 0 not in x[:-1] for x in ids)
    assert [tok.decode(list(x[:-1])) for x in ids] == SENTENCES
    assert len(inverter.tokenize(tok, [SENTENCES[0]], 3)[0]) == 3  # cut: no EOS


def test_a_trained_inverter_writes_each_sentence_back_from_its_embedding(trained):
    greedy = trained.sample(trained.keys, 1, temperature=0)
    assert [g[0] for g in greedy] == SENTENCES
    sampled = trained.sample(trained.keys, 4, temperature=0.5, seed=1)
    assert [len(s) for s in sampled] == [4] * len(SENTENCES)
    assert sum(x == SENTENCES[i] for i, s in enumerate(sampled) for x in s) >= 12  # mostly right, sampled


def test_training_goes_on_from_init_weights(trained):
    fresh = _trained(steps=5)  # 5 steps from scratch write nothing back
    assert [g[0] for g in fresh.sample(trained.keys, 1, temperature=0)] != SENTENCES
    more = _trained(steps=5, init=copy.deepcopy(trained))  # 5 more on top of 150 keep what was learnt
    assert [g[0] for g in more.sample(trained.keys, 1, temperature=0)] == SENTENCES


def test_a_save_cut_short_leaves_the_last_one_whole(trained, tmp_path):
    folder = tmp_path / "inverter"
    trained.save(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    model = copy.deepcopy(trained)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)

    class Interrupted:  # Ctrl-C after the shape and the new weights are written
        def save(self, path):
            raise KeyboardInterrupt

    model.tokenizer = Interrupted()
    with pytest.raises(KeyboardInterrupt):
        model.save(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["inverter"]  # nothing staged is left behind


def test_save_and_load_give_the_same_sentences(trained, tmp_path):
    trained.save(tmp_path)
    loaded = decoders.load_inverter(tmp_path)
    assert loaded.sample(trained.keys, 1, temperature=0) == trained.sample(trained.keys, 1, temperature=0)
    with pytest.raises(ModelError, match="bench/inverter.py"):
        decoders.load_inverter(tmp_path / "missing")
    with pytest.raises(ModelError, match="another build"):  # it learnt one build's decoded embeddings
        decoders.load_inverter(tmp_path, codec="0123456789abcdef")
    weights = tmp_path / "inverter.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # cut off: one line naming the fix, not a traceback
    with pytest.raises(ModelError, match="cannot be read"):
        decoders.load_inverter(tmp_path)


def test_samples_reach_the_judge_with_their_time_and_can_win():
    class Writer:  # an inverter's interface: (n, d) -> n lists of sentences
        def sample(self, emb, num, temperature, seed=0):
            return [[f"written {i} {j}" for j in range(num)] for i in range(seed, seed + len(emb))]

    records = [{"neighbours": [("a neighbour", 0.5)]} for _ in range(5)]
    items = decoders.targets(np.eye(5, dtype=np.float32), records, Writer(), samples=2, chunk=2)
    assert [it["proposals"] for it in items] == [[f"written {i} 0", f"written {i} 1"] for i in range(5)]
    assert all(it["seconds"] >= 0 for it in items)

    def judge(texts):  # the written sentence is the one the target points at
        return np.asarray([[1.0, 0.0] if t == "written 0 1" else [0.6, 0.8] for t in texts], np.float32)

    out = refine([("a neighbour", 0.5)], np.array([1.0, 0.0]), judge, lambda *a: [], rounds=0,
                 proposals=items[0]["proposals"])
    assert out["reconstruction"] == "written 0 1"


def test_a_second_round_aims_past_what_the_first_missed():
    """A writer that misses by 20 degrees every time: the second round, aimed by the judge, lands
    near the target; one round, or a step of 0, keeps the miss."""
    def angle(v: np.ndarray) -> float:
        return float(np.degrees(np.arctan2(v[1], v[0])))

    class Biased:  # writes "deg K", K = the aim's angle + 20, whatever the seed
        def sample(self, emb, num, temperature, seed=0):
            return [[f"deg {round(angle(e) + 20)}"] * num for e in emb]

    def judge(texts):
        rad = np.radians([float(t.split()[1]) for t in texts])
        return np.stack([np.cos(rad), np.sin(rad)], 1)

    target = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)  # 0 and 90 degrees
    one = inverter.write(Biased(), target, 2, 0.8, rounds=1, judge=judge)
    assert one == [["deg 20"] * 2, ["deg 110"] * 2]
    two = inverter.write(Biased(), target, 2, 0.8, rounds=2, step=1.0, judge=judge)
    assert [ws[:2] for ws in two] == one and [len(ws) for ws in two] == [4, 4]
    misses = [abs(float(ws[-1].split()[1]) - goal) for ws, goal in zip(two, (0, 90))]
    assert max(misses) < 5, two  # the aim moved to about -18 and 72 degrees
    assert inverter.write(Biased(), target, 2, 0.8, rounds=2, step=0.0, judge=judge) == [ws * 2 for ws in one]
    items = decoders.targets(target, [{"neighbours": [("n", 0.1)]}] * 2, Biased(), samples=1, rounds=3, step=1.0,
                             judge=judge)
    assert [len(it["proposals"]) for it in items] == [3, 3]
    with pytest.raises(Exception, match="judge"):
        decoders.targets(target, [{"neighbours": [("n", 0.1)]}] * 2, Biased(), samples=1, rounds=2)


def test_the_guided_search_keeps_what_the_judge_scores_best_and_its_sentences_join_the_candidates(trained):
    """Token by token, the judge's choice among the inverter's likeliest next tokens, and only
    sentences the inverter could end are kept: with a judge that moves a text towards a sentence's key
    the more of that sentence it begins with, each key's own sentence comes first."""
    keys = trained.keys.astype(np.float64)
    dual = np.linalg.pinv(keys).T  # keys @ dual.T = I: a move along dual j changes the dot with key j alone
    base = np.random.default_rng(1).normal(size=keys.shape[1])
    base = base - dual.T @ (keys @ base)  # orthogonal to every key
    base *= np.linalg.norm(dual, axis=1).mean() / np.linalg.norm(base)

    def judge(texts):  # how much of a sentence a text begins with moves it towards that sentence's key alone
        return np.asarray([base + sum(len(os.path.commonprefix([x, s])) / len(s) * d for s, d in zip(SENTENCES, dual))
                           for x in texts], np.float32)

    found = inverter.guide(trained, trained.keys, judge, beam=2, expand=4, keep=3)
    assert [f[0] for f in found] == SENTENCES
    assert all(1 <= len(f) <= 3 and len(set(f)) == len(f) for f in found)
    unit = trained.keys / np.linalg.norm(trained.keys, axis=1, keepdims=True)
    for f, t in zip(found, unit):  # best first, by the judge
        v = judge(f) @ t / np.linalg.norm(judge(f), axis=1)
        assert np.all(np.diff(v) <= 1e-6)
    records = [{"neighbours": [("a neighbour", 0.5)]}] * len(SENTENCES)
    items = decoders.targets(trained.keys, records, trained, samples=0, beam=2, judge=judge)
    assert [it["proposals"][0] for it in items] == SENTENCES
    with pytest.raises(UsageError, match="judge"):
        decoders.targets(trained.keys, records, trained, samples=0, beam=2)
