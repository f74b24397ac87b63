"""The original design's entry point for LLM reconstruction, kept so its callers still work.

Everything lives in `semcomp.llm` (official-SDK callers for OpenAI/OpenAI-compatible servers,
Anthropic and Gemini; our retries, timeouts, cache and concurrency; embedding-guided
refinement), the backend list in `semcomp.reconstruct`; this module only re-exports their
public names.
"""
from semcomp.llm import (  # noqa: F401 - re-exports
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
    resolve_backend,
)
from semcomp.reconstruct import LLM_BACKENDS

BACKENDS = LLM_BACKENDS  # the original design's name for the one list of LLM backends

__all__ = ["BACKENDS", "DEFAULT_MODELS", "KEY_ENV", "LLMError", "LLM_BACKENDS", "build_prompt", "check_key",
           "llm_failure", "make_caller", "parse_candidates", "reconstruct_llm", "refine", "resolve_backend"]
