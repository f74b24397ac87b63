"""Decoded embedding -> text with an LLM, guided by the local embedding model.

The LLM never sees a vector. It sees the dictionary sentences nearest to the decoded embedding,
with their cosine similarities, and proposes sentences whose meaning they share. Each candidate is
embedded locally and scored by cosine to the decoded embedding; the next round shows the model its
own scored guesses (the vec2text idea), and the best-scored sentence overall wins. The best
neighbour is always a candidate, so the result never scores below plain nearest-neighbour decoding.

Calls go through the official SDKs (openai, anthropic, google-genai) with the SDKs' own retries
off: timeouts, retries with backoff, the response cache, the circuit breaker and the concurrency
limit are ours, so their behaviour is the same for every backend and testable against a local
fake server.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .artifacts import write_json
from .errors import UserError
from .reconstruct import BACKEND_ENV, LLM_BACKENDS

log = logging.getLogger(__name__)

BACKENDS = LLM_BACKENDS  # the old name, kept for callers
KEY_ENV = {"openai": "OPENAI_API_KEY", "claude": "ANTHROPIC_API_KEY", "gemini": "GOOGLE_API_KEY"}
# Documented defaults; `llm_model` in the config overrides them. Small, fast current models (none
# on the installed SDKs' deprecation lists) for a short-text task; we send no temperature or
# token-limit quirks, so reasoning models work too.
DEFAULT_MODELS: dict[str, str] = {
    "openai": "gpt-5.4-mini",
    "claude": "claude-sonnet-4-6",
    "gemini": "gemini-2.5-flash",
}
MAX_OUTPUT_TOKENS = 1024  # Anthropic requires a limit; a handful of sentences fits easily.
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 60.0
# Consecutive connection failures (all workers together) after which a run stops calling: an
# unreachable server would otherwise cost every item its retries (about an hour for 1,000 codes).
BREAKER_LIMIT = 3
UNREACHABLE = "LLM server unreachable"  # starts the fallback_reason of every item the breaker cut off

Embed = Callable[[list[str]], np.ndarray]
Call = Callable[[str], str]


class LLMError(UserError, RuntimeError):
    """An LLM backend cannot be used or a call failed for good; the message never holds a key."""

    exit_code = 2  # a missing key or an unknown backend: input the user fixes


# ---------------------------------------------------------------- backend and keys

def resolve_backend(backend: str | None, default: str = "openai") -> str:
    """The argument, else env SEMANTIC_RECON_BACKEND, else `default` (the config's llm_backend)."""
    name = (backend or os.environ.get(BACKEND_ENV) or default).strip().lower()
    if name not in LLM_BACKENDS:
        raise LLMError(f"unknown LLM backend {name!r}: use one of {', '.join(LLM_BACKENDS)}")
    return name


def check_key(backend: str, base_url: str | None = None) -> None:
    """Fail early, in one line, when the backend's key is missing (a local server may need none)."""
    backend = resolve_backend(backend)
    env = KEY_ENV[backend]
    if os.environ.get(env) or (backend == "openai" and base_url):
        return
    raise LLMError(f"{env} is not set: export {env}=... to use the {backend} LLM backend")


def _scrub(text: str) -> str:
    """Remove every API key we know of from text bound for logs, exceptions and records."""
    for env in KEY_ENV.values():
        key = os.environ.get(env)
        if key and len(key) >= 4:
            text = text.replace(key, "***")
    return text


def _describe(exc: BaseException) -> str:
    return _scrub(f"{type(exc).__name__}: {exc}")[:300]


# ---------------------------------------------------------------- SDK calls
# Each sender factory returns (send, endpoint): the base URL the SDK really calls (an argument,
# the SDK's environment variable, or its default), which the response cache key holds.

def _send_openai(base_url: str | None, model: str, timeout: float) -> tuple[Call, str]:
    import openai

    # A local OpenAI-compatible server (Ollama, vLLM, llama.cpp) may ignore keys; the SDK wants one.
    key = os.environ.get("OPENAI_API_KEY") or "not-needed"
    client = openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)

    def send(prompt: str) -> str:
        # No temperature/max_tokens: reasoning models reject non-default values, and small servers
        # differ on the token-limit field name.
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
        return r.choices[0].message.content or ""

    return send, str(client.base_url)


def _send_claude(base_url: str | None, model: str, timeout: float) -> tuple[Call, str]:
    import anthropic

    client = anthropic.Anthropic(api_key=os.environ["ANTHROPIC_API_KEY"], base_url=base_url,
                                 timeout=timeout, max_retries=0)

    def send(prompt: str) -> str:
        r = client.messages.create(model=model, max_tokens=MAX_OUTPUT_TOKENS,
                                   messages=[{"role": "user", "content": prompt}])
        return "".join(getattr(b, "text", "") for b in r.content)

    return send, str(client.base_url)


