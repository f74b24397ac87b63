"""Small FAISS helpers every FAISS user here needs: quiet C++ output, thread counts, no polysemous
training. Kept below the index and the quantisers so that neither imports the other for them."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from typing import Iterator

import faiss

@contextlib.contextmanager
def faiss_quiet(log_name: str = "semcomp") -> Iterator[list[str]]:
    """Catch what FAISS's C++ prints to stderr (its k-means writes one 'please provide at least N
    training points' line per sub-quantiser and iteration of OPQ: hundreds a run); the caller gets
    the distinct lines and decides what to say once."""
    caught: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield caught
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines = tmp.read().decode("utf-8", "replace").splitlines()
            caught += list(dict.fromkeys(line.strip() for line in lines if line.strip()))
            for line in caught:
                logging.getLogger(log_name).debug("faiss: %s", line)


@contextlib.contextmanager
def faiss_threads_for(n: int, small: int = 2_000) -> Iterator[None]:
    """One FAISS thread while training on fewer than `small` vectors: OpenMP's spinning threads
    gain nothing on such sizes and, on a busy 2-core machine, made OPQ training on 630 vectors
    take 100 s instead of about one (measured). From 9,000 vectors on, two threads pay (idle
    machine, 2 cores): OPQ16 12.1 -> 8.8 s, RQ 16 x 8 86 -> 52 s."""
    before = faiss.omp_get_max_threads()
    if n < small:
        faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def no_polysemous(index: faiss.Index) -> None:
    """index_factory turns on polysemous training for 8-bit PQ: 12 of the index's 16 s on 9,000
    vectors here, for Hamming-filtered search nothing uses (search_type stays ST_PQ)."""
    base = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else index
    if hasattr(base, "do_polysemous_training"):
        base.do_polysemous_training = False
