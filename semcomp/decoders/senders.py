"""One request to one LLM backend through its official SDK, with the SDK's own retries off.

A sender takes a request, a JSON-able dict (`prompt`, and for completion calls `max_tokens`,
`temperature`, `seed`, `stop`), and returns the model's text. Retries, timeouts, the cache and
the breaker are the caller's (`semcomp.decoders.caller`), the same for every backend.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from ..errors import UserError

Request = dict[str, Any]
Send = Callable[[Request], str]

KEY_ENV = {"openai": "OPENAI_API_KEY", "claude": "ANTHROPIC_API_KEY", "gemini": "GOOGLE_API_KEY"}
# Documented defaults; `llm_model` in the config overrides them. Small, fast current models (none
# on the installed SDKs' deprecation lists) for a short-text task; instruction calls send no
# temperature or token-limit quirks, so reasoning models work too.
DEFAULT_MODELS: dict[str, str] = {
    "openai": "gpt-5.4-mini",
    "claude": "claude-sonnet-4-6",
    "gemini": "gemini-2.5-flash",
}
MAX_OUTPUT_TOKENS = 1024  # Anthropic requires a limit; a handful of sentences fits easily.


class LLMError(UserError, RuntimeError):
    """An LLM backend cannot be used or a call failed for good; the message never holds a key."""

    exit_code = 2  # a missing key or an unknown backend: input the user fixes


def check_key(backend: str, base_url: str | None = None) -> None:
    """Fail early, in one line, when the backend's key is missing (a local server may need none)."""
    env = KEY_ENV.get(backend)
    if env is None or os.environ.get(env) or (backend == "openai" and base_url):
        return
    raise LLMError(f"{env} is not set: export {env}=... to use the {backend} LLM backend")


def scrub(text: str) -> str:
    """Remove every API key we know of from text bound for logs, exceptions and records."""
    for env in KEY_ENV.values():
        key = os.environ.get(env)
        if key and len(key) >= 4:
            text = text.replace(key, "***")
    return text


def describe(exc: BaseException) -> str:
    return scrub(f"{type(exc).__name__}: {exc}")[:300]


# Each factory returns (send, endpoint): the base URL the SDK really calls (an argument, the SDK's
# environment variable, or its default), which the response cache key holds.

def openai_sender(base_url: str | None, model: str, timeout: float) -> tuple[Send, str]:
    import openai

    # A local OpenAI-compatible server (Ollama, vLLM, llama.cpp) may ignore keys; the SDK wants one.
    key = os.environ.get("OPENAI_API_KEY") or "not-needed"
    client = openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)

    def send(req: Request) -> str:
        if "max_tokens" in req:  # a completion call: the model continues the prompt's list
            r = client.completions.create(model=model, prompt=req["prompt"], max_tokens=req["max_tokens"],
                                          temperature=req["temperature"], seed=req["seed"], stop=req["stop"])
            return r.choices[0].text or ""
        # Instruction calls send no temperature/max_tokens: reasoning models reject non-default values.
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": req["prompt"]}])
        return r.choices[0].message.content or ""

    return send, str(client.base_url)


def claude_sender(base_url: str | None, model: str, timeout: float) -> tuple[Send, str]:
    import anthropic

    client = anthropic.Anthropic(api_key=os.environ["ANTHROPIC_API_KEY"], base_url=base_url,
                                 timeout=timeout, max_retries=0)

    def send(req: Request) -> str:
        r = client.messages.create(model=model, max_tokens=req.get("max_tokens", MAX_OUTPUT_TOKENS),
                                   messages=[{"role": "user", "content": req["prompt"]}])
        return "".join(getattr(b, "text", "") for b in r.content)

    return send, str(client.base_url)


def gemini_sender(base_url: str | None, model: str, timeout: float) -> tuple[Send, str]:
    from google import genai
    from google.genai import types

    # HttpOptions.timeout is in milliseconds; retry_options=None means the SDK never retries.
    opts = types.HttpOptions(base_url=base_url, timeout=max(1, int(timeout * 1000)))
    client = genai.Client(api_key=os.environ["GOOGLE_API_KEY"], vertexai=False, http_options=opts)

    def send(req: Request) -> str:
        return client.models.generate_content(model=model, contents=req["prompt"]).text or ""

    # google-genai has no public base_url attribute; this is the order it reads them in.
    return send, base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or "default"


SENDERS = {"openai": openai_sender, "claude": claude_sender, "gemini": gemini_sender}