def _send_gemini(base_url: str | None, model: str, timeout: float) -> tuple[Call, str]:
    from google import genai
    from google.genai import types

    # HttpOptions.timeout is in milliseconds; retry_options=None means the SDK never retries.
    opts = types.HttpOptions(base_url=base_url, timeout=max(1, int(timeout * 1000)))
    client = genai.Client(api_key=os.environ["GOOGLE_API_KEY"], vertexai=False, http_options=opts)

    def send(prompt: str) -> str:
        return client.models.generate_content(model=model, contents=prompt).text or ""

    # google-genai has no public base_url attribute; this is the order it reads them in.
    return send, base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or "default"


_SENDERS = {"openai": _send_openai, "claude": _send_claude, "gemini": _send_gemini}


def _status(exc: BaseException) -> int | None:
    """HTTP status of an SDK error: openai/anthropic use .status_code, google-genai uses .code."""
    for attr in ("status_code", "code"):
        v = getattr(exc, attr, None)
        if isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599:
            return v
    return None


def _transient(exc: BaseException) -> bool:
    """Worth retrying: 408/429/5xx, timeouts and connection failures; other 4xx are final."""
    status = _status(exc)
    if status is not None:
        return status in (408, 429) or status >= 500
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    # SDK-specific transport errors (timeouts are subclasses of these), imported lazily so a
    # missing optional SDK does not break the others.
    kinds: list[type] = []
    for mod, names in (("openai", ("APIConnectionError",)), ("anthropic", ("APIConnectionError",)),
                       ("httpx2", ("TransportError",)), ("httpx", ("TransportError",))):
        try:
            m = __import__(mod)
        except ImportError:
            continue
        kinds += [getattr(m, n) for n in names if hasattr(m, n)]
    return isinstance(exc, tuple(kinds))


def _unreachable(exc: BaseException) -> bool:
    """No connection could be made (refused, DNS, connect timeout), as opposed to an answer, even
    an error status, or a slow one. The SDKs wrap the transport error, so look down the chain."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        # By name: httpx and its fork httpx2 (which the SDKs use here) both have these.
        if isinstance(seen, ConnectionError) or type(seen).__name__ in ("ConnectError", "ConnectTimeout"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _retry_after(exc: BaseException) -> float | None:
    """Seconds from a Retry-After header (seconds form), when the server sent one."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    try:
        return min(float(headers.get("retry-after")), MAX_RETRY_AFTER_S) if headers else None
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------- cache and caller

def _cache_path(cache_dir: Path, backend: str, endpoint: str, model: str, prompt: str) -> Path:
    # Everything that shapes the answer: the same prompt to another server is another answer.
    shape = {"backend": backend, "endpoint": endpoint, "model": model, "max_output_tokens": MAX_OUTPUT_TOKENS,
             "prompt": prompt}
    return cache_dir / f"{hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()}.json"


class Breaker:
    """Stops calling a server that cannot be reached: `limit` connection failures in a row (any
    worker) open it for the rest of the run; any answer from the server resets the count."""

    def __init__(self, what: str, limit: int = BREAKER_LIMIT):
        self.what, self.limit, self.failures = what, limit, 0
        self.reason: str | None = None  # set when open
        self._lock = threading.Lock()

    def record(self, reached: bool, error: str = "") -> None:
        with self._lock:
            self.failures = 0 if reached else self.failures + 1
            if self.failures >= self.limit and self.reason is None:
                self.reason = (f"{UNREACHABLE}: {self.what} failed to connect {self.failures} times in a row "
                               f"({error}); no more calls this run")
                log.warning("%s; the remaining items fall back to similarity decoding", self.reason)

    def check(self) -> None:
        if self.reason is not None:
            raise LLMError(self.reason)


