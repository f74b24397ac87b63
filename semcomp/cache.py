"""The on-disk embedding cache: append-only chunks, safe for concurrent runs, checked before use.

A folder of chunks, each three files written atomically in this order: `NNNNNN.vecs.npy` (float32
vectors), `NNNNNN.keys.npy` (16-byte text keys) and `NNNNNN.sum.json` (rows, dimension, and the
size and CRC32 of both files). A chunk counts once its keys file exists.

* Concurrent runs: a writer holds the folder's lock while it picks the next free number and writes,
  so two runs never write one chunk name (they used to pick it from the count they read at start,
  and one run's keys ended beside the other's vectors). Readers need no lock: files only appear.
* Damage: every chunk is checked against its sum file before its first read in a process; a chunk
  that fails (a changed, truncated or missing file) is dropped with a one-line warning and its
  sentences are embedded again. Chunks from before sum files existed get one on first check.
* Size: lookups read vectors through memory maps, so 300k cached sentences cost neither a 0.46 GB
  rewrite per save nor RAM to open.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from filelock import FileLock

from .artifacts import atomic_write

log = logging.getLogger("semcomp")
KEY_BYTES = 16


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=KEY_BYTES).digest()


def crc32_file(path: Path, chunk: int = 1 << 22) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            crc = zlib.crc32(block, crc)
    return crc


def _summary(vecs_file: Path, keys_file: Path) -> dict[str, int]:
    """What a chunk's sum file records; raises OSError/ValueError when the files do not load."""
    vecs = np.load(vecs_file, mmap_mode="r")
    keys = np.load(keys_file)
    if vecs.ndim != 2 or keys.shape != (len(vecs), KEY_BYTES) or vecs.dtype != np.float32:
        raise ValueError(f"vectors {vecs.shape} {vecs.dtype} and keys {keys.shape} disagree")
    return {"rows": int(len(vecs)), "dim": int(vecs.shape[1]),
            "vecs_bytes": vecs_file.stat().st_size, "vecs_crc32": crc32_file(vecs_file),
            "keys_bytes": keys_file.stat().st_size, "keys_crc32": crc32_file(keys_file)}


def read_rows(files: Sequence[Path | str | None], starts: Sequence[int], rows: np.ndarray) -> np.ndarray:
    """Vectors of global cache rows, given the chunks' vector files and first rows (then the total)."""
    rows = np.asarray(rows, np.int64)
    chunk = np.searchsorted(np.asarray(starts), rows, side="right") - 1
    out: np.ndarray | None = None
    for c in np.unique(chunk):
        vecs = np.load(files[c], mmap_mode="r")
        if out is None:
            out = np.empty((len(rows), vecs.shape[1]), np.float32)
        sel = np.flatnonzero(chunk == c)
        out[sel] = vecs[rows[sel] - starts[c]]
        del vecs  # an open map would keep every page read so far in this process's RSS
    return out if out is not None else np.zeros((0, 0), np.float32)


