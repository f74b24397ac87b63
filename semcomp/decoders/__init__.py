"""Codes -> text. One module a decoder; this file chooses the backend, once, and builds it.

    similarity.py  decoded embedding -> its nearest dictionary sentences (the fast default)
    fusion.py      new sentences from the neighbours' clauses, no model
    edit.py        one-word edits of the best sentence, no model
    inverter.py    a small model trained to write sentences from decoded embeddings (bench/inverter.py)
    senders.py     one request through an official SDK (openai, anthropic, google-genai)
    local.py       one request to llama.cpp in this process (the `local` backend)
    pick.py        the final pick: a language model reads the best candidates (llm_pick_lm)
    caller.py      retries, response cache and circuit breaker around any sender
    prompts.py     what the model is shown: a few-shot list to continue, or an instruction
    refine.py      the loop: the model proposes, the local embedder judges against the target
    records.py     the reconstructions file decode.py writes and evaluate.py reads
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..config import BACKEND_ENV, DECODE_BACKENDS, LLM_BACKENDS
from ..errors import ModelError, UsageError
from .caller import UNREACHABLE, Caller
from .edit import WordPairs
from .pick import TokenLogProb
from .prompts import build_prompt, parse_candidates
from .records import read_records, write_records
from .refine import Embed, LogProb, Propose, completion_proposer, instruction_proposer, llm_failure, refine, refine_all
from .senders import DEFAULT_MODELS, KEY_ENV, SENDERS, LLMError, check_key
from .similarity import similarity_records

__all__ = ["BACKEND_ENV", "DECODE_BACKENDS", "DEFAULT_MODELS", "KEY_ENV", "LLMError", "LLM_BACKENDS", "UNREACHABLE", "WordPairs",
           "build_prompt", "check_key", "choose_backend", "concurrency", "llm_failure", "load_inverter", "make_caller",
           "make_proposer", "parse_candidates", "read_records", "reconstruct_llm", "refine", "refine_all", "similarity_records", "targets",
           "text_decoder", "write_records"]

log = logging.getLogger(__name__)
HOSTED_TIMEOUT_S, SERVER_TIMEOUT_S = 30.0, 120.0


def choose_backend(name: str | None, llm_backend: str) -> str:
    """`name` (--backend), else env SEMANTIC_RECON_BACKEND, else "similarity"; "llm" means
    `llm_backend` (the config's). Returns "similarity", "fusion" or one of LLM_BACKENDS."""
    source = "--backend" if name else BACKEND_ENV
    chosen = (name or os.environ.get(BACKEND_ENV) or "similarity").strip().lower()
    if chosen not in DECODE_BACKENDS:
        raise UsageError(f"{source} {chosen!r} is not a decoding backend: use one of {', '.join(DECODE_BACKENDS)}")
    return llm_backend if chosen == "llm" else chosen


def _self_hosted(backend: str, cfg: dict[str, Any]) -> bool:
    """A model on this machine or the user's own server, not a hosted API: slow, one call at a time."""
    return backend == "local" or bool(cfg["llm_base_url"])


def concurrency(cfg: dict[str, Any], backend: str) -> int:
    """Calls in flight: one for an in-process model or the user's own server (llama.cpp and Ollama
    answer one at a time by default; four in flight made every call time out, measured)."""
    if backend == "local":
        return 1
    return cfg["llm_concurrency"] or (1 if _self_hosted(backend, cfg) else 4)


def make_caller(cfg: dict[str, Any], backend: str, cache_dir: str | Path | None, *,
                base_delay: float = 0.5) -> Caller:
    """The backend's sender behind our retries, cache and breaker; the key is checked here, once."""
    if backend not in LLM_BACKENDS:
        raise UsageError(f"unknown LLM backend {backend!r}: use one of {', '.join(LLM_BACKENDS)}")
    if backend == "local":
        from .local import LocalLM

        lm = LocalLM(cfg["llm_model_path"], cfg["llm_threads"])
        # Nothing to retry in-process: a failure is a bug or a bad model file, said once.
        return Caller(lm.complete, backend=backend, endpoint=lm.endpoint, model=lm.path.name,
                      cache_dir=cache_dir, retries=0, base_delay=base_delay)
    check_key(backend, cfg["llm_base_url"])
    model = cfg["llm_model"] or DEFAULT_MODELS[backend]
    timeout = cfg["llm_timeout"] or (SERVER_TIMEOUT_S if _self_hosted(backend, cfg) else HOSTED_TIMEOUT_S)
    send, endpoint = SENDERS[backend](cfg["llm_base_url"], model, timeout)
    return Caller(send, backend=backend, endpoint=endpoint, model=model, cache_dir=cache_dir,
                  retries=cfg["llm_max_retries"], base_delay=base_delay)


def make_proposer(cfg: dict[str, Any], backend: str, call: Caller) -> Propose:
    form = cfg["llm_prompt"]
    if form == "auto":  # the few-shot list for small models on the user's machine or server
        form = "completion" if backend == "local" or (backend == "openai" and cfg["llm_base_url"]) else "instruction"
    if form == "completion":
        if backend not in ("local", "openai"):
            raise UsageError(f"llm_prompt 'completion' needs a completion endpoint (local or openai), not {backend}")
        return completion_proposer(call, cfg["llm_candidates"], cfg["llm_max_tokens"], cfg["llm_temperature"])
    if backend == "local":
        raise UsageError("llm_prompt 'instruction' is for hosted models: the local backend continues a list")
    return instruction_proposer(call, cfg["llm_candidates"])


def reader(cfg: dict[str, Any], backend: str) -> LogProb | None:
    """The final pick's language model (pick.py), or None when llm_pick_lm is 0. `fusion` needs
    no install: without the llm extra it picks by the judge alone, and says so once."""
    if not cfg["llm_pick_lm"]:
        return None
    try:
        return TokenLogProb(cfg["llm_model_path"], cfg["llm_threads"])
    except ModelError as exc:
        if backend != "fusion" or cfg["llm_model_path"]:
            raise
        log.warning("fusion picks by the embedder alone (llm_pick_lm): %s", exc)
        return None


def text_decoder(cfg: dict[str, Any], backend: str, cache_dir: str | Path | None, *,
                 base_delay: float = 0.5) -> Callable[..., list[dict[str, Any]]]:
    """`run(items, embed, progress=False, pairs=None, exact=None)` for the fusion decoder or an LLM
    backend (see `refine_all`; `pairs`: the dictionary's word pairs, which edits must keep to;
    `exact`: the embedder an int8 `embed` approximates, for llm_rescore), built now: the key is
    checked and a local model loaded before any work."""
    edit = {"edit_steps": cfg["llm_edit_steps"], "edit_words": cfg["llm_edit_words"], "edit_beam": cfg["llm_edit_beam"],
            "edit_neighbours": cfg["llm_edit_neighbours"], "edit_lines": cfg["llm_edit_lines"], "fluency": cfg["llm_fluency"],
            "pick": reader(cfg, backend), "pick_weight": cfg["llm_pick_lm"], "pick_top": cfg["llm_pick_top"],
            "rescore_top": cfg["llm_rescore"]}
    if backend == "fusion":
        def fuse(items: Sequence[dict[str, Any]], embed: Embed, progress: bool = False,
                 pairs: WordPairs | None = None, exact: Embed | None = None) -> list[dict[str, Any]]:
            return refine_all(items, embed, lambda *a: [], rounds=0, neighbours=cfg["llm_neighbours"],
                              label="fusion", fuse=True, pairs=pairs, progress=progress, exact=exact, **edit)

        return fuse
    call = make_caller(cfg, backend, cache_dir, base_delay=base_delay)
    propose = make_proposer(cfg, backend, call)

    def run(items: Sequence[dict[str, Any]], embed: Embed, progress: bool = False,
            pairs: WordPairs | None = None, exact: Embed | None = None) -> list[dict[str, Any]]:
        return refine_all(items, embed, propose, rounds=cfg["llm_rounds"], neighbours=cfg["llm_neighbours"],
                          label=f"llm:{backend}", fuse=cfg["llm_fusion"], pairs=pairs, exact=exact, breaker=call.breaker,
                          concurrency=concurrency(cfg, backend), time_budget=cfg["llm_time_budget"],
                          progress=progress, **edit)

    return run


def reconstruct_llm(items: Sequence[dict[str, Any]], embed: Embed, cfg: dict[str, Any], backend: str | None = None,
                    cache_dir: str | Path | None = None, progress: bool = False, *,
                    pairs: WordPairs | None = None, base_delay: float = 0.5) -> list[dict[str, Any]]:
    """LLM reconstruction of each item {"neighbours": [(text, score), ...], "target": (384,)}.
    Backend: the argument, else env SEMANTIC_RECON_BACKEND, else the config's llm_backend.
    `pairs` (Codec.word_pairs): the word triples edits must keep to; without them every edit is
    scored, many times the embedder calls."""
    backend = choose_backend(backend or os.environ.get(BACKEND_ENV) or "llm", cfg["llm_backend"])
    if backend not in LLM_BACKENDS:
        raise UsageError(f"reconstruct_llm needs an LLM backend, not {backend}")
    return text_decoder(cfg, backend, cache_dir, base_delay=base_delay)(items, embed, progress, pairs)


def load_inverter(folder: str | Path, codec: str | None = None) -> Any:
    """The inverter in `folder`, trained for the build whose fingerprint is `codec` (None: any), or a
    one-line error that says how to train one."""
    from .inverter import FILES, Inverter

    fix = ("train one with `python bench/inverter.py data` then `python bench/inverter.py train`, "
           "or set inverter_samples=0 and inverter_beam=0")
    missing = [f for f in FILES if not (Path(folder) / f).is_file()]
    if missing:
        raise ModelError(f"no inverter in {folder} ({', '.join(missing)} missing): {fix}")
    try:
        model = Inverter.load(folder)
    except Exception as exc:  # noqa: BLE001 - a cut-off or edited file: safetensors, json, tokenizers each raise their own
        raise ModelError(f"the inverter in {folder} cannot be read ({type(exc).__name__}: {str(exc)[:120]}): {fix}") from exc
    if codec is not None and model.shape.get("codec") != codec:
        # It learnt this build's decoded embeddings: another build's mean something else to it.
        raise ModelError(f"the inverter in {folder} was trained for another build "
                         f"({model.shape.get('codec')}, this one is {codec}): {fix}")
    return model


def targets(decoded: np.ndarray, records: Sequence[dict[str, Any]], inverter: Any = None, samples: int = 0,
            temperature: float = 0.8, chunk: int = 32, progress: bool = False, *, rounds: int = 1,
            step: float = 0.5, judge: Embed | None = None, beam: int = 0) -> list[dict[str, Any]]:
    """refine_all's items from similarity records and their decoded embeddings; with an `inverter`,
    each also gets its `samples` sentences a round for `rounds` rounds, each round after the first
    aimed by `step` past the best so far by `judge` (inverter.write), then with `beam` the best
    sentences of a search token by token that `judge` guides (inverter.guide), and its share of
    their time. Written `chunk` items a batch: one batch of 32 x 8 cost little more than one item's 8,
    measured."""
    items = [{"neighbours": r["neighbours"], "target": decoded[i]} for i, r in enumerate(records)]
    if inverter is None or not (samples or beam):
        return items
    if ((rounds > 1 and samples) or beam) and judge is None:
        raise UsageError("inverter rounds after the first, and its guided search, need the judge")
    from .inverter import guide, write

    starts = range(0, len(items), chunk)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="inverter", unit="batch")
    for start in starts:
        t0 = time.perf_counter()
        part = items[start:start + chunk]
        target = decoded[start:start + chunk]
        written = write(inverter, target, samples, temperature, rounds, step, judge, seed=start) if samples \
            else [[] for _ in part]
        if beam:
            written = [w + g for w, g in zip(written, guide(inverter, target, judge, beam))]
        for item, sentences in zip(part, written):
            item["proposals"], item["seconds"] = sentences, (time.perf_counter() - t0) / len(part)
    return items
