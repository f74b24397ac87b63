"""The dictionary: sentences, their exact embeddings and a FAISS (OPQ+PQ by default) index."""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from .artifacts import atomic_write


MIN_OPQ_TRAIN = 512  # FAISS's OPQ training crashed (heap corruption) on 360 vectors here


def build_index(emb: np.ndarray, factory: str, opq_iterations: int = 10) -> faiss.Index:
    """Train and fill an inner-product index (cosine, as embeddings are unit norm)."""
    emb = np.ascontiguousarray(emb, np.float32)
    index = faiss.index_factory(emb.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if isinstance(index, faiss.IndexPreTransform):
        for i in range(index.chain.size()):
            vt = faiss.downcast_VectorTransform(index.chain.at(i))
            if isinstance(vt, faiss.OPQMatrix):
                if len(emb) < MIN_OPQ_TRAIN:
                    raise ValueError(f"OPQ needs at least {MIN_OPQ_TRAIN} dictionary sentences, got {len(emb)}: "
                                     f"use more data or --set index_factory=PQ{{pq_M}}")
                # FAISS's default of 50 rotation updates costs minutes; 10 keep most of the gain.
                vt.niter = opq_iterations
    if not index.is_trained:
        index.train(emb)
    index.add(emb)
    return index


def save_index(index: faiss.Index, path: str | Path) -> None:
    with atomic_write(path) as f:
        f.write(faiss.serialize_index(index).tobytes())


def load_index(path: str | Path) -> faiss.Index:
    return faiss.deserialize_index(np.fromfile(path, dtype=np.uint8))


def search(index: faiss.Index, dict_emb: np.ndarray, queries: np.ndarray, k: int, candidates: int,
           ) -> tuple[np.ndarray, np.ndarray]:
    """Approximate top-`candidates` from the index, re-ranked by exact cosine; returns (ids, scores) top-k."""
    queries = np.ascontiguousarray(queries, np.float32)
    candidates = min(max(candidates, k), index.ntotal)
    _, ids = index.search(queries, candidates)
    ids = np.where(ids < 0, 0, ids)  # IVF may return fewer than asked: pad with a real id
    exact = np.einsum("nd,nkd->nk", queries, dict_emb[ids])
    order = np.argsort(-exact, axis=1)[:, :k]
    return np.take_along_axis(ids, order, 1), np.take_along_axis(exact, order, 1)
