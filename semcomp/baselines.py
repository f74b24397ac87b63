"""Standard quantisers (FAISS): baselines at a given bit budget, and a selectable alternative to the VQ-VAE."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import faiss
import numpy as np

from .index import no_polysemous

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
        no_polysemous(q)
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


FACTORY = {"pq": "PQ{m}x{b}", "opq": "OPQ{m},PQ{m}x{b}", "rq": "RQ{m}x{b}"}


class FaissCodec:
    """A FAISS quantiser behind the VQVAE interface, selectable with `quantizer` in the config.

    Codes are the quantiser's own K indices of b bits (FAISS packs them least significant bit
    first; we unpack them so the codes file and `Codec.encode` look the same for every quantiser).
    """

    def __init__(self, index: faiss.Index, kind: str, num_codebooks: int, bits_per_code: int):
        self.index, self.kind = index, kind
        self.num_codebooks, self.bits_per_code, self.input_dim = num_codebooks, bits_per_code, index.d

    @classmethod
    def train(cls, kind: str, num_codebooks: int, bits_per_code: int, x: np.ndarray,
              opq_iterations: int = 25) -> "FaissCodec":
        index = faiss.index_factory(x.shape[1], FACTORY[kind].format(m=num_codebooks, b=bits_per_code))
        if kind == "rq":
            index.rq.max_beam_size = 8
            index.rq.cp.min_points_per_centroid = 1
        if kind == "opq":
            faiss.downcast_VectorTransform(index.chain.at(0)).niter = opq_iterations
        index.train(np.ascontiguousarray(x, np.float32))
        return cls(index, kind, num_codebooks, bits_per_code)

    def encode(self, x: np.ndarray) -> np.ndarray:
        packed = self.index.sa_encode(np.ascontiguousarray(x, np.float32))
        k, b = self.num_codebooks, self.bits_per_code
        bits = np.unpackbits(packed, axis=1, bitorder="little")[:, :k * b].reshape(len(packed), k, b)
        return (bits.astype(np.int64) << np.arange(b)).sum(-1)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, np.int64)
        k, b = self.num_codebooks, self.bits_per_code
        if codes.ndim != 2 or codes.shape[1] != k or (codes.size and (codes.min() < 0 or codes.max() >= 1 << b)):
            raise ValueError(f"codes must be (n, {k}) in [0, {1 << b})")
        bits = ((codes[:, :, None] >> np.arange(b)) & 1).astype(np.uint8).reshape(len(codes), k * b)
        packed = np.packbits(bits, axis=1, bitorder="little")[:, :self.index.sa_code_size()]
        return _unit(self.index.sa_decode(np.ascontiguousarray(packed)))

    def save(self, index_path: str | Path, shape_path: str | Path) -> None:
        from .artifacts import atomic_write, write_json

        with atomic_write(index_path) as f:
            f.write(faiss.serialize_index(self.index).tobytes())
        write_json(shape_path, {"kind": self.kind, "num_codebooks": self.num_codebooks,
                                "bits_per_code": self.bits_per_code})

    @classmethod
    def load(cls, index_path: str | Path, shape_path: str | Path) -> "FaissCodec":
        import json

        shape = json.loads(Path(shape_path).read_text())
        index = faiss.deserialize_index(np.fromfile(index_path, dtype=np.uint8))
        return cls(index, shape["kind"], shape["num_codebooks"], shape["bits_per_code"])
