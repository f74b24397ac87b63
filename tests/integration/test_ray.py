"""`--engine ray` (semcomp.engine_ray): a local Ray with 2 CPUs, on a small document.

The main claim is byte-identity with `--engine local`: the same codes and the same embedding cache,
from fresh copies of one artifacts folder. It holds only because the Ray path embeds in the local
path's chunks and batches (the int8 graph's vectors depend on the batch, see the last test).
"""
from __future__ import annotations

import importlib.util
import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import ray

import semcomp.embed as embed_mod
from semcomp import Codec, cli
from semcomp.artifacts import ArtifactError
from semcomp.codes import HEADER, read_codes
from semcomp.config import ConfigError, load_config
from semcomp.data import DataError, read_text_input, split_document
from semcomp.cache import EmbeddingCache
from semcomp.embed import Embedder
from semcomp.codes import SHARDS_MANIFEST, is_sharded, read_sharded_codes, shards_folder
from semcomp.data import input_files
from semcomp.engine_ray import RayMissingError, block_size, byte_ranges, compress_ray, embed_to_cache, require_ray

from conftest import SHARED

ROOT = Path(__file__).resolve().parents[2]
CHUNK = 128          # CACHE_CHUNK for these tests: several embedding chunks from a small document
RANGE = 2048         # input bytes per split task: many ranges, lines cut nowhere
SETS = ["show_progress_bar=false", "ray_batch_size=1024"]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def document(tmp_path_factory, built) -> Path:
    """A folder of text: CRLF lines, a .md in a subfolder, a file that is not read, repeats, short
    lines, a long unpunctuated line, non-ASCII text and sentences the cache already holds."""
    root, _ = built
    lines = (SHARED / "diverse-en" / "dev.txt").read_text(encoding="utf-8").splitlines()[:1000]
    dictionary = (root / "dictionary.txt").read_text(encoding="utf-8").split("\n")[:40]
    folder = tmp_path_factory.mktemp("document")
    (folder / "sub").mkdir()
    (folder / "a.txt").write_text("\r\n".join(lines[:450] + dictionary[:20] + lines[:25]) + "\r\n",
                                  encoding="utf-8", newline="")
    (folder / "sub" / "b.md").write_text(
        "Hi Sarah,\n\nOk.\nOk.\nCafé déjà vu — naïve façade.\n" + " ".join(lines[450:600]) + "\n"
        + "word " * 300 + "\n" + "\n".join(lines[600:] + dictionary[20:]) + "\n", encoding="utf-8")
    (folder / "notes.csv").write_text("not,read\n")
    return folder


def artifacts_copy(built, dst: Path) -> Path:
    """A fresh copy of the session's artifacts: every run here starts from the same cache."""
    root, _ = built
    shutil.copytree(root, dst)
    return dst


def config(artifacts: Path, *sets: str) -> dict:
    return load_config(None, [f"artifacts_dir={artifacts}", *SETS, *sets])


@pytest.fixture(scope="module")
def local_run(built, document, onnx_dir, tmp_path_factory):
    """`--engine local` on the document: (artifacts, codes file)."""
    work = tmp_path_factory.mktemp("local")
    art = artifacts_copy(built, work / "artifacts")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(embed_mod, "CACHE_CHUNK", CHUNK)
        cfg = config(art)
        Codec.load(art, cfg).compress_file(document, work / "doc.scz")
    return art, work / "doc.scz"


