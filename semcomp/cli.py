"""What every script shares: --config/--set parsing and one-line errors with fixed exit codes."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Callable

from .config import SCHEMA, ConfigError, load_config
from .errors import UsageError, UserError

__all__ = ["ConfigError", "USER_ERRORS", "UsageError", "UserError", "config_from", "config_keys", "exit_code",
           "main", "parser"]

# Failures the user can fix (ConfigError, DataError, ArtifactError, ModelError, LLMError all derive
# from UserError): printed as one line. Anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[Exception], ...] = (UserError,)
# Libraries that log every HTTP request or load step at INFO, which breaks progress bars.
NOISY_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2", "openai", "anthropic", "google_genai", "google.genai",
                 "sentence_transformers", "transformers", "datasets", "faiss")
# -q: the model libraries read these when imported, which the scripts do after config_from.
QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error", "TQDM_DISABLE": "1"}
CONFIG_HELP = ("config: defaults, then --config FILE, then each --set KEY=VALUE. Every key with its\n"
               "default, range and meaning is in semcomp/config.py (SCHEMA); the most used are data_dir,\n"
               "quantizer and llm_*.")


def config_keys(*groups: str) -> str:
    """Help lines `key (default): meaning` for the config keys of these groups (semcomp.config.Key)."""
    return "\n".join(f"  {k} ({key.default!r}): {key.meaning}" for k, key in SCHEMA.items() if key.group in groups)


def parser(description: str, set_example: str | None = None, epilog: str | None = None) -> argparse.ArgumentParser:
    """The shared options. `set_example` is a `KEY=VALUE` that means something to this script;
    `epilog` (kept as written) comes before the pointer to the config's documentation."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"{epilog}\n\n{CONFIG_HELP}" if epilog else CONFIG_HELP)
    example = f", e.g. --set {set_example}" if set_example else ""
    p.add_argument("--config", default="vqvae_config.json", help="JSON config (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config key (repeatable){example}")
    p.add_argument("--artifacts", default=None, help="artifacts folder (default: config artifacts_dir)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars (model loading included) "
                                                              "or per-epoch logs")
    return p


def config_from(args: argparse.Namespace) -> dict[str, Any]:
    cfg = load_config(args.config, args.set)
    if args.artifacts:
        cfg["artifacts_dir"] = args.artifacts
    if args.quiet:
        cfg["show_progress_bar"] = False
        os.environ.update(QUIET_ENV)
    return cfg


def exit_code(exc: BaseException) -> int:
    """2 for bad input (config, arguments, API keys); 1 for missing or broken data, models, artifacts."""
    return int(getattr(exc, "exit_code", 1))


def main(run: Callable[[], int | None]) -> None:
    """Run a script body; user-facing failures become `error: ...` on one line and a non-zero exit."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        sys.exit(run() or 0)
    except USER_ERRORS as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(exit_code(e))
    except OSError as e:  # a file the user named or a folder they own: unreadable, read-only, too long
        where = f" ({e.filename})" if e.filename else ""
        print(f"error: {e.strerror or type(e).__name__}{where}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: earlier artifacts are left as they were", file=sys.stderr)
        sys.exit(130)
