"""The base of every failure the user can fix, so the CLI can tell them from internal bugs.

Scripts print a `UserError` as one line with its `exit_code`; any other exception is a bug and
keeps its traceback. The older error classes (ConfigError, DataError, ArtifactError, ModelError)
are listed beside it in `semcomp.cli` until they inherit from it.
"""
from __future__ import annotations


class UserError(Exception):
    """Something the user can fix (input, files, keys, a server): one line, naming the fix."""

    exit_code = 1


class UsageError(UserError, ValueError):
    """A bad argument or input value. Also a ValueError, so callers that catch that still work."""

    exit_code = 2


class ModelError(UserError, RuntimeError):
    """A model (the embedder, a language model) cannot be loaded: one line, naming the fix."""
