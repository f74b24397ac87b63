"""One protocol for every quantiser and the one registry of them.

The pipeline, `Codec` and evaluate.py reach quantisers only through `train`, `load`, `save` and
`FILES`. Each kind's module (vqvae, qinco, faiss_codec) carries its `FILES`, `train` and `load`,
so adding a kind touches this registry and its own module. Import-light: a kind's module (and
with it torch or FAISS) is imported only when that kind is trained or loaded.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Protocol

import numpy as np

from ..config import QUANTIZERS

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


# kind -> the module that implements it
MODULES = {"vqvae": "vqvae", "qinco": "qinco", "rq": "faiss_codec", "opq": "faiss_codec", "pq": "faiss_codec",
           "lsq": "faiss_codec"}
KINDS = tuple(MODULES)
# The FAISS kinds evaluate.py can train as baselines at a bit budget (--baselines); LSQ, slow to
# train, only on request.
BASELINE_KINDS = ("pq", "opq", "rq", "lsq")
DEFAULT_BASELINES = ("pq", "opq", "rq")
assert set(KINDS) == set(QUANTIZERS), "semcomp.config.QUANTIZERS and MODULES name the same kinds"
# The files each kind saves and loads, in the order its save/load take them (its module's FILES,
# written out here so that listing them imports neither torch nor FAISS).
FILES: dict[str, tuple[str, str]] = {
    "vqvae": ("vqvae.safetensors", "vqvae.json"),
    "qinco": ("qinco.safetensors", "qinco.json"),
    **{k: ("quantizer.faiss", "quantizer.json") for k in BASELINE_KINDS},
}


def module(kind: str) -> ModuleType:
    mod = importlib.import_module(f"{__name__}.{MODULES[kind]}")
    assert mod.FILES == FILES[kind], f"{mod.__name__}.FILES and the registry disagree"
    return mod


def train(kind: str, x: np.ndarray, cfg: dict[str, Any], log: Log | None = None,
          cache_dir: str | Path | None = None) -> tuple[Quantizer, History]:
    """Train the config's quantiser shape (vqvae_num_codebooks x log2 vqvae_num_embeddings bits) on x;
    FAISS quantisers it trains on the way are kept in (and reused from) cache_dir."""
    return module(kind).train(x, {**cfg, "quantizer": kind}, log, Path(cache_dir) if cache_dir else None)


def load(kind: str, folder: str | Path) -> Quantizer:
    return module(kind).load(*(Path(folder) / name for name in FILES[kind]))


def save(kind: str, model: Quantizer, folder: str | Path) -> None:
    model.save(*(Path(folder) / name for name in FILES[kind]))
