"""Standard quantisers at a given bit budget, for an honest comparison with the VQ-VAE."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import faiss
import numpy as np

FAISS_KINDS = ("pq", "opq", "rq")


@dataclass
class Quantizer:
    name: str
    bits: int                                   # measured from the trained codec's code size
    encode: Callable[[np.ndarray], np.ndarray]  # (n, d) float32 -> (n, code_bytes) uint8
    decode: Callable[[np.ndarray], np.ndarray]  # codes -> (n, d) float32, unit norm

    def roundtrip(self, x: np.ndarray) -> np.ndarray:
        return self.decode(self.encode(x))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def split_bits(bits: int, dim: int) -> tuple[int, int]:
    """bits = M * nbits with dim % M == 0, preferring 8-bit codes (FAISS's fastest)."""
    for nbits in (8, 9, 10, 11, 12, 7, 6, 5, 4):
        if bits % nbits == 0 and dim % (bits // nbits) == 0:
            return bits // nbits, nbits
    raise ValueError(f"cannot split {bits} bits into PQ sub-quantisers of a {dim}-d vector")


def faiss_quantizer(kind: str, bits: int, train: np.ndarray, seed: int = 0, opq_iterations: int = 25,
                    ) -> Quantizer:
    """PQ, OPQ+PQ or residual quantiser (beam 8) with exactly `bits` bits per vector."""
    d = train.shape[1]
    m, nbits = split_bits(bits, d)
    train = np.ascontiguousarray(train, np.float32)
    if kind == "opq":
        q = faiss.index_factory(d, f"OPQ{m},PQ{m}x{nbits}")
        opq = faiss.downcast_VectorTransform(q.chain.at(0))
        opq.niter = opq_iterations  # FAISS's default 50 costs minutes on 2 cores for ~0.002 cosine
        q.train(train)
        return Quantizer(f"opq-{bits}", q.sa_code_size() * 8,
                         lambda x: q.sa_encode(np.ascontiguousarray(x, np.float32)),
                         lambda c: _unit(q.sa_decode(c)))
    if kind == "rq":
        q = faiss.ResidualQuantizer(d, m, nbits)
        q.max_beam_size = 8  # FAISS's default training (progressive-dimension k-means): its strongest RQ
    elif kind == "pq":
        q = faiss.ProductQuantizer(d, m, nbits)
    else:
        raise ValueError(f"unknown baseline {kind!r}")
    q.cp.seed = seed
    q.cp.min_points_per_centroid = 1  # small training sets are fine; silences FAISS's warning
    q.train(train)
    return Quantizer(f"{kind}-{bits}", q.code_size * 8,
                     lambda x: q.compute_codes(np.ascontiguousarray(x, np.float32)),
                     lambda c: _unit(q.decode(c)))


def sign_binary(dim: int) -> Quantizer:
    """One bit a dimension: the sign."""
    return Quantizer(f"binary-{dim}", dim,
                     lambda x: np.packbits(x > 0, axis=1),
                     lambda c: _unit(np.unpackbits(c, axis=1, count=dim).astype(np.float32) * 2 - 1))


def int8(train: np.ndarray) -> Quantizer:
    """Eight bits a dimension, per-dimension range learnt on the training set (FAISS SQ8)."""
    sq = faiss.ScalarQuantizer(train.shape[1], faiss.ScalarQuantizer.QT_8bit)
    sq.train(np.ascontiguousarray(train, np.float32))
    return Quantizer(f"int8-{train.shape[1] * 8}", sq.code_size * 8,
                     lambda x: sq.compute_codes(np.ascontiguousarray(x, np.float32)),
                     lambda c: _unit(sq.decode(c)))
