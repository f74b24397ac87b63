"""The original design's entry point for LLM reconstruction, kept so its callers still work.

Everything lives in `semcomp.decoders` (official-SDK senders for OpenAI/OpenAI-compatible
servers, Anthropic and Gemini; llama.cpp in this process; our retries, timeouts, cache and
concurrency; embedding-guided refinement), the backend list in `semcomp.config`; this module only
re-exports their public names.
"""
from semcomp.config import LLM_BACKENDS
from semcomp.decoders import (  # noqa: F401 - re-exports
    DEFAULT_MODELS,
    KEY_ENV,
    LLMError,
    build_prompt,
    check_key,
    llm_failure,
    make_caller,
    parse_candidates,
    reconstruct_llm,
    refine,
)

BACKENDS = LLM_BACKENDS  # the original design's name for the one list of LLM backends

__all__ = ["BACKENDS", "DEFAULT_MODELS", "KEY_ENV", "LLMError", "LLM_BACKENDS", "build_prompt", "check_key",
           "llm_failure", "make_caller", "parse_candidates", "reconstruct_llm", "refine"]
