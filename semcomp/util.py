"""Small helpers that several modules need, kept here so that no two modules import each other."""
from __future__ import annotations

import hashlib
import os
import socket
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def hub_online(timeout: float = 3.0) -> bool:
    """A quick probe, so an offline machine does not sit through the hub clients' minute of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cores() -> int:
    """The cores this process may run on (a container or taskset may allow fewer than cpu_count())."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
