"""The dictionary: sentences, their exact embeddings and a FAISS (OPQ+PQ by default) index."""
from __future__ import annotations

import contextlib
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import faiss
import numpy as np

from .artifacts import atomic_write
from .errors import UsageError
from .faiss_util import faiss_quiet, faiss_threads_for, no_polysemous
from .metrics import exact_topk, recall


MIN_OPQ_TRAIN = 512  # FAISS's OPQ training crashed (heap corruption) on 360 vectors here
# Below this, exact search: nothing to train, and faster than OPQ16,PQ16 (measured, 2 cores, 10,000
# decoded queries: 2,700 vectors 55.8k vs 31.0k queries/s, OPQ trained in 2.4 s; 4,500: 27.8k vs 26.5k)
FLAT_BELOW = 5_000
GRAPH_ABOVE = 50_000  # past this, scanning every PQ code costs more than walking a graph
# search effort tried by `tune_effort`, smallest first: IVF lists visited (nprobe), HNSW efSearch
EFFORTS = {"ivf": (4, 8, 16, 32, 64, 128, 256), "hnsw": (16, 24, 32, 48, 64, 96, 128, 256)}
RECALL_TARGET = 0.95


def check_factory(factory: str, pq_m: int, d: int = 384) -> None:
    """A FAISS index_factory string FAISS can build, checked before any work: 'JUNK99' failed in
    FAISS after the whole embedding and training."""
    if factory == "auto":
        return
    try:
        faiss.index_factory(d, factory.format(pq_M=pq_m), faiss.METRIC_INNER_PRODUCT)
    except (RuntimeError, KeyError, IndexError, ValueError) as e:
        why = str(e).strip().splitlines()[-1].rsplit(": ", 1)[-1][:200] if str(e).strip() else type(e).__name__
        raise UsageError(f"index_factory {factory!r} is not a FAISS index_factory string ({why})") from None


def choose_factory(n: int, pq_m: int) -> str:
    """The index for a dictionary of n sentences: exact when tiny, OPQ+PQ when small, a graph above.

    Above GRAPH_ABOVE, HNSW over the vectors themselves. Measured on the 285k-sentence general
    dictionary with decoded queries (2 cores): HNSW32 6,641 queries/s at recall@10 0.974 (efSearch
    64, built in 52 s); IVF2048,Flat 2,074/s at 0.968 (nprobe 64); IVF+OPQ+PQ missed 0.95 (0.58
    with OPQ16,IVF2048,PQ16 even at nprobe 256; OPQ32/PQ32 needed nprobe 64 and 128 re-ranked).
    It holds n x (384 floats + 64 links): 0.5 GB at 285k."""
    if n < FLAT_BELOW:
        return "Flat"
    if n <= GRAPH_ABOVE:
        return f"OPQ{pq_m},PQ{pq_m}"
    return "HNSW32"


def _rows(emb: np.ndarray | str | Path, rows: slice | np.ndarray) -> np.ndarray:
    """Rows of an array, or of an .npy file through a memmap opened for this read only (a mapping
    kept open would count every page read so far in the process's RSS)."""
    if isinstance(emb, (str, Path)):
        mm = np.load(emb, mmap_mode="r")
        out = np.ascontiguousarray(mm[rows], np.float32)
        del mm
        return out
    return np.ascontiguousarray(emb[rows], np.float32)


def build_index(emb: np.ndarray | str | Path, factory: str, opq_iterations: int = 10, max_train: int = 100_000,
                chunk: int = 65_536, seed: int = 0) -> faiss.Index:
    """Train and fill an inner-product index (cosine, as embeddings are unit norm).

    `emb` may be an array or an .npy file of any size: training sees a random sample of at most
    `max_train` rows and the vectors are added `chunk` rows at a time, so memory stays bounded.
    """
    n, d = np.load(emb, mmap_mode="r").shape if isinstance(emb, (str, Path)) else emb.shape
    index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    if isinstance(index, faiss.IndexPreTransform):
        for i in range(index.chain.size()):
            vt = faiss.downcast_VectorTransform(index.chain.at(i))
            if isinstance(vt, faiss.OPQMatrix):
                if min(n, max_train) < MIN_OPQ_TRAIN:
                    raise UsageError(f"OPQ needs at least {MIN_OPQ_TRAIN} dictionary sentences, got {n}: "
                                     f"use more data or --set index_factory=PQ{{pq_M}}")
                # FAISS's default of 50 rotation updates costs minutes; 10 keep most of the gain.
                vt.niter = opq_iterations
    no_polysemous(index)
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efConstruction = 80  # FAISS's 40 builds a graph that needs a larger efSearch for the same recall
    if not index.is_trained:
        rows = np.sort(np.random.default_rng(seed).choice(n, max_train, replace=False)) if n > max_train else slice(None)
        train = _rows(emb, rows)
        with faiss_quiet(), faiss_threads_for(len(train)):  # OPQ's k-means warns per sub-quantiser and iteration
            index.train(train)
    for i in range(0, n, chunk):
        index.add(_rows(emb, slice(i, i + chunk)))
    return index


