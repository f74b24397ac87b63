"""Baselines for evaluate.py: standard quantisers at a given bit budget (FAISS kinds from the quantiser
registry, sign bits, int8), each a pair of encode/decode functions."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import faiss
import numpy as np

from .metrics import unit_rows
from .quantizers.faiss_codec import faiss_codec, split_bits


@dataclass
class Baseline:
    name: str
    bits: int                                   # measured from the trained codec's code size
    encode: Callable[[np.ndarray], np.ndarray]  # (n, d) float32 -> (n, code_bytes) uint8
    decode: Callable[[np.ndarray], np.ndarray]  # codes -> (n, d) float32, unit norm
    below_advice: bool = False                  # trained on fewer points than FAISS advises

    def roundtrip(self, x: np.ndarray) -> np.ndarray:
        return self.decode(self.encode(x))


def faiss_baseline(kind: str, bits: int, train: np.ndarray, seed: int = 0, cache_dir: str | Path | None = None,
                    train_beam: int = 8, dim_steps: int = 10) -> Baseline:
    """PQ, OPQ+PQ, residual (beam 8) or LSQ quantiser with exactly `bits` bits per vector (see faiss_codec)."""
    m, nbits = split_bits(bits, train.shape[1])
    codec = faiss_codec(kind, m, nbits, train, seed, cache_dir, train_beam, dim_steps)
    return Baseline(f"{kind}-{bits}", codec.index.sa_code_size() * 8, codec.encode, codec.decode,
                    codec.below_advice)


def sign_binary(dim: int) -> Baseline:
    """One bit a dimension: the sign."""
    return Baseline(f"binary-{dim}", dim,
                    lambda x: np.packbits(x > 0, axis=1),
                    lambda c: unit_rows(np.unpackbits(c, axis=1, count=dim).astype(np.float32) * 2 - 1))


def int8(train: np.ndarray) -> Baseline:
    """Eight bits a dimension, per-dimension range learnt on the training set (FAISS SQ8)."""
    sq = faiss.ScalarQuantizer(train.shape[1], faiss.ScalarQuantizer.QT_8bit)
    sq.train(np.ascontiguousarray(train, np.float32))
    return Baseline(f"int8-{train.shape[1] * 8}", sq.code_size * 8,
                    lambda x: sq.compute_codes(np.ascontiguousarray(x, np.float32)),
                    lambda c: unit_rows(sq.decode(c)))
