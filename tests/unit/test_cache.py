"""The embedding cache under concurrent writers and damaged chunks (no model: synthetic vectors)."""
from __future__ import annotations

import logging
import multiprocessing as mp

import numpy as np
import pytest

from semcomp.cache import EmbeddingCache

MODEL = "some/model"


def vectors(texts: list[str]) -> np.ndarray:
    """A text's vector is a function of the text alone, so any mix-up shows."""
    return np.asarray([np.random.default_rng(sum(t.encode())).standard_normal(8) for t in texts], np.float32)


def _writer(folder: str, tag: str, chunks: int, start) -> None:
    cache = EmbeddingCache(folder, MODEL)  # both read the same (empty) folder before either writes
    start.wait()
    for c in range(chunks):
        texts = [f"{tag} chunk {c} row {i}" for i in range(50)]
        cache.add(texts, vectors(texts))


def test_two_processes_adding_at_once_never_share_a_chunk(tmp_path):
    """Two real processes append 30 chunks each to one cache at the same moment: every one of the
    3,000 texts reads back its own vector (before the lock, both named chunks from the count they
    read at start, and one run's keys ended beside the other's vectors)."""
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), tag, 30, start)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    cache = EmbeddingCache(tmp_path, MODEL)
    texts = [f"{tag} chunk {c} row {i}" for tag in ("a", "b") for c in range(30) for i in range(50)]
    assert len(cache) == 3000 and len(cache.files) == 60
    np.testing.assert_array_equal(cache.get(texts), vectors(texts))


def _filled(tmp_path, chunks: int = 3) -> tuple[EmbeddingCache, list[list[str]]]:
    cache = EmbeddingCache(tmp_path, MODEL)
    parts = [[f"chunk {c} row {i}" for i in range(20)] for c in range(chunks)]
    for texts in parts:
        cache.add(texts, vectors(texts))
    return cache, parts


@pytest.mark.parametrize("damage", ["random vectors", "truncated", "vectors missing", "keys flipped"])
def test_a_damaged_chunk_is_dropped_with_a_warning_never_used(tmp_path, caplog, damage):
    cache, parts = _filled(tmp_path)
    vecs_file = cache.files[1]
    keys_file = vecs_file.with_name("000001.keys.npy")
    if damage == "random vectors":  # a valid .npy of the right shape: only the checksum can tell
        np.save(vecs_file, np.random.default_rng(1).standard_normal((20, 8)).astype(np.float32))
    elif damage == "truncated":
        vecs_file.write_bytes(vecs_file.read_bytes()[:300])
    elif damage == "vectors missing":
        vecs_file.unlink()
    else:
        raw = bytearray(keys_file.read_bytes())
        raw[-1] ^= 0xFF
        keys_file.write_bytes(bytes(raw))
    fresh = EmbeddingCache(tmp_path, MODEL)
    texts = [t for p in parts for t in p]
    with caplog.at_level(logging.WARNING, "semcomp"):
        missing = fresh.missing(texts)
    assert missing == parts[1]  # the damaged chunk's sentences, to embed again; the others are trusted
    assert "embedded again" in caplog.text and "000001" in caplog.text
    assert not keys_file.exists()  # gone on disk too: no later run reads it
    fresh.add(missing, vectors(missing))
    np.testing.assert_array_equal(fresh.get(texts), vectors(texts))
    np.testing.assert_array_equal(EmbeddingCache(tmp_path, MODEL).get(texts), vectors(texts))


def test_a_chunk_from_before_checksums_is_trusted_once_and_recorded(tmp_path):
    cache, parts = _filled(tmp_path, chunks=1)
    sum_file = tmp_path / f"embeddings-{MODEL.replace('/', '__')}" / "000000.sum.json"
    sum_file.unlink()
    np.testing.assert_array_equal(EmbeddingCache(tmp_path, MODEL).get(parts[0]), vectors(parts[0]))
    assert sum_file.exists()  # from now on the chunk is checked like any other
    np.save(cache.files[0], np.zeros((20, 8), np.float32))
    assert EmbeddingCache(tmp_path, MODEL).missing(parts[0]) == parts[0]


def test_a_checked_chunk_is_not_read_again_in_the_same_process(tmp_path, monkeypatch):
    import semcomp.cache as cache_mod

    cache, parts = _filled(tmp_path, chunks=2)
    fresh = EmbeddingCache(tmp_path, MODEL)
    calls = []
    real = cache_mod.crc32_file
    monkeypatch.setattr(cache_mod, "crc32_file", lambda p: calls.append(p) or real(p))
    fresh.get(parts[0])
    fresh.get(parts[0] + parts[1])
    assert len(calls) == 4  # vectors and keys of each chunk, once