class EmbeddingCache:
    """Embeddings on disk keyed by (model, text), so a re-run embeds nothing twice."""

    def __init__(self, cache_dir: str | Path, model: str):
        self.dir = Path(cache_dir) / f"embeddings-{model.replace('/', '__')}"
        self.keys: dict[bytes, int] = {}      # text key -> row over all chunks, in chunk order
        self.files: list[Path | None] = []    # the chunks' vector files (None: dropped as damaged)
        self.starts = [0]                     # first row of each chunk, then the total
        self.checked: set[int] = set()        # chunks that passed their check in this process
        for keys_file in sorted(self.dir.glob("*.keys.npy")):
            try:
                keys = np.load(keys_file)      # (rows, 16) uint8
            except (OSError, ValueError):
                keys = np.zeros((0, KEY_BYTES), np.uint8)  # unreadable: holds nothing, never read
            self._append(keys_file.with_name(keys_file.name.replace(".keys.", ".vecs.")),
                         [k.tobytes() for k in keys])

    def _append(self, vecs_file: Path, keys: list[bytes]) -> None:
        base = self.starts[-1]
        self.keys.update((k, base + i) for i, k in enumerate(keys))
        self.files.append(vecs_file)
        self.starts.append(base + len(keys))

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, keys: Iterable[bytes]) -> np.ndarray:
        """Rows of these text keys, -1 where not cached. The chunks they are in are checked first;
        a damaged one is dropped, so its rows come back -1 and get embedded again."""
        rows = np.fromiter((self.keys.get(k, -1) for k in keys), np.int64)
        chunks = np.searchsorted(self.starts, rows, side="right") - 1  # -1 for rows not cached
        bad = [c for c in np.unique(chunks[rows >= 0]).tolist() if not self._check(c)]
        for c in bad:
            self._drop(c)
        rows[np.isin(chunks, bad)] = -1
        return rows

    def _check(self, c: int) -> bool:
        if c in self.checked:
            return True
        vecs_file = self.files[c]
        assert vecs_file is not None  # a dropped chunk has no keys left to look up
        keys_file = vecs_file.with_name(vecs_file.name.replace(".vecs.", ".keys."))
        sum_file = vecs_file.with_name(vecs_file.name.replace(".vecs.npy", ".sum.json"))
        try:
            have = _summary(vecs_file, keys_file)
            if not sum_file.exists():  # a chunk written before sum files: trusted once, recorded now
                with contextlib.suppress(OSError):
                    with atomic_write(sum_file, "w") as f:
                        json.dump(have, f)
                want = have
            else:
                want = json.loads(sum_file.read_text())
        except (OSError, ValueError) as e:
            log.warning("embedding cache chunk %s is damaged (%s): its sentences are embedded again",
                        vecs_file, type(e).__name__)
            return False
        if have != want:
            log.warning("embedding cache chunk %s does not match its checksum: its %d sentences are "
                        "embedded again", vecs_file, want.get("rows", 0))
            return False
        self.checked.add(c)
        return True

    def _drop(self, c: int) -> None:
        """Forget a damaged chunk here and on disk (its keys file first: then no run reads it)."""
        vecs_file = self.files[c]
        assert vecs_file is not None
        lo, hi = self.starts[c], self.starts[c + 1]
        self.keys = {k: r for k, r in self.keys.items() if not lo <= r < hi}
        self.files[c] = None
        with FileLock(self.dir / ".lock"):
            for suffix in (".keys.npy", ".sum.json", ".vecs.npy"):
                with contextlib.suppress(OSError):
                    vecs_file.with_name(vecs_file.name.replace(".vecs.npy", suffix)).unlink()

    def missing(self, texts: list[str]) -> list[str]:
        """The texts not cached (each once, in first-seen order)."""
        uniq = list(dict.fromkeys(texts))
        rows = self.lookup(text_key(t) for t in uniq)
        return [t for t, r in zip(uniq, rows) if r < 0]

    def add(self, texts: list[str], vecs: np.ndarray) -> None:
        """Append one chunk under the folder's lock, at the first number no run has used."""
        if not texts:
            return
        keys = [text_key(t) for t in texts]
        arrays = {".vecs.npy": np.asarray(vecs, np.float32),
                  ".keys.npy": np.frombuffer(b"".join(keys), np.uint8).reshape(-1, KEY_BYTES)}
        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(self.dir / ".lock"):
            used = [int(p.name[:6]) for p in self.dir.glob("[0-9]" * 6 + ".*")]
            stem = self.dir / f"{max(used, default=-1) + 1:06d}"
            for suffix, arr in arrays.items():  # vectors first: a chunk without its keys is never read
                with atomic_write(stem.with_suffix(suffix)) as f:
                    np.save(f, arr)
            summary = _summary(stem.with_suffix(".vecs.npy"), stem.with_suffix(".keys.npy"))
            with atomic_write(stem.with_suffix(".sum.json"), "w") as f:
                json.dump(summary, f)
        self._append(stem.with_suffix(".vecs.npy"), keys)
        self.checked.add(len(self.files) - 1)

    def get(self, texts: list[str]) -> np.ndarray:
        rows = self.lookup(text_key(t) for t in texts)
        if (rows < 0).any():
            raise KeyError(f"{int((rows < 0).sum())} texts are not in the embedding cache")
        return read_rows(self.files, self.starts, rows)
