"""What every script shares: --config/--set parsing and one-line errors with fixed exit codes."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Callable

from .artifacts import ArtifactError
from .config import ConfigError, load_config  # noqa: F401 (scripts raise ConfigError)
from .data import DataError
from .embed import ModelError
from .llm import LLMError


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", default="vqvae_config.json", help="JSON config (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable), e.g. --set sample_size=2000")
    p.add_argument("--artifacts", default=None, help="artifacts folder (default: config artifacts_dir)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-epoch logs")
    return p


def config_from(args: argparse.Namespace) -> dict[str, Any]:
    cfg = load_config(args.config, args.set)
    if args.artifacts:
        cfg["artifacts_dir"] = args.artifacts
    if args.quiet:
        cfg["show_progress_bar"] = False
    return cfg


def main(run: Callable[[], int | None]) -> None:
    """Run a script body; known failures become `error: ...` on one line and a non-zero exit."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("httpx", "sentence_transformers", "transformers", "datasets", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        sys.exit(run() or 0)
    except (ConfigError, LLMError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (DataError, ArtifactError, ModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: earlier artifacts are left as they were", file=sys.stderr)
        sys.exit(130)
