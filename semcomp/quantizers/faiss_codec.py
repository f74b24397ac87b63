"""FAISS quantisers (rq, opq = OPQ+PQ, pq, lsq = LSQ++) behind the quantiser protocol: selectable as the
codec's `quantizer` at the config's shape, and evaluate.py's baselines at a bit budget."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import faiss
import numpy as np

from ..artifacts import atomic_write, write_json
from ..faiss_util import faiss_quiet, faiss_threads_for, no_polysemous
from ..metrics import unit_rows, usage

KINDS = ("rq", "opq", "pq", "lsq")
FILES = ("quantizer.faiss", "quantizer.json")


def split_bits(bits: int, dim: int) -> tuple[int, int]:
    """bits = M * nbits with dim % M == 0, preferring 8-bit codes (FAISS's fastest)."""
    for nbits in (8, 9, 10, 11, 12, 7, 6, 5, 4):
        if bits % nbits == 0 and dim % (bits // nbits) == 0:
            return bits // nbits, nbits
    raise ValueError(f"cannot split {bits} bits into PQ sub-quantisers of a {dim}-d vector")


def faiss_codec(kind: str, num_codebooks: int, bits_per_code: int, train: np.ndarray, seed: int = 0,
                cache_dir: str | Path | None = None, train_beam: int = 8, dim_steps: int = 10) -> "FaissCodec":
    """A PQ, OPQ+PQ, residual or LSQ codec trained on every row of `train`; with `cache_dir`, trained
    once per (kind, shape, seed, settings, training vectors) and reloaded after.

    RQ trains greedily, codebook by codebook, so the first m codebooks of a longer RQ with the same
    code size, data and settings are exactly the m-codebook RQ (tested): a cached longer one is cut
    instead of training again: evaluate.py trains RQ-128 (16 x 8) and cuts RQ-64 (8 x 8) from it.
    The codecs' RQ starts are trained here too, so a codec and a baseline with equal settings share one."""
    path, longer = None, []
    if cache_dir is not None:
        h = hashlib.sha256(np.ascontiguousarray(train, np.float32).tobytes())
        if kind == "rq":  # the key leaves the number of codebooks out: a longer RQ serves shorter ones
            h.update(f"rq-x{bits_per_code}-{seed}-{train_beam}-{dim_steps}-v3".encode())
            path = Path(cache_dir) / f"rq-{num_codebooks}x{bits_per_code}-{h.hexdigest()[:16]}.faiss"
            longer = [p for p in sorted(path.parent.glob(f"rq-*x{bits_per_code}-{h.hexdigest()[:16]}.faiss"))
                      if int(p.name.split("-")[1].split("x")[0]) > num_codebooks]
        else:  # unchanged since v2, so quantisers cached then (LSQ: 25 min at 285k) still load
            h.update(f"{kind}-{num_codebooks}x{bits_per_code}-{seed}-{train_beam}-v2".encode())
            path = Path(cache_dir) / f"{kind}-{num_codebooks * bits_per_code}-{h.hexdigest()[:16]}.faiss"
    if path is not None and path.exists():
        codec = FaissCodec(faiss.deserialize_index(np.fromfile(path, dtype=np.uint8)), kind,
                           num_codebooks, bits_per_code)
    elif path is not None and longer:
        full = faiss.deserialize_index(np.fromfile(longer[0], dtype=np.uint8))
        codec = FaissCodec(truncated_rq(full, num_codebooks), kind, num_codebooks, bits_per_code)
    else:
        codec = FaissCodec.train(kind, num_codebooks, bits_per_code, train, seed=seed, train_beam=train_beam,
                                 dim_steps=dim_steps)
        if path is not None:
            with atomic_write(path) as f:
                f.write(faiss.serialize_index(codec.index).tobytes())
    codec.below_advice = below_faiss_advice(kind, len(train), bits_per_code)
    return codec


def below_faiss_advice(kind: str, n: int, bits_per_code: int) -> bool:
    """Whether k-means learns 2^bits centroids from fewer points than FAISS advises (39 a centroid).
    Our k-means runs allow it (min_points_per_centroid = 1, so FAISS prints nothing), and the
    report says it once. RQ counts its first codebook, trained on the n vectors themselves; LSQ
    runs no k-means of its own."""
    return kind != "lsq" and n < faiss.ClusteringParameters().min_points_per_centroid << bits_per_code


def truncated_rq(index: faiss.IndexResidualQuantizer, num_codebooks: int) -> faiss.IndexResidualQuantizer:
    """The residual quantiser made of the first `num_codebooks` codebooks of a trained one."""
    rq = index.rq
    nbits = rq.nbits.at(0)
    out = faiss.index_factory(index.d, f"RQ{num_codebooks}x{nbits}")
    cb = faiss.vector_to_array(rq.codebooks)[: num_codebooks * (1 << nbits) * index.d]
    faiss.copy_array_to_vector(np.ascontiguousarray(cb), out.rq.codebooks)
    out.rq.is_trained = out.is_trained = True
    out.rq.max_beam_size = rq.max_beam_size
    return out


FACTORY = {"pq": "PQ{m}x{b}", "opq": "OPQ{m},PQ{m}x{b}", "rq": "RQ{m}x{b}", "lsq": "LSQ{m}x{b}"}


def _clustering_params(index: faiss.Index) -> list:
    base = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else index
    if isinstance(base, faiss.IndexPQ):
        return [base.pq.cp]
    if isinstance(base, faiss.IndexResidualQuantizer):
        return [base.rq.cp]
    return []  # LSQ runs its own k-means-free training


class FaissCodec:
    """A FAISS quantiser behind the VQVAE interface, selectable with `quantizer` in the config.

    Codes are the quantiser's own K indices of b bits (FAISS packs them least significant bit
    first; we unpack them so the codes file and `Codec.encode` look the same for every quantiser).
    """

    def __init__(self, index: faiss.Index, kind: str, num_codebooks: int, bits_per_code: int):
        self.index, self.kind = index, kind
        self.num_codebooks, self.bits_per_code, self.input_dim = num_codebooks, bits_per_code, index.d
        self.below_advice = False  # set by faiss_codec, which knows the training size

    @classmethod
    def train(cls, kind: str, num_codebooks: int, bits_per_code: int, x: np.ndarray,
              opq_iterations: int = 25, seed: int = 0, train_beam: int = 8, dim_steps: int = 10) -> "FaissCodec":
        index = faiss.index_factory(x.shape[1], FACTORY[kind].format(m=num_codebooks, b=bits_per_code))
        if kind == "rq":  # beam 8: FAISS's strongest RQ; training with it costs n x beam x d floats
            index.rq.max_beam_size = train_beam
            index.rq.max_mem_distances = 1 << 28  # its n x N distance table, in slices of 256 MB
            # progressive-dimension k-means steps: FAISS's default 10 for the baselines; the codecs'
            # RQ starts use vqvae_init_steps (5: half the time, 0.001-0.002 lower cosine as a plain RQ)
            index.rq.cp.progressive_dim_steps = dim_steps
            if len(x) < 2 * x.shape[1]:  # progressive-dimension k-means needs more points than dimensions
                index.rq.train_type = faiss.ResidualQuantizer.Train_default
        if kind == "opq":
            # FAISS's default of 50 rotation updates costs minutes on 2 cores for ~0.002 cosine
            faiss.downcast_VectorTransform(index.chain.at(0)).niter = opq_iterations
        no_polysemous(index)  # index_factory turns it on for 8-bit PQ; nothing here uses it
        for cp in _clustering_params(index):
            cp.seed = seed
            cp.min_points_per_centroid = 1        # small training sets are fine; no warning per call
            cp.max_points_per_centroid = 1 << 20  # and large ones are used whole, not sampled
        with faiss_quiet(), faiss_threads_for(len(x)):
            index.train(np.ascontiguousarray(x, np.float32))
        if kind == "rq":
            index.rq.max_beam_size = 8  # encoding
        return cls(index, kind, num_codebooks, bits_per_code)

    def codebooks(self) -> np.ndarray:
        """A residual quantiser's codebooks, (K, 2^b, d)."""
        k, b = self.num_codebooks, self.bits_per_code
        return faiss.vector_to_array(self.index.rq.codebooks).reshape(k, 1 << b, self.input_dim)

    def encode(self, x: np.ndarray) -> np.ndarray:
        packed = self.index.sa_encode(np.ascontiguousarray(x, np.float32))
        k, b = self.num_codebooks, self.bits_per_code
        bits = np.unpackbits(packed, axis=1, bitorder="little")[:, :k * b].reshape(len(packed), k, b)
        return (bits.astype(np.int64) << np.arange(b)).sum(-1)

    def candidates(self, x: np.ndarray, n: int) -> np.ndarray:
        """The n lowest-distortion codes of each row, (rows, n, K), best first: a beam search over
        the K codebooks (RQ: FAISS's beam search, wider; PQ, OPQ, LSQ-free: sub-quantiser
        distances add up independently, so a beam of width n is exact)."""
        x = np.ascontiguousarray(x, np.float32)
        if n <= 1 or self.kind == "lsq":  # LSQ's encoder is an ICM search with no ranked list
            return self.encode(x)[:, None]
        k, size = self.num_codebooks, 1 << self.bits_per_code
        if self.kind == "rq":  # FAISS's own beam search, widened to n, keeps its n best (sorted)
            rq, beam = self.index.rq, max(8, n)
            codes = np.empty((len(x), beam, k), np.int32)
            rq.refine_beam(len(x), 1, faiss.swig_ptr(x), beam, faiss.swig_ptr(codes))
            return codes[:, :n].astype(np.int64)
        if self.kind == "opq":
            x = faiss.downcast_VectorTransform(self.index.chain.at(0)).apply(x)
            pq = faiss.downcast_index(self.index.index).pq
        else:
            pq = self.index.pq
        cents = faiss.vector_to_array(pq.centroids).reshape(k, size, -1)
        parts = x.reshape(len(x), k, -1)
        cost = np.zeros((len(x), 1), np.float32)
        codes = np.zeros((len(x), 1, 0), np.int64)
        for m in range(k):  # extend each kept prefix by every entry of sub-quantiser m, keep the best n
            d = ((parts[:, m, None, :] - cents[m][None]) ** 2).sum(-1)            # (rows, size)
            cand = (cost[:, :, None] + d[:, None, :]).reshape(len(x), -1)
            top = np.argsort(cand, axis=1, kind="stable")[:, :n]
            cost = np.take_along_axis(cand, top, 1)
            codes = np.concatenate([np.take_along_axis(codes, (top // size)[:, :, None], 1), (top % size)[:, :, None]], 2)
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, np.int64)
        k, b = self.num_codebooks, self.bits_per_code
        if codes.ndim != 2 or codes.shape[1] != k or (codes.size and (codes.min() < 0 or codes.max() >= 1 << b)):
            raise ValueError(f"codes must be (n, {k}) in [0, {1 << b})")
        bits = ((codes[:, :, None] >> np.arange(b)) & 1).astype(np.uint8).reshape(len(codes), k * b)
        packed = np.packbits(bits, axis=1, bitorder="little")[:, :self.index.sa_code_size()]
        return unit_rows(self.index.sa_decode(np.ascontiguousarray(packed)))

    def save(self, index_path: str | Path, shape_path: str | Path) -> None:
        with atomic_write(index_path) as f:
            f.write(faiss.serialize_index(self.index).tobytes())
        write_json(shape_path, {"kind": self.kind, "num_codebooks": self.num_codebooks,
                                "bits_per_code": self.bits_per_code})

    @classmethod
    def load(cls, index_path: str | Path, shape_path: str | Path) -> "FaissCodec":
        shape = json.loads(Path(shape_path).read_text())
        index = faiss.deserialize_index(np.fromfile(index_path, dtype=np.uint8))
        return cls(index, shape["kind"], shape["num_codebooks"], shape["bits_per_code"])


def train(x: np.ndarray, cfg: dict[str, Any], log: Callable[[dict[str, Any]], None] | None = None,
          cache_dir: str | Path | None = None) -> tuple[FaissCodec, list[dict[str, Any]]]:
    """The config's quantiser kind at its shape (vqvae_num_codebooks x log2 vqvae_num_embeddings bits)."""
    bits = int(cfg["vqvae_num_embeddings"]).bit_length() - 1
    model = faiss_codec(cfg["quantizer"], cfg["vqvae_num_codebooks"], bits, x, cfg["seed"], cache_dir,
                        cfg["vqvae_train_beam"], cfg["vqvae_init_steps"])
    # nothing to log per epoch; one row, so every run's history has codebook usage
    return model, [{"epoch": 0, "loss": None, "codebooks": usage(model.encode(x), 1 << bits)}]


load = FaissCodec.load