@pytest.fixture(scope="module")
def ray_run(built, document, onnx_dir, local_ray, tmp_path_factory):
    """`--engine ray` on the document from another fresh copy, with one embedding worker and one
    encoding worker killed on their first call (os._exit, as the OOM killer would): Ray restarts
    them and retries their work. Returns (artifacts, shards folder, stats, kill markers)."""
    work = tmp_path_factory.mktemp("ray")
    art = artifacts_copy(built, work / "artifacts")
    markers = {"embed": work / "embed.killed", "encode": work / "encode.killed"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(embed_mod, "CACHE_CHUNK", CHUNK)
        cfg = config(art)
        stats = compress_ray(Codec.load(art, cfg), document, work / "doc.scz", cfg, range_bytes=RANGE,
                             crash_markers={k: str(v) for k, v in markers.items()})
    return art, work / "doc.scz", stats, markers


def cache_files(art: Path) -> dict[str, bytes]:
    folder = EmbeddingCache(art / "cache", embed_mod.DEFAULT_MODEL + "@onnx-int8").dir
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.npy"))}


def test_ray_codes_and_cache_are_byte_identical_to_local_despite_killed_workers(local_run, ray_run, document):
    (l_art, l_codes), (r_art, shards, stats, killed) = local_run, ray_run
    assert all(m.exists() for m in killed.values())  # a worker of each stage died mid-run
    pieces = split_document(read_text_input(document))
    local = l_codes.read_bytes()
    files = sorted(shards.glob("shard-*.scz"))
    assert stats["sentences"] == len(pieces) > 1024 and stats["shards"] == len(files) == 2
    assert stats["utf8_bytes"] == sum(len(p.encode()) for p in pieces)
    # Each shard is a codes file of its own; their bodies, in order, are the local file's body.
    assert b"".join(f.read_bytes()[HEADER.size:] for f in files) == local[HEADER.size:]
    assert all(f.read_bytes()[5:13] == local[5:13] for f in files)  # the model fingerprint
    fp = Codec.load(l_art).fingerprint
    assert np.array_equal(read_sharded_codes(shards, fp).codes, read_codes(l_codes, fp).codes)
    # The same vectors, appended in the same chunks: the caches are the same files.
    l_cache, r_cache = cache_files(l_art), cache_files(r_art)
    assert len(r_cache) > 2 * 4 and l_cache == r_cache  # several new chunks of CHUNK sentences


def test_an_interrupted_job_leaves_nothing_a_decode_would_read(ray_run, document, tmp_path, monkeypatch):
    r_art, shards, *_ = ray_run
    art, out = tmp_path / "artifacts", tmp_path / "doc.scz"
    shutil.copytree(r_art, art, symlinks=True)  # its cache holds the document: no embedding to wait for
    shutil.copytree(shards, out)
    assert read_sharded_codes(out).codes.shape[0] > 1024  # a complete set from an earlier run
    written = []

    def write_then_interrupt(path, *args):
        if written:
            raise KeyboardInterrupt  # Ctrl-C while the second shard is being written
        written.append(path)
        return real(path, *args)

    import semcomp.codes as codes_mod

    real = codes_mod.write_codes  # what shard_entry writes each shard with
    monkeypatch.setattr(codes_mod, "write_codes", write_then_interrupt)
    monkeypatch.setattr(embed_mod, "CACHE_CHUNK", CHUNK)
    cfg = config(art)
    with pytest.raises(KeyboardInterrupt):
        compress_ray(Codec.load(art, cfg), document, out, cfg, range_bytes=RANGE)
    assert len(written) == 1 and len(read_codes(written[0]).codes) >= 1  # a whole file, or none
    assert not (out / SHARDS_MANIFEST).exists() and not list(out.glob(".*.tmp"))
    with pytest.raises(ArtifactError, match="did not finish"):
        read_sharded_codes(out)


def test_read_sharded_codes_checks_every_shard(ray_run, tmp_path):
    _, shards, *_ = ray_run
    fp = bytes.fromhex(__import__("json").loads((shards / SHARDS_MANIFEST).read_text())["fingerprint"])
    assert is_sharded(shards) and is_sharded(shards / SHARDS_MANIFEST) and not is_sharded(shards / "x.scz")
    assert shards_folder(shards / SHARDS_MANIFEST) == shards
    with pytest.raises(ArtifactError, match="different model"):
        read_sharded_codes(shards, b"otherrun")
    with pytest.raises(ArtifactError, match="model.s are 1 x 2"):
        read_sharded_codes(shards, fp, expect_shape=(1, 2))
    for damage in ("flip", "truncate", "remove"):
        bad = tmp_path / damage
        shutil.copytree(shards, bad)
        shard = bad / "shard-00001.scz"
        data = shard.read_bytes()
        if damage == "flip":
            shard.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        elif damage == "truncate":
            shard.write_bytes(data[:-2])
        else:
            shard.unlink()
        with pytest.raises(ArtifactError, match=r"does not match|is missing|has \d+ bytes"):
            read_sharded_codes(bad)


def test_embed_to_cache_writes_the_local_paths_cache(built, onnx_dir, local_ray, tmp_path, monkeypatch):
    monkeypatch.setattr(embed_mod, "CACHE_CHUNK", 32)
    root, _ = built
    texts = (root / "dictionary.txt").read_text(encoding="utf-8").split("\n")[:200]
    texts = texts + texts[:30]  # repeats are embedded once
    caches = {}
    for name in ("local", "ray"):
        caches[name] = Embedder(embed_mod.DEFAULT_MODEL, "cpu", tmp_path / name, 32, backend="onnx-int8")
        caches[name].encode(texts[100:140])  # a cache that already holds some of them
    local, remote = caches["local"], caches["ray"]
    expect = local.encode(texts)
    assert embed_to_cache(texts, remote, config(tmp_path)) == len(set(texts)) - 40
    assert embed_to_cache(texts, remote, config(tmp_path)) == 0
    chunks = len(remote.cache.files)
    assert np.array_equal(remote.encode(texts), expect) and len(remote.cache.files) == chunks
    names = sorted(p.name for p in local.cache.dir.iterdir())
    assert names == sorted(p.name for p in remote.cache.dir.iterdir()) and len(names) > 8
    assert all((local.cache.dir / n).read_bytes() == (remote.cache.dir / n).read_bytes() for n in names)


def test_cli_engine_ray_on_a_running_cluster_and_decode(ray_run, document, tmp_path):
    r_art, _, stats, _ = ray_run
    art = tmp_path / "artifacts"
    shutil.copytree(r_art, art, symlinks=True)  # the document is cached: the run is split + encode
    out = tmp_path / "doc.scz"
    address = ray.get_runtime_context().gcs_address
    run = [sys.executable, "pipeline.py", "--artifacts", str(art), "-q", "--compress", str(document), "-o",
           str(out), "--engine", "ray", "--set", f"ray_address={address}", "--set", "ray_batch_size=1024"]
    r = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(read_sharded_codes(out).codes) == stats["sentences"]
    r = subprocess.run([sys.executable, "decode.py", "--artifacts", str(art), "-q", "--codes", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(out.with_suffix(".jsonl").read_text().splitlines()) == stats["sentences"]


def test_engine_ray_without_ray_is_one_line(monkeypatch, capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("pipeline_script", ROOT / "pipeline.py")
    pipeline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pipeline)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(RayMissingError):
        require_ray()
    (tmp_path / "a.txt").write_text("One sentence here.\n")
    monkeypatch.setattr(sys, "argv", ["pipeline.py", "--compress", str(tmp_path / "a.txt"), "--engine", "ray",
                                      "--artifacts", str(tmp_path / "none")])
    with pytest.raises(SystemExit) as e:
        cli.main(pipeline.run)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1 and len(err.splitlines()) == 1 and "pip install -r requirements-ray.txt" in err


def test_split_ranges_inputs_and_config(tmp_path, local_ray, built):
    f = tmp_path / "t.txt"
    f.write_bytes("é line one\r\nline two\n\nthree\rfour\n".encode() * 50)
    units = byte_ranges([f], 7)
    data = f.read_bytes()
    assert units[0]["start"] == 0 and units[-1]["end"] == len(data)
    assert all(a["end"] == b["start"] and data[a["end"] - 1:a["end"]] == b"\n" for a, b in itertools.pairwise(units))
    lines = [ln for u in units for ln in data[u["start"]:u["end"]].decode().splitlines()]
    assert lines == read_text_input(f)
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match="no .txt or .md"):
        input_files(tmp_path / "d")
    (tmp_path / "d" / "bad.txt").write_bytes(b"caf\xe9 is not UTF-8\n")
    root, _ = built
    cfg = config(root)
    with pytest.raises(DataError, match="bad.txt is not UTF-8 text"):
        compress_ray(Codec.load(root, cfg), tmp_path / "d", tmp_path / "out", cfg)
    with pytest.raises(ConfigError):
        load_config(None, ["ray_batch_size=100"])
    assert block_size({"ray_batch_size": 1025}) == 2048 and block_size({"ray_batch_size": 1024}) == 1024
    assert load_config(None, [])["ray_address"] is None
    with pytest.raises(cli.UsageError, match="is a file"):
        compress_ray(Codec.load(root, cfg), f, f, cfg)


def test_int8_vectors_depend_on_the_batch(onnx_dir, built):
    """Why the chunking above matters: the same sentence, batched with others, gets another vector."""
    from semcomp.onnx_embed import OnnxEncoder

    root, _ = built
    texts = (root / "dictionary.txt").read_text(encoding="utf-8").split("\n")[:64]
    enc = OnnxEncoder(onnx_dir / "model-int8.onnx")
    together = enc.encode(texts, batch_size=64)
    alone = enc.encode(texts[:4], batch_size=64)
    assert not np.array_equal(together[:4], alone)
    assert np.array_equal(enc.encode(texts, batch_size=64), together)  # but deterministic for a batch


def test_actors_read_the_graph_from_the_artifacts_cache(built, onnx_dir, tmp_path):
    """Actors on other nodes cannot see the driver's per-user cache: the spec they get points at a
    byte-identical copy inside the artifacts cache, which every node mounts."""
    from semcomp.engine_ray import _embedder_spec

    embedder = Embedder(embed_mod.DEFAULT_MODEL, "cpu", tmp_path / "cache", 32, backend="onnx-int8")
    spec = _embedder_spec(embedder, "cpu")
    shared = Path(spec["onnx_path"])
    assert shared.is_relative_to(tmp_path / "cache")
    assert shared.read_bytes() == (onnx_dir / "model-int8.onnx").read_bytes()
