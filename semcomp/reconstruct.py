"""Codes -> text: nearest dictionary sentences, optionally refined by an LLM."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .errors import UsageError

if TYPE_CHECKING:
    from .codec import Codec

# The one list of LLM backends: llm.py, decode.py and llm_callers.py import it from here.
LLM_BACKENDS = ("openai", "claude", "gemini")
BACKEND_ENV = "SEMANTIC_RECON_BACKEND"
# What decode.py --backend (and `reconstruct`) accept: "llm" is the config's llm_backend.
DECODE_BACKENDS = ("similarity", "llm", *LLM_BACKENDS)


def choose_backend(name: str | None, llm_backend: str) -> str:
    """`name` (--backend), else env SEMANTIC_RECON_BACKEND, else "similarity"; "llm" means
    `llm_backend` (the config's). Returns "similarity" or one of LLM_BACKENDS."""
    source = "--backend" if name else BACKEND_ENV
    chosen = (name or os.environ.get(BACKEND_ENV) or "similarity").strip().lower()
    if chosen not in DECODE_BACKENDS:
        raise UsageError(f"{source} {chosen!r} is not a decoding backend: use one of {', '.join(DECODE_BACKENDS)}")
    return llm_backend if chosen == "llm" else chosen


def reconstruct(codec: "Codec", codes: np.ndarray, backend: str = "similarity", k: int = 5,
                originals: Sequence[str] | None = None, ids: Sequence[Any] | None = None,
                progress: bool = False) -> list[dict[str, Any]]:
    """One record per code row: id, original, reconstruction, method, score, neighbours.

    `backend`: "similarity", "llm" (the config's llm_backend) or one of LLM_BACKENDS. `score` is
    always the cosine between the reconstruction's SBERT embedding and the decoded embedding, so
    similarity and LLM results are comparable.
    """
    backend = choose_backend(backend or "similarity", codec.cfg.get("llm_backend") or LLM_BACKENDS[0])
    if k < 1:  # 0 or less would leave records without a reconstruction
        raise UsageError(f"k (neighbours kept per record) must be at least 1, got {k}")
    if backend != "similarity":
        from .llm import check_key

        check_key(backend, codec.cfg.get("llm_base_url"))  # fail before any work
    decoded = codec.decode(codes)
    width = k if backend == "similarity" else max(k, codec.cfg["llm_neighbours"])
    nid, nscore = codec.search(decoded, width)
    texts = codec.dictionary[0]
    ids = list(ids) if ids is not None else list(range(len(decoded)))
    records = []
    for i in range(len(decoded)):
        neighbours = [(texts[j], round(float(s), 6)) for j, s in zip(nid[i], nscore[i])]
        records.append({
            "id": ids[i],
            "original": originals[i] if originals is not None else None,
            "reconstruction": neighbours[0][0],
            "method": "similarity",
            "score": neighbours[0][1],
            "neighbours": neighbours,
        })
    if backend != "similarity":
        from .llm import reconstruct_llm

        items = [{"neighbours": r["neighbours"], "target": decoded[i]} for i, r in enumerate(records)]
        out = reconstruct_llm(items, codec.embed, codec.cfg, backend=backend,
                              cache_dir=codec.dir / "llm_cache", progress=progress)
        for rec, res in zip(records, out):
            rec.update({key: res[key] for key in ("reconstruction", "score", "method", "candidates", "fallback_reason")
                        if key in res})
    for rec in records:
        rec["neighbours"] = [list(n) for n in rec["neighbours"][:k]]
    return records
