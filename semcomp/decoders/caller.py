"""request -> text, with our retries, response cache and circuit breaker around any sender."""
from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from pathlib import Path

from ..artifacts import write_json
from .senders import LLMError, Request, Send, describe, scrub

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 60.0
# Failures in a row (all workers together) after which a run stops calling: an unreachable or hung
# server would otherwise cost every item its retries or its timeout (hours for 1,000 codes).
BREAKER_LIMIT = 3
UNREACHABLE = "LLM server unreachable"  # starts the fallback_reason of every item the breaker cut off


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and what caused it: the SDKs wrap the transport error."""
    out: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(out) < 10:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out


def status_of(exc: BaseException) -> int | None:
    """HTTP status of an SDK error: openai/anthropic use .status_code, google-genai uses .code."""
    for attr in ("status_code", "code"):
        v = getattr(exc, attr, None)
        if isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599:
            return v
    return None


def timed_out(exc: BaseException) -> bool:
    """No answer in time (openai/anthropic APITimeoutError, httpx ReadTimeout, TimeoutError)."""
    return any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in _chain(exc))


def unreachable(exc: BaseException) -> bool:
    """No connection could be made (refused, DNS, connect timeout), as opposed to any answer."""
    # By name: httpx and its fork httpx2 (which the SDKs use here) both have these.
    return any(isinstance(e, ConnectionError) or type(e).__name__ in ("ConnectError", "ConnectTimeout")
               for e in _chain(exc))


def transient(exc: BaseException) -> bool:
    """Worth retrying: 408/429/5xx and refused connections. Not a timeout: the server may still be
    working on the call, and a retry would queue a second copy behind it (a one-at-a-time
    llama.cpp server then times out on every call, measured)."""
    if timed_out(exc):
        return False
    status = status_of(exc)
    if status is not None:
        return status in (408, 429) or status >= 500
    # A dropped connection: the SDKs' APIConnectionError, httpx's (and httpx2's) TransportError.
    return unreachable(exc) or any(c.__name__ in ("APIConnectionError", "TransportError")
                                   for e in _chain(exc) for c in type(e).__mro__)


def retry_after(exc: BaseException) -> float | None:
    """Seconds from a Retry-After header (seconds form), when the server sent one."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    try:
        return min(float(headers.get("retry-after")), MAX_RETRY_AFTER_S) if headers else None
    except (TypeError, ValueError):
        return None


class Breaker:
    """Stops calling a server that cannot be reached or does not answer: `limit` refused or
    timed-out calls in a row (any worker) open it for the rest of the run; any answer, even an
    error status, resets the count."""

    def __init__(self, what: str, limit: int = BREAKER_LIMIT):
        self.what, self.limit, self.failures = what, limit, 0
        self.reason: str | None = None  # set when open
        self._lock = threading.Lock()

    def record(self, answered: bool, error: str = "") -> None:
        with self._lock:
            self.failures = 0 if answered else self.failures + 1
            if self.failures >= self.limit and self.reason is None:
                self.reason = (f"{UNREACHABLE}: {self.what} failed to connect or answer {self.failures} times in "
                               f"a row ({error}); no more calls this run")
                log.warning("%s; the remaining items fall back to similarity decoding", self.reason)

    def check(self) -> None:
        if self.reason is not None:
            raise LLMError(self.reason)


class Caller:
    """request -> response text: `send` with retries (exponential backoff + jitter), an on-disk
    cache keyed by everything that shapes the answer, and a circuit breaker (`.breaker`). Raises
    LLMError (key-free message) when a call fails for good. `base_delay` is the first backoff in
    seconds (doubles per retry); tests pass a tiny one."""

    def __init__(self, send: Send, *, backend: str, endpoint: str, model: str, cache_dir: str | Path | None,
                 retries: int, base_delay: float = 0.5):
        self.send, self.backend, self.endpoint, self.model = send, backend, endpoint, model
        self.retries, self.base_delay = retries, base_delay
        self.cache = Path(cache_dir) if cache_dir is not None else None
        self.breaker = Breaker(f"{backend} at {scrub(endpoint)}")

    def cache_path(self, req: Request) -> Path | None:
        if self.cache is None:
            return None
        # The same prompt to another server, model or sampling seed is another answer.
        shape = {"backend": self.backend, "endpoint": self.endpoint, "model": self.model, **req}
        return self.cache / f"{hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()}.json"

    def __call__(self, req: Request) -> str:
        path = self.cache_path(req)
        if path and path.exists():
            try:
                return json.loads(path.read_text(encoding="utf-8"))["response"]
            except (OSError, ValueError, KeyError):
                log.warning("ignoring unreadable cache file %s", path.name)
        for attempt in range(self.retries + 1):
            self.breaker.check()
            try:
                text = self.send(req)
            except Exception as exc:  # noqa: BLE001 - classified below, re-raised as LLMError
                self.breaker.record(not (unreachable(exc) or timed_out(exc)), describe(exc))
                if not transient(exc):
                    raise LLMError(f"{self.backend} call failed: {describe(exc)}") from None
                self.breaker.check()  # just opened: no backoff before giving up
                if attempt == self.retries:
                    raise LLMError(f"{self.backend} call failed after {self.retries + 1} attempts: "
                                   f"{describe(exc)}") from None
                delay = min(self.base_delay * 2 ** attempt, MAX_BACKOFF_S)
                delay += random.uniform(0, delay)  # jitter: concurrent workers do not retry in step
                delay = max(delay, retry_after(exc) or 0.0)
                log.info("%s call failed (%s); retry %d/%d in %.2fs", self.backend, describe(exc),
                         attempt + 1, self.retries, delay)
                time.sleep(delay)
                continue
            self.breaker.record(True)
            break
        if path:
            write_json(path, {"backend": self.backend, "model": self.model, **req, "response": text})
        return text