def save_index(index: faiss.Index, path: str | Path) -> None:
    """Streamed to the file: serialize_index would hold a second copy (0.5 GB for HNSW at 285k)."""
    with atomic_write(path) as f:
        faiss.write_index(index, faiss.PyCallbackIOWriter(f.write))


def load_index(path: str | Path) -> faiss.Index:
    return faiss.read_index(str(path))


def dictionary_search(index: faiss.Index, dict_emb: np.ndarray, search_k: int, effort: int | None = None,
                      ) -> Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]:
    """`search` with a re-rank depth and effort (None: FAISS's default): (queries, k) -> (ids, scores)."""
    return partial(search, index, dict_emb, candidates=search_k, effort=effort)


def _kind(index: faiss.Index) -> str | None:
    if faiss.try_extract_index_ivf(index) is not None:
        return "ivf"
    return "hnsw" if isinstance(index, faiss.IndexHNSW) else None


def tune_effort(index: faiss.Index, dict_emb: np.ndarray, queries: np.ndarray, candidates: int,
                target: float = RECALL_TARGET, k: int = 10) -> tuple[int | None, float]:
    """The smallest search effort (IVF nprobe, HNSW efSearch) whose top-k holds `target` of the
    exact top-k (None for indexes with nothing to tune), and the recall it reached."""
    truth = exact_topk(dict_emb, queries, k)
    kind = _kind(index)
    if kind is None:
        return None, recall(truth, search(index, dict_emb, queries, k, candidates)[0])
    got = 0.0
    for effort in EFFORTS[kind]:
        got = recall(truth, search(index, dict_emb, queries, k, candidates, effort)[0])
        if got >= target:
            break
    return effort, got


def holds_vectors(index: faiss.Index) -> bool:
    """Indexes that store the vectors themselves score candidates exactly: nothing to re-rank."""
    return isinstance(index, (faiss.IndexFlat, faiss.IndexIVFFlat, faiss.IndexHNSWFlat))


def search(index: faiss.Index, dict_emb: np.ndarray, queries: np.ndarray, k: int, candidates: int,
           effort: int | None = None, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Approximate top-`candidates` from the index, re-ranked by exact cosine; returns (ids, scores) top-k.
    `effort`: IVF lists visited (nprobe) or HNSW efSearch; None: 16 lists, or efSearch 64. An index
    that holds the vectors (Flat, IVF-Flat, HNSW) scores exactly already: its top-k is returned as
    is, and `dict_emb` is not read."""
    kind = _kind(index)
    if kind == "ivf":
        faiss.extract_index_ivf(index).nprobe = effort or 16
    elif kind == "hnsw":
        index.hnsw.efSearch = max(effort or 64, k)
    queries = np.ascontiguousarray(queries, np.float32)
    if holds_vectors(index):
        k = min(k, index.ntotal)
        scores, ids = index.search(queries, k)
        missing = ids < 0  # IVF may find fewer than asked: rank those slots last
        return np.where(missing, 0, ids), np.where(missing, -np.inf, scores).astype(np.float32)
    candidates = min(max(candidates, k), index.ntotal)
    out_ids, out_scores = [], []
    for i in range(0, len(queries), chunk):  # the re-rank gathers (chunk, candidates, d) floats
        q = queries[i:i + chunk]
        _, ids = index.search(q, candidates)
        missing = ids < 0  # IVF may find fewer than asked: rank those slots last
        ids = np.where(missing, 0, ids)
        exact = np.where(missing, -np.inf, np.einsum("nd,nkd->nk", q, dict_emb[ids])).astype(np.float32)
        order = np.argsort(-exact, axis=1)[:, :k]
        out_ids.append(np.take_along_axis(ids, order, 1))
        out_scores.append(np.take_along_axis(exact, order, 1))
    if not out_ids:
        return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
    return np.concatenate(out_ids), np.concatenate(out_scores)
