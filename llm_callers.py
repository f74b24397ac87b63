"""The original design's entry point for LLM reconstruction, kept so its callers still work.

Everything lives in `semcomp.llm` (official-SDK callers for OpenAI/OpenAI-compatible servers,
Anthropic and Gemini; our retries, timeouts, cache and concurrency; embedding-guided
refinement); this module only re-exports its public names.
"""
from semcomp.llm import (  # noqa: F401 - re-exports
    BACKENDS,
    DEFAULT_MODELS,
    KEY_ENV,
    LLMError,
    build_prompt,
    check_key,
    make_caller,
    parse_candidates,
    reconstruct_llm,
    refine,
    resolve_backend,
)

__all__ = ["BACKENDS", "DEFAULT_MODELS", "KEY_ENV", "LLMError", "build_prompt", "check_key", "make_caller",
           "parse_candidates", "reconstruct_llm", "refine", "resolve_backend"]
