"""SBERT sentence embeddings: hub or packaged offline weights, with an on-disk cache."""
from __future__ import annotations

import logging
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .cache import EmbeddingCache
from .errors import ModelError
from .util import hub_online
from .weights import PACKAGED_SHA256, packaged_model_dir

log = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Sentences embedded between two cache writes: what a killed run can lose (~10 s of work here).
CACHE_CHUNK = 4096


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


def user_cache() -> Path:
    """Per-user cache of what is derived from installed packages alone (the ONNX export), shared by
    every artifacts folder: $SEMCOMP_CACHE, else $XDG_CACHE_HOME/semcomp, else ~/.cache/semcomp."""
    if os.environ.get("SEMCOMP_CACHE"):
        return Path(os.environ["SEMCOMP_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "semcomp"


def onnx_dir() -> Path:
    """Where the ONNX graphs of the packaged weights live: one folder per weights and exporter
    (torch, onnxruntime), since either can change the graph."""
    from importlib import metadata

    tag = "-".join([PACKAGED_SHA256[:12], *(f"{p}{metadata.version(p)}" for p in ("torch", "onnxruntime"))])
    return user_cache() / "onnx" / tag


_EXPORTS: dict[Path, tuple[Any, Any]] = {}  # graph path -> (export subprocess still writing it, its stderr file)


def start_onnx_export(folder: Path, int8: bool) -> None:
    """Begin exporting the graph in a child process unless it exists or is on its way, so the export
    (~9 s, once per machine) runs while the caller does other work (the pipeline: segmentation).
    In a child: export and quantisation peak at 1.3 GB that this process would keep."""
    import subprocess
    import sys

    path = folder / ("model-int8.onnx" if int8 else "model.onnx")
    if path.exists() or path in _EXPORTS:
        return
    cmd = [sys.executable, "-m", "semcomp.onnx_embed", str(path)] + (["--int8"] if int8 else [])
    # stderr to a file, not a pipe: nobody reads a pipe until the export is waited for, and a full
    # one would stall the child
    err = tempfile.TemporaryFile("w+")
    _EXPORTS[path] = (subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                       cwd=Path(__file__).resolve().parents[1]), err)


@lru_cache(maxsize=2)
def _onnx_encoder(folder: str, int8: bool, again: bool = True) -> Any:
    """ONNX Runtime encoder, exported from the packaged weights on first use (~9 s); a cached graph
    that no longer loads (cut off, edited) is derived data: exported again, once."""
    from .onnx_embed import OnnxEncoder

    path = Path(folder) / ("model-int8.onnx" if int8 else "model.onnx")
    start_onnx_export(Path(folder), int8)
    if path in _EXPORTS:
        proc, err = _EXPORTS.pop(path)
        with err:
            proc.wait()
            err.seek(0)
            last = (err.read().strip().splitlines() or ["no output"])[-1]
        if proc.returncode != 0 or not path.exists():
            raise ModelError(f"ONNX export failed ({last}); use --set embed_backend=torch")
    try:
        return OnnxEncoder(path)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
        if not again:
            raise ModelError(f"the ONNX graph {path} does not load ({type(exc).__name__}); "
                             f"use --set embed_backend=torch") from exc
        log.warning("cached ONNX graph %s does not load (%s): exporting it again", path.name, type(exc).__name__)
        path.unlink(missing_ok=True)
        return _onnx_encoder(folder, int8, again=False)


class Embedder:
    """`encode(list[str]) -> (n, d) float32`, unit norm, through an optional cache."""

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu", cache_dir: str | Path | None = None,
                 batch_size: int = 32, backend: str = "torch"):
        self.model_name, self.device, self.batch_size = model, resolve_device(device), batch_size
        self.backend = backend = resolve_backend(backend, model, device)
        if backend != "torch" and model.split("/")[-1] != DEFAULT_MODEL.split("/")[-1]:
            raise ModelError(f"embed_backend {backend!r} is built from the packaged {DEFAULT_MODEL} only")
        self.onnx_dir = onnx_dir() if backend != "torch" else None
        # int8 embeddings differ slightly from fp32 ones, so each runtime has its own cache
        self.cache = EmbeddingCache(cache_dir, model + ("" if backend == "torch" else f"@{backend}")) \
            if cache_dir else None

    def prepare(self) -> None:
        """Start what the first encode would wait for (the ONNX export), without waiting."""
        if self.onnx_dir is not None:
            start_onnx_export(self.onnx_dir, self.backend == "onnx-int8")

    @property
    def model(self) -> Any:
        if self.backend == "torch":
            return load_sbert(self.model_name, self.device)
        return _onnx_encoder(str(self.onnx_dir), self.backend == "onnx-int8")

    def _encode(self, texts: list[str], show_progress_bar: bool) -> np.ndarray:
        vecs = self.model.encode(texts, batch_size=self.batch_size, show_progress_bar=show_progress_bar,
                                 normalize_embeddings=True)
        return np.asarray(vecs, dtype=np.float32)

    def encode(self, texts: list[str], show_progress_bar: bool = False, cache: bool = True) -> np.ndarray:
        """cache=False: neither read nor write the on-disk cache (a decoder's throwaway candidates)."""
        if not texts:
            return np.zeros((0, 384), np.float32)
        if self.cache is None or not cache:
            return self._encode(texts, show_progress_bar)
        todo = self.cache.missing(texts)
        if todo:
            from tqdm.auto import tqdm

            # Shortest first: each chunk (and each batch in it) pads to similar lengths.
            todo.sort(key=len)
            with tqdm(total=len(todo), unit="sent", desc="embed", disable=not show_progress_bar,
                      smoothing=0.05) as bar:
                for i in range(0, len(todo), CACHE_CHUNK):
                    part = todo[i:i + CACHE_CHUNK]
                    self.cache.add(part, self._encode(part, False))
                    bar.update(len(part))
        return self.cache.get(texts)
