"""semcomp.index on synthetic vectors: streamed builds from a memmap, IVF search, re-ranking."""
from __future__ import annotations

import numpy as np
import pytest

from semcomp.index import build_index, search


def _unit(n: int, d: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, d))
    x = centres[rng.integers(0, 50, n)] + 0.5 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_streamed_ivf_build_from_memmap_finds_the_exact_neighbours(tmp_path):
    path = tmp_path / "emb.npy"
    np.save(path, _unit(4000))
    emb = np.load(path, mmap_mode="r")
    index = build_index(path, "IVF16,PQ8", max_train=1500, chunk=700)  # from the file, 6 chunks
    assert index.ntotal == 4000
    same = build_index(emb, "IVF16,PQ8", max_train=1500, chunk=700)  # from the mapped array
    np.testing.assert_array_equal(same.search(emb[:20], 5)[1], index.search(emb[:20], 5)[1])
    q = _unit(100, seed=1)
    exact = np.argsort(-(q @ np.asarray(emb).T), axis=1)[:, :10]
    few, _ = search(index, emb, q, 10, candidates=200, effort=1)
    ids, scores = search(index, emb, q, 10, candidates=200, effort=16, chunk=30)  # every list, chunked
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)])
    recall_few = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(few, exact)])
    assert recall > 0.9 and recall_few < 0.6  # every list vs one: nprobe reaches the index
    np.testing.assert_allclose(scores, np.einsum("nd,nkd->nk", q, np.asarray(emb)[ids]), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # re-ranked by exact cosine


def test_ivf_short_lists_never_return_padding_first():
    emb = _unit(600)
    index = build_index(emb, "IVF64,Flat")
    ids, scores = search(index, emb, emb[:5], 10, candidates=300, effort=1)
    assert ids[:, 0].tolist() == list(range(5))  # each vector finds itself
    assert np.isfinite(scores[:, 0]).all()


def test_indexes_holding_the_vectors_need_no_rerank():
    """Flat and IVF-Flat score exactly: with every list probed the result is the brute-force top-k,
    with the exact cosines, and the dictionary array is never read (a bad one changes nothing)."""
    emb = _unit(3000)
    q = _unit(50, seed=2)
    exact = np.argsort(-(q @ emb.T), axis=1)[:, :10]
    poison = np.full_like(emb, np.nan)
    for factory in ("Flat", "IVF32,Flat"):
        index = build_index(emb, factory)
        ids, scores = search(index, poison, q, 10, candidates=64, effort=32)
        np.testing.assert_array_equal(ids, exact)
        np.testing.assert_allclose(scores, np.take_along_axis(q @ emb.T, exact, 1), atol=1e-5)


def test_factory_follows_the_dictionary_size():
    from semcomp.index import choose_factory

    assert choose_factory(500, 16) == choose_factory(4_999, 16) == "Flat"
    assert choose_factory(9_000, 16) == "OPQ16,PQ16"
    assert choose_factory(285_000, 16) == "HNSW32"


@pytest.mark.parametrize("factory,kind", [("IVF64,PQ16", "ivf"), ("HNSW8", "hnsw")])
def test_tune_effort_reaches_the_recall_target_with_the_least_effort(factory, kind):
    from semcomp.index import EFFORTS, tune_effort
    from semcomp.metrics import exact_topk, recall

    emb = _unit(6000)
    index = build_index(emb, factory)
    q = _unit(300, seed=2)
    effort, got = tune_effort(index, emb, q, candidates=100, target=0.9)
    truth = exact_topk(emb, q, 10)
    assert got >= 0.9 and recall(truth, search(index, emb, q, 10, 100, effort)[0]) == got
    efforts = EFFORTS[kind]
    smaller = efforts[efforts.index(effort) - 1] if effort != efforts[0] else None
    if smaller is not None:  # one step less misses the target
        assert recall(truth, search(index, emb, q, 10, 100, smaller)[0]) < 0.9
    flat = build_index(emb, "Flat")
    assert tune_effort(flat, emb, q, candidates=10) == (None, 1.0)  # exact: nothing to tune


def test_faiss_warnings_are_caught_not_printed(capfd):
    from semcomp.faiss_util import faiss_quiet

    import faiss

    emb = _unit(600)
    with faiss_quiet() as lines:
        faiss.ProductQuantizer(64, 8, 8).train(emb)  # 600 points for 256 centroids: 8 warnings
    assert "please provide at least" in lines[0] and len(lines) == 1  # distinct lines only
    build_index(emb, "OPQ8,PQ8")  # build_index catches its own
    assert "please provide" not in capfd.readouterr().err


def test_a_bad_index_factory_is_refused_before_any_work(tmp_path):
    """'JUNK99' failed in FAISS after the whole embedding and training; now one line at once."""
    from semcomp.build import build
    from semcomp.config import load_config
    from semcomp.errors import UsageError

    cfg = load_config(None, ["index_factory=JUNK99", f"artifacts_dir={tmp_path / 'a'}", "data_dir=/nonexistent"])
    with pytest.raises(UsageError, match="could not parse index string JUNK99"):
        build(cfg)
    assert not (tmp_path / "a").exists()