class Caller:
    """prompt -> response text, with our timeout, retries (exponential backoff + jitter), cache
    and circuit breaker (`.breaker`). Raises LLMError (key-free message) when a call fails for good.

    `base_delay` is the first backoff in seconds (doubles per retry); tests pass a tiny one.
    """

    def __init__(self, cfg: dict[str, Any], backend: str, cache_dir: str | Path | None, *,
                 base_delay: float = 0.5):
        self.backend = resolve_backend(backend)
        base_url = cfg.get("llm_base_url")
        check_key(self.backend, base_url)
        self.model = cfg.get("llm_model") or DEFAULT_MODELS[self.backend]
        self.retries = int(cfg.get("llm_max_retries", 4))
        self.base_delay = base_delay
        self.send, self.endpoint = _SENDERS[self.backend](base_url, self.model, float(cfg.get("llm_timeout", 30.0)))
        self.cache = Path(cache_dir) if cache_dir is not None else None
        self.breaker = Breaker(f"{self.backend} at {_scrub(self.endpoint)}")

    def __call__(self, prompt: str) -> str:
        backend = self.backend
        path = _cache_path(self.cache, backend, self.endpoint, self.model, prompt) if self.cache else None
        if path and path.exists():
            try:
                return json.loads(path.read_text(encoding="utf-8"))["response"]
            except (OSError, ValueError, KeyError):
                log.warning("ignoring unreadable cache file %s", path.name)
        for attempt in range(self.retries + 1):
            self.breaker.check()
            try:
                text = self.send(prompt)
            except Exception as exc:  # noqa: BLE001 - classified below, re-raised as LLMError
                self.breaker.record(not _unreachable(exc), _describe(exc))
                if not _transient(exc):
                    raise LLMError(f"{backend} call failed: {_describe(exc)}") from None
                self.breaker.check()  # just opened: no backoff before giving up
                if attempt == self.retries:
                    raise LLMError(f"{backend} call failed after {self.retries + 1} attempts: "
                                   f"{_describe(exc)}") from None
                delay = min(self.base_delay * 2 ** attempt, MAX_BACKOFF_S)
                delay += random.uniform(0, delay)  # jitter: concurrent workers do not retry in step
                delay = max(delay, _retry_after(exc) or 0.0)
                log.info("%s call failed (%s); retry %d/%d in %.2fs", backend, _describe(exc),
                         attempt + 1, self.retries, delay)
                time.sleep(delay)
                continue
            self.breaker.record(True)
            break
        if path:
            write_json(path, {"backend": backend, "model": self.model, "prompt": prompt, "response": text})
        return text


def make_caller(cfg: dict[str, Any], backend: str, cache_dir: str | Path | None, *,
                base_delay: float = 0.5) -> Caller:
    """A `Caller` (kept as a function for existing callers)."""
    return Caller(cfg, backend, cache_dir, base_delay=base_delay)


def llm_failure(records: Sequence[dict[str, Any]]) -> str | None:
    """Why the LLM part of a run failed, or None: the server proved unreachable, or no item got an
    LLM answer at all. Items that fell back one by one (an unparseable answer) are not a failure."""
    reasons = [r.get("fallback_reason") for r in records]
    cut = next((x for x in reasons if x and x.startswith(UNREACHABLE)), None)
    if cut:
        return cut
    if reasons and all(reasons):
        return f"no item got an LLM answer (first: {reasons[0]})"
    return None


# ---------------------------------------------------------------- prompt and parsing

def build_prompt(neighbours: Sequence[tuple[str, float]], num_candidates: int,
                 previous: Sequence[tuple[str, float]] = ()) -> str:
    """Neighbour sentences with their similarity to the hidden sentence; previous scored guesses."""
    lines = [
        "A hidden sentence was compressed to a meaning vector. Below are reference sentences with "
        "their cosine similarity to the hidden sentence's meaning (1.0 = same meaning, about 0.2 "
        "or less = unrelated).",
        "",
        "Reference sentences (similarity: sentence):",
        *(f"{s:.3f}: {t}" for t, s in neighbours),
    ]
    if previous:
        lines += [
            "",
            "Your earlier guesses, scored the same way (higher is closer):",
            *(f"{s:.3f}: {t}" for t, s in previous),
            "",
            "Keep what raised the score, change what did not, and aim higher than the best guess.",
        ]
    lines += [
        "",
        f"Write {num_candidates} different candidate sentences for the hidden sentence: each one "
        "sentence, sharing the meaning the references have in common and weighting the more "
        "similar ones more. Match their style (topic words, names, numbers).",
        f"Reply with only a JSON array of {num_candidates} strings.",
    ]
    return "\n".join(lines)


_BULLET = re.compile(r"^\s*(?:\d+[.):]|[-*\u2022])\s+(.+?)\s*$")


