"""The reconstructions file: JSON lines, one record a code, each stamped with the run that made it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ..artifacts import ArtifactError, atomic_write


def write_records(path: str | Path, records: Sequence[dict[str, Any]], run: str) -> None:
    """Atomically: a killed decode leaves the previous file whole. `run` is the model fingerprint."""
    with atomic_write(Path(path), "w") as f:
        for rec in records:
            f.write(json.dumps({**rec, "run": run}, ensure_ascii=False) + "\n")


def read_records(path: str | Path, run: str, originals: Sequence[str]) -> list[dict[str, Any]]:
    """Records aligned to the held-out sentences by id; other runs' or misaligned records are refused."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"no {path}: run `python decode.py` first")
    try:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ArtifactError(f"{path} is not a reconstructions file (JSON lines): re-run `python decode.py`") from None
    for r in records:
        if not isinstance(r, dict) or r.get("run") != run:
            raise ArtifactError(f"{path} comes from another pipeline run: re-run `python decode.py`")
        i = r.get("id")
        if not isinstance(i, int) or not 0 <= i < len(originals) or r.get("original") != originals[i]:
            raise ArtifactError(f"{path}: record id {i!r} does not match the held-out sentence with that id; "
                                f"re-run `python decode.py`")
    return records
