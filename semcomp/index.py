"""The dictionary: sentences, their exact embeddings and a FAISS (OPQ+PQ by default) index."""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable

import faiss
import numpy as np

from .artifacts import atomic_write


MIN_OPQ_TRAIN = 512  # FAISS's OPQ training crashed (heap corruption) on 360 vectors here


def no_polysemous(index: faiss.Index) -> None:
    """index_factory turns on polysemous training for 8-bit PQ: 12 of the index's 16 s on 9,000
    vectors here, for Hamming-filtered search nothing uses (search_type stays ST_PQ)."""
    base = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else index
    if hasattr(base, "do_polysemous_training"):
        base.do_polysemous_training = False


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
                    raise ValueError(f"OPQ needs at least {MIN_OPQ_TRAIN} dictionary sentences, got {n}: "
                                     f"use more data or --set index_factory=PQ{{pq_M}}")
                # FAISS's default of 50 rotation updates costs minutes; 10 keep most of the gain.
                vt.niter = opq_iterations
    no_polysemous(index)
    if not index.is_trained:
        rows = np.sort(np.random.default_rng(seed).choice(n, max_train, replace=False)) if n > max_train else slice(None)
        index.train(_rows(emb, rows))
    for i in range(0, n, chunk):
        index.add(_rows(emb, slice(i, i + chunk)))
    return index


def save_index(index: faiss.Index, path: str | Path) -> None:
    with atomic_write(path) as f:
        f.write(faiss.serialize_index(index).tobytes())


def load_index(path: str | Path) -> faiss.Index:
    return faiss.deserialize_index(np.fromfile(path, dtype=np.uint8))


def dictionary_search(index: faiss.Index, dict_emb: np.ndarray, cfg: dict[str, Any]
                      ) -> Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]:
    """`search` with the config's re-rank depth and nprobe: (queries, k) -> (ids, scores)."""
    return partial(search, index, dict_emb, candidates=cfg["search_k"], nprobe=cfg.get("search_nprobe", 16))


def search(index: faiss.Index, dict_emb: np.ndarray, queries: np.ndarray, k: int, candidates: int,
           nprobe: int = 16, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Approximate top-`candidates` from the index, re-ranked by exact cosine; returns (ids, scores) top-k.
    `nprobe`: inverted lists visited, for IVF indexes."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = nprobe
    queries = np.ascontiguousarray(queries, np.float32)
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