def parse_candidates(text: str, limit: int = 20) -> list[str]:
    """A JSON array of strings anywhere in text (code fences, preambles), else numbered/bulleted lines."""
    found: list[str] = []
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\[", text):
        try:
            value, _ = decoder.raw_decode(text, m.start())
        except ValueError:
            continue
        if isinstance(value, list) and any(isinstance(v, str) for v in value):
            found = [v for v in value if isinstance(v, str)]
            break
    if not found:
        found = [m.group(1) for line in text.splitlines() if (m := _BULLET.match(line))]
    out: list[str] = []
    for s in found:
        s = s.strip().strip('"').strip()
        if s and s not in out:
            out.append(s[:1000])
    return out[:limit]


# ---------------------------------------------------------------- refinement

def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32).reshape(-1)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def refine(neighbours: list[tuple[str, float]], target: np.ndarray, embed: Embed, call: Call,
           rounds: int, num_candidates: int) -> dict[str, Any]:
    """Embedding-guided refinement: ask, embed and score candidates, show the scores, ask again.

    Returns {"reconstruction", "score", "candidates": [[text, score], ...] best first, "rounds"}.
    Raises LLMError when the first call fails or no response holds a parseable candidate; a failure
    in a later round keeps the candidates scored so far.
    """
    if not neighbours:
        raise LLMError("no dictionary neighbours to show the LLM")
    t = _unit(target)
    scores: dict[str, float] = {}

    def score(texts: list[str]) -> None:
        new = [s for s in texts if s not in scores]
        if new:
            e = np.asarray(embed(new), dtype=np.float32).reshape(len(new), -1)
            e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)  # cosine even if not unit
            for s, v in zip(new, e @ t):
                scores[s] = float(v)

    best_neighbour = max(neighbours, key=lambda p: p[1])[0]
    # Re-scored with `embed`, so every candidate is compared on one scale.
    score([best_neighbour])
    llm_made: set[str] = set()
    done = 0
    for r in range(rounds):
        previous = sorted(((s, v) for s, v in scores.items() if s in llm_made), key=lambda p: -p[1])
        prompt = build_prompt(neighbours, num_candidates, previous[: max(num_candidates, 10)])
        try:
            got = parse_candidates(call(prompt), limit=2 * num_candidates)
        except LLMError as exc:
            if not llm_made:
                raise
            log.warning("round %d failed, keeping earlier candidates: %s", r + 1, exc)
            break
        done += 1
        score(got)
        llm_made.update(got)
    if not llm_made:
        raise LLMError(f"no parseable candidates in {done} LLM response(s)")
    ranked = sorted(scores.items(), key=lambda p: -p[1])
    return {"reconstruction": ranked[0][0], "score": ranked[0][1],
            "candidates": [[s, v] for s, v in ranked], "rounds": done}


def reconstruct_llm(items: list[dict[str, Any]], embed: Embed, cfg: dict[str, Any],
                    backend: str | None = None, cache_dir: str | Path | None = None,
                    progress: bool = False, *, base_delay: float = 0.5) -> list[dict[str, Any]]:
    """LLM reconstruction of each item {"neighbours": [(text, score), ...], "target": (384,)}.

    Backend: the argument, else env SEMANTIC_RECON_BACKEND, else cfg["llm_backend"]. The key is
    checked before any work. Items run `llm_concurrency` at a time; an item whose calls fail falls
    back to its best neighbour (method "similarity", fallback_reason set); the batch goes on. Once
    the server proves unreachable (see `Breaker`) the remaining items fall back without calls;
    `llm_failure(records)` tells whether the LLM part failed as a whole.
    """
    backend = resolve_backend(backend, cfg.get("llm_backend") or LLM_BACKENDS[0])
    call = Caller(cfg, backend, cache_dir, base_delay=base_delay)
    k = int(cfg.get("llm_neighbours", 5))
    rounds = int(cfg.get("llm_rounds", 2))
    n_cand = int(cfg.get("llm_candidates", 5))
    lock = threading.Lock()

    def safe_embed(texts: list[str]) -> np.ndarray:
        # SBERT/ONNX runtimes are not all thread-safe, and it is CPU-bound anyway: one at a time.
        with lock:
            return embed(texts)

    def one(item: dict[str, Any]) -> dict[str, Any]:
        nbrs = sorted(((str(t), float(s)) for t, s in item["neighbours"]), key=lambda p: -p[1])[:k]
        try:
            call.breaker.check()  # once open: no embedding, no call, no warning per item
            r = refine(nbrs, item["target"], safe_embed, call, rounds, n_cand)
            return {"reconstruction": r["reconstruction"], "score": r["score"], "method": f"llm:{backend}",
                    "candidates": r["candidates"], "fallback_reason": None, "rounds": r["rounds"]}
        except Exception as exc:  # noqa: BLE001 - one bad item must not end the batch
            reason = _scrub(str(exc)) if isinstance(exc, LLMError) else _describe(exc)
            if not reason.startswith(UNREACHABLE):  # the breaker said that once, for all items
                log.warning("LLM reconstruction fell back to the best neighbour: %s", reason)
            best = nbrs[0] if nbrs else ("", 0.0)
            return {"reconstruction": best[0], "score": best[1], "method": "similarity",
                    "candidates": [list(best)] if nbrs else [], "fallback_reason": reason, "rounds": 0}

    workers = max(1, int(cfg.get("llm_concurrency", 4)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm") as pool:
        results = pool.map(one, items)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(items), desc=f"llm:{backend}", unit="sent")
        return list(results)
