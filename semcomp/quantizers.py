"""One protocol for every quantiser and one registry of them.

The pipeline, `Codec` and evaluate.py reach quantisers only through `train`, `load` and `FILES`,
so adding one touches this module and its own. Import-light: each kind imports torch or FAISS
only when it is trained or loaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from .config import QUANTIZERS
from .metrics import usage

History = list[dict[str, Any]]
Log = Callable[[dict[str, Any]], None]


class Quantizer(Protocol):
    """K codes of b bits a vector; what the codes file, closed-loop encoding and decoders need."""

    num_codebooks: int
    bits_per_code: int
    input_dim: int

    def encode(self, x: np.ndarray) -> np.ndarray: ...              # (n, d) -> (n, K) int64, least distortion
    def candidates(self, x: np.ndarray, n: int) -> np.ndarray: ...  # (n_rows, n, K), least distortion first
    def decode(self, codes: np.ndarray) -> np.ndarray: ...          # (n, K) -> (n, d) float32, unit norm
    def save(self, *paths: Path) -> None: ...                       # to the kind's FILES, in order


# The files each kind saves and loads, in the order its save/load take them.
FILES: dict[str, tuple[str, str]] = {
    "vqvae": ("vqvae.safetensors", "vqvae.json"),
    "rq": ("quantizer.faiss", "quantizer.json"),
    "opq": ("quantizer.faiss", "quantizer.json"),
    "pq": ("quantizer.faiss", "quantizer.json"),
    "lsq": ("quantizer.faiss", "quantizer.json"),
    "qinco": ("qinco.safetensors", "qinco.json"),
}
KINDS = tuple(FILES)
assert set(KINDS) == set(QUANTIZERS), "semcomp.config.QUANTIZERS and FILES name the same kinds"


Cache = Path | None  # where FAISS quantisers are kept (evaluate.py's baselines): the RQ starts too


def _train_vqvae(x: np.ndarray, cfg: dict[str, Any], log: Log | None, cache: Cache) -> tuple[Quantizer, History]:
    from .vqvae import train_vqvae

    return train_vqvae(x, cfg, log=log, cache_dir=cache)


def _train_qinco(x: np.ndarray, cfg: dict[str, Any], log: Log | None, cache: Cache) -> tuple[Quantizer, History]:
    from .qinco import train_qinco

    return train_qinco(x, cfg, log, cache_dir=cache)


def _train_faiss(kind: str) -> Callable[[np.ndarray, dict[str, Any], Log | None, Cache], tuple[Quantizer, History]]:
    def train(x: np.ndarray, cfg: dict[str, Any], log: Log | None, cache: Cache) -> tuple[Quantizer, History]:
        from .baselines import faiss_codec

        bits = int(cfg["vqvae_num_embeddings"]).bit_length() - 1
        model = faiss_codec(kind, cfg["vqvae_num_codebooks"], bits, x, cfg["seed"], cache,
                            cfg["vqvae_train_beam"], cfg["vqvae_init_steps"])
        # nothing to log per epoch; one row, so every run's history has codebook usage
        return model, [{"epoch": 0, "loss": None, "codebooks": usage(model.encode(x), 1 << bits)}]
    return train


def _load_vqvae(*paths: Path) -> Quantizer:
    from .vqvae import VQVAE

    return VQVAE.load(*paths)


def _load_qinco(*paths: Path) -> Quantizer:
    from .qinco import QINCo

    return QINCo.load(*paths)


def _load_faiss(*paths: Path) -> Quantizer:
    from .baselines import FaissCodec

    return FaissCodec.load(*paths)


_TRAIN = {"vqvae": _train_vqvae, "qinco": _train_qinco, **{k: _train_faiss(k) for k in ("rq", "opq", "pq", "lsq")}}
_LOAD = {"vqvae": _load_vqvae, "qinco": _load_qinco, **{k: _load_faiss for k in ("rq", "opq", "pq", "lsq")}}


def train(kind: str, x: np.ndarray, cfg: dict[str, Any], log: Log | None = None,
          cache_dir: str | Path | None = None) -> tuple[Quantizer, History]:
    """Train the config's quantiser shape (vqvae_num_codebooks x log2 vqvae_num_embeddings bits) on x;
    FAISS quantisers it trains on the way are kept in (and reused from) cache_dir."""
    return _TRAIN[kind](x, cfg, log, Path(cache_dir) if cache_dir else None)


def load(kind: str, folder: str | Path) -> Quantizer:
    return _LOAD[kind](*(Path(folder) / name for name in FILES[kind]))


def save(kind: str, model: Quantizer, folder: str | Path) -> None:
    model.save(*(Path(folder) / name for name in FILES[kind]))
