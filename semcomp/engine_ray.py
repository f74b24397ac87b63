"""`--engine ray`: compress (and embed a training set) on Ray Data, with the local path's exact results.

Ray is optional (`pip install -r requirements-ray.txt`); this module imports it only when a Ray job
starts. The folder of shards it writes is a format of semcomp.codes, read there without Ray.

What runs where, and why the results are byte-identical to `--engine local`:

* split (Ray tasks): the input files are cut into byte ranges at line ends; each task decodes its
  range, runs `split_document` on its lines and hashes every piece. Lines never cross a range, so
  the pieces are those of `split_document(read_text_input(path))`, in order.
* driver: the pieces' 16-byte keys come back (the texts too, as Arrow strings); the driver drops
  what the embedding cache already holds and sorts the rest as `Embedder.encode` does (unique,
  shortest first, stable), then cuts them into the cache's chunks of `CACHE_CHUNK` sentences.
  This is not optional: the int8 ONNX graph quantises activations per batch, so a sentence's
  vector depends on the other sentences in its batch (measured: up to 0.04 per component when the
  batch changes). Each chunk is therefore embedded whole by one actor, in the same batches as the
  local path (OnnxEncoder sorts within the chunk), and the driver appends it to the same on-disk
  cache in the same order (`EmbeddingCache.add`), so the cache, too, ends as the local run leaves it.
* embed (Ray Data actor pool): each actor loads the embedder once, then embeds whole chunks.
* encode (Ray Data actor pool): each actor loads the trained codec once (`Codec.load`), reads its
  block's vectors from the cache files and runs `Codec.encode` (closed loop, same search). Blocks are
  whole multiples of 1,024 rows in document order, the chunk `closed_loop_encode` works in, so every
  search sees the same queries as in the local run.
* driver: writes each block as a shard (a codes file, `write_codes`, atomically), then the manifest
  (order, counts, fingerprint, sha256 of each shard) last; `read_sharded_codes` checks all of it.

The artifacts folder (with its `cache/`) must be readable at the same path on every node of a
cluster; the output folder is written by the driver alone.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from . import embed as embed_mod
from .artifacts import atomic_write
from .cache import read_rows, text_key
from .codec import Codec
from .codes import SHARD_NAME, SHARDS_MANIFEST, shard_entry, write_shards_manifest
from .data import DataError, input_files, split_document
from .errors import UsageError, UserError

log = logging.getLogger("semcomp")

INSTALL = "pip install -r requirements-ray.txt"
ENCODE_CHUNK = 1024        # closed_loop_encode's and VQVAE.encode's chunk: encode blocks are multiples of it
RANGE_BYTES = 8 << 20      # input bytes per split task (cut at the next line end)


class RayMissingError(UserError):
    """`--engine ray` without Ray installed: one line naming the install command."""


def require_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is the `data` extra)
    except ImportError:
        raise RayMissingError(f"--engine ray needs Ray Data, which is not installed: {INSTALL}") from None
    return ray


# -- the Ray session ---------------------------------------------------------------------------------
def runtime_env() -> dict[str, Any]:
    """What workers of a running cluster need from this checkout: the semcomp package itself (the
    other dependencies must be installed on the nodes) and the one-BLAS-thread setting."""
    return {"py_modules": [str(Path(__file__).resolve().parent)],
            "env_vars": {"OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}}


@contextlib.contextmanager
def ray_session(cfg: dict[str, Any]) -> Iterator[Any]:
    """Use the Ray this process is already connected to, else connect to `ray_address`, else start a
    local Ray for the length of the job (and stop it after)."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if cfg["ray_address"]:
        ray.init(address=cfg["ray_address"], runtime_env=runtime_env(), **kwargs)
    else:  # a local Ray: its workers inherit this process's working folder and environment
        ray.init(**kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _data_context() -> Iterator[None]:
    """Ray Data quiet (our own bars show progress) and in order; restored afterwards."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    saved = (ctx.enable_progress_bars, ctx.execution_options.preserve_order)
    logger = logging.getLogger("ray.data")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # its per-stage INFO lines and error banners; errors still raise
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = True
    try:
        yield
    finally:
        ctx.enable_progress_bars, ctx.execution_options.preserve_order = saved
        logger.setLevel(level)


def _pool(ray: Any, cfg: dict[str, Any], jobs: int, gpu: bool) -> tuple[Any, dict[str, float], int]:
    """(compute strategy, resources per actor, threads per actor) for `jobs` units of work."""
    res = ray.cluster_resources()
    if gpu:
        gpus = int(res.get("GPU", 0))
        if not gpus:
            raise UsageError("device cuda asked for, but the Ray cluster has no GPU; use --set device=cpu")
        n = max(1, min(cfg["ray_actors"] or gpus, jobs))
        need, threads = {"num_cpus": 1, "num_gpus": min(1.0, gpus / n)}, 1
    else:
        cpus = max(1, int(res.get("CPU", 1)))
        n = max(1, min(cfg["ray_actors"] or cpus, jobs))
        # More actors than CPUs share them (fractional CPUs), else each gets its share as threads.
        need, threads = {"num_cpus": min(cpus / n, cpus // n or 1)}, max(1, cpus // n)
    return ray.data.ActorPoolStrategy(size=n), need, threads


def _crash_once(marker: str | None) -> None:
    """Test hook: the first call anywhere with this marker kills its worker process outright."""
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os._exit(1)


# -- split: files -> pieces, on Ray tasks --------------------------------------------------------------
def byte_ranges(files: Sequence[Path], range_bytes: int = RANGE_BYTES) -> list[dict[str, Any]]:
    """Units of split work: (file, start, end) with every range ending just after a line end.

    '\\n' never occurs inside a multi-byte UTF-8 character and a '\\r\\n' stays whole, so the lines of
    the ranges are the lines of the file (str.splitlines, as read_text_input splits them)."""
    units = []
    for f in files:
        size = f.stat().st_size
        with open(f, "rb") as fh:
            start = 0
            while start < size:
                end = size
                if start + range_bytes < size:
                    fh.seek(start + range_bytes - 1)
                    pos = start + range_bytes - 1
                    while block := fh.read(1 << 16):
                        hit = block.find(b"\n")
                        if hit >= 0:
                            end = pos + hit + 1
                            break
                        pos += len(block)
                units.append({"unit": len(units), "path": str(f), "start": start, "end": end})
                start = end
    return units


def _split_units(batch: dict[str, np.ndarray]) -> Any:
    """One Ray task: byte ranges -> one row per range with its pieces, their keys and lengths."""
    import pyarrow as pa

    rows: dict[str, list[Any]] = {k: [] for k in ("unit", "bytes", "texts", "keys", "chars", "utf8", "error")}
    for unit, path, start, end in zip(batch["unit"], batch["path"], batch["start"], batch["end"]):
        with open(path, "rb") as f:
            f.seek(int(start))
            data = f.read(int(end) - int(start))
        try:
            pieces, error = split_document(data.decode("utf-8").splitlines()), ""
        except UnicodeDecodeError:
            pieces, error = [], f"{path} is not UTF-8 text"  # raised by the driver, as one line
        encoded = [p.encode("utf-8") for p in pieces]
        rows["unit"].append(int(unit))
        rows["bytes"].append(int(end) - int(start))
        rows["texts"].append(pieces)
        rows["keys"].append(b"".join(text_key(p) for p in pieces))
        rows["chars"].append([len(p) for p in pieces])
        rows["utf8"].append(sum(len(e) for e in encoded))
        rows["error"].append(error)
    schema = pa.schema([("unit", pa.int64()), ("bytes", pa.int64()), ("texts", pa.list_(pa.string())),
                        ("keys", pa.binary()), ("chars", pa.list_(pa.int32())), ("utf8", pa.int64()),
                        ("error", pa.string())])
    return pa.table(rows, schema=schema)


class Pieces:
    """The document's pieces in order: texts (Arrow strings), 16-byte cache keys, lengths in characters."""

    def __init__(self, texts: Any, keys: np.ndarray, chars: np.ndarray, utf8: int):
        self.texts, self.keys, self.chars, self.utf8 = texts, keys, chars, utf8

    def __len__(self) -> int:
        return len(self.chars)


def split_on_ray(ray: Any, files: Sequence[Path], range_bytes: int = RANGE_BYTES,
                 show_progress_bar: bool = False) -> Pieces:
    import pyarrow as pa
    from tqdm.auto import tqdm

    units = byte_ranges(files, range_bytes)
    parts: dict[int, tuple[Any, np.ndarray, np.ndarray]] = {}
    utf8 = 0
    if units:
        ds = ray.data.from_items(units, override_num_blocks=len(units))
        ds = ds.map_batches(_split_units, batch_size=1, batch_format="numpy")
        with tqdm(total=sum(u["end"] - u["start"] for u in units), unit="B", unit_scale=True, desc="split",
                  disable=not show_progress_bar) as bar:
            for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                for row in range(table.num_rows):
                    if table["error"][row].as_py():
                        raise DataError(table["error"][row].as_py())
                    unit = table["unit"][row].as_py()
                    keys = np.frombuffer(table["keys"][row].as_py(), np.uint8).reshape(-1, 16)
                    parts[unit] = (table["texts"][row].values, keys, table["chars"][row].values.to_numpy())
                    utf8 += table["utf8"][row].as_py()
                    bar.update(table["bytes"][row].as_py())
    if sorted(parts) != list(range(len(units))):  # never expected: Ray returns every unit or raises
        raise RuntimeError(f"split returned {len(parts)} of {len(units)} input ranges")
    ordered = [parts[u] for u in range(len(units))]
    texts = pa.chunked_array([p[0] for p in ordered], type=pa.string())
    keys = np.concatenate([p[1] for p in ordered]) if ordered else np.zeros((0, 16), np.uint8)
    chars = np.concatenate([p[2] for p in ordered]).astype(np.int64) if ordered else np.zeros(0, np.int64)
    return Pieces(texts, keys, chars, utf8)


# -- embed: whole cache chunks on an actor pool ------------------------------------------------------
def _embedder_spec(embedder: embed_mod.Embedder, device: str) -> dict[str, Any]:
    """What an actor needs to build the same encoder as `embedder`; makes sure the ONNX graph exists."""
    spec = {"model": embedder.model_name, "backend": embedder.backend, "device": device,
            "batch_size": embedder.batch_size, "onnx_path": None}
    if embedder.backend != "torch":
        path = Path(embedder.onnx_dir) / ("model-int8.onnx" if embedder.backend == "onnx-int8" else "model.onnx")
        if not path.exists():
            _ = embedder.model  # exported once, here, in a child process (as Embedder does); actors load it
        # Actors on other nodes cannot see this machine's per-user cache: they read one copy of the
        # graph in the artifacts cache, which every node mounts, so every node embeds with the same bytes.
        shared = embedder.cache.dir.parent / "onnx" / path.parent.name / path.name
        if not shared.exists():
            with atomic_write(shared) as f:
                f.write(path.read_bytes())
        spec["onnx_path"] = str(shared)
    return spec


class _EmbedActor:
    """Loads the embedder once; embeds each cache chunk it is given whole, as `Embedder._encode` does."""

    def __init__(self, spec: dict[str, Any], threads: int, crash_marker: str | None = None):
        self.batch_size, self.crash_marker = spec["batch_size"], crash_marker
        if spec["backend"] == "torch":
            import torch

            torch.set_num_threads(threads)
            self.model = embed_mod.load_sbert(spec["model"], embed_mod.resolve_device(spec["device"]))
        else:
            from .onnx_embed import OnnxEncoder

            self.model = OnnxEncoder(spec["onnx_path"], threads=threads)

    def __call__(self, batch: Any) -> dict[str, np.ndarray]:
        _crash_once(self.crash_marker)
        chunk = batch["chunk"].to_numpy()
        texts = batch["text"].to_pylist()
        out_chunk, out_i, out_vec = [], [], []
        for c in dict.fromkeys(chunk.tolist()):
            sel = np.flatnonzero(chunk == c)
            size = int(batch["size"][int(sel[0])].as_py())
            if len(sel) != size:  # a chunk split across batches would embed in other batches: refuse
                raise RuntimeError(f"cache chunk {c} arrived in pieces ({len(sel)} of {size} rows)")
            vecs = self.model.encode([texts[i] for i in sel], batch_size=self.batch_size,
                                     show_progress_bar=False, normalize_embeddings=True)
            out_chunk.append(np.full(len(sel), c, np.int64))
            out_i.append(batch["i"].to_numpy()[sel])
            out_vec.append(np.asarray(vecs, dtype=np.float32))
        return {"chunk": np.concatenate(out_chunk), "i": np.concatenate(out_i), "vec": np.concatenate(out_vec)}


def embed_chunks_on_ray(ray: Any, chunks: Sequence[Any], spec: dict[str, Any], cfg: dict[str, Any],
                        crash_marker: str | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(chunk number, vectors) for each chunk of texts (Arrow string arrays), in chunk order."""
    import pyarrow as pa

    if not chunks:
        return
    gpu = spec["backend"] == "torch" and (
        spec["device"] == "cuda" or (spec["device"] == "auto" and ray.cluster_resources().get("GPU", 0) > 0))
    compute, need, threads = _pool(ray, cfg, len(chunks), gpu)
    tables = [pa.table({"chunk": pa.array(np.full(len(t), c, np.int64)), "i": pa.array(np.arange(len(t))),
                        "size": pa.array(np.full(len(t), len(t), np.int64)), "text": t})
              for c, t in enumerate(chunks)]
    ds = ray.data.from_arrow(tables)  # one block per chunk, and map_batches(batch_size=None) keeps it whole
    ds = ds.map_batches(_EmbedActor, fn_constructor_args=(spec, threads, crash_marker), batch_size=None,
                        batch_format="pyarrow", compute=compute, **need)
    pending: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    have: dict[int, int] = {}
    nxt = 0
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for c in np.unique(batch["chunk"]).tolist():
            sel = batch["chunk"] == c
            pending.setdefault(c, []).append((batch["i"][sel], batch["vec"][sel]))
            have[c] = have.get(c, 0) + int(sel.sum())
        while nxt in have and have[nxt] == len(chunks[nxt]):  # complete: hand it on, in order
            idx = np.concatenate([p[0] for p in pending[nxt]])
            vecs = np.concatenate([p[1] for p in pending[nxt]])
            out = np.empty_like(vecs)
            out[idx] = vecs
            del pending[nxt], have[nxt]
            yield nxt, out
            nxt += 1
    if nxt != len(chunks):
        raise RuntimeError(f"Ray returned {nxt} of {len(chunks)} embedding chunks")


def embed_to_cache(texts: list[str], embedder: embed_mod.Embedder, cfg: dict[str, Any],
                   show_progress_bar: bool = False, crash_marker: str | None = None) -> int:
    """Embed on Ray what `embedder.cache` lacks of `texts`, appended to the cache from this process in
    the chunks `Embedder.encode` would write; returns how many were embedded. Afterwards
    `embedder.encode(texts)` reads them all from the cache, with the local path's vectors."""
    import pyarrow as pa
    from tqdm.auto import tqdm

    if embedder.cache is None:
        raise UsageError("embed_to_cache needs an Embedder with a cache folder")
    todo = embedder.cache.missing(texts)
    if not todo:
        return 0
    todo.sort(key=len)  # as Embedder.encode: shortest first, stable
    size = embed_mod.CACHE_CHUNK
    chunks = [pa.array(todo[i:i + size], pa.string()) for i in range(0, len(todo), size)]
    spec = _embedder_spec(embedder, embedder.device)
    with ray_session(cfg) as ray, _data_context(), \
            tqdm(total=len(todo), unit="sent", desc="embed (ray)", disable=not show_progress_bar,
                 smoothing=0.05) as bar:
        for c, vecs in embed_chunks_on_ray(ray, chunks, spec, cfg, crash_marker):
            embedder.cache.add(todo[c * size:(c + 1) * size], vecs)
            bar.update(len(vecs))
    return len(todo)


# -- encode: document-order blocks on an actor pool -------------------------------------------------
class _EncodeActor:
    """Loads the codec (model, dictionary, index) once; encodes blocks read from the cache files."""

    def __init__(self, artifacts_dir: str, cfg: dict[str, Any], files: list[str], starts: list[int],
                 rows: Any, threads: int, crash_marker: str | None = None):
        import faiss
        import torch

        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)
        self.codec = Codec.load(artifacts_dir, cfg)
        self.codec.dictionary  # noqa: B018  (loaded and checked once, not on the first block)
        import ray

        # rows: an ObjectRef (Ray Data builds the UDF inside its worker, so it is not resolved for us)
        self.files, self.starts, self.rows = files, np.asarray(starts, np.int64), ray.get(rows)
        self.crash_marker = crash_marker

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        _crash_once(self.crash_marker)
        blocks, counts, codes = [], [], []
        for b, start, end in zip(batch["block"], batch["start"], batch["end"]):
            c = self.codec.encode(read_rows(self.files, self.starts, self.rows[int(start):int(end)]))
            blocks.append(int(b))
            counts.append(len(c))
            codes.append(c.astype(np.uint16).tobytes())  # codes are < 2**16 (vqvae_num_embeddings)
        return {"block": np.array(blocks), "count": np.array(counts), "codes": np.array(codes, dtype=object)}


def block_size(cfg: dict[str, Any]) -> int:
    """Sentences per encode block and shard: ray_batch_size rounded up to whole encoder chunks."""
    return max(1, math.ceil(cfg["ray_batch_size"] / ENCODE_CHUNK)) * ENCODE_CHUNK


def _codec_embedder(codec: Any) -> embed_mod.Embedder:
    """An Embedder naming the cache and ONNX graph `codec.embed` uses, without loading a model or
    touching a GPU here: the device only matters to the actors that run it."""
    backend = codec.cfg["embed_backend"]
    if backend == "auto":  # an old manifest: resolve as Codec.embedder would, on this machine
        return codec.embedder
    return embed_mod.Embedder(codec.cfg["sbert_model"], "cpu", codec.dir / "cache",
                              codec.cfg["embed_batch_size"], backend=backend)


def compress_ray(codec: Any, input_path: str | Path, output: str | Path, cfg: dict[str, Any],
                 show_progress_bar: bool | None = None, range_bytes: int = RANGE_BYTES,
                 crash_markers: dict[str, str] | None = None) -> dict[str, Any]:
    """`Codec.compress_file` on Ray: the same codes, written as a folder of shards + manifest.

    `codec` is the driver's `Codec.load(cfg["artifacts_dir"], cfg)`; every encode actor loads the same.
    crash_markers ({"embed"|"encode": marker file}) is a test hook: the first call of that stage
    kills its worker, which Ray restarts and retries."""
    from tqdm.auto import tqdm

    require_ray()
    show = cfg["show_progress_bar"] if show_progress_bar is None else show_progress_bar
    crash = crash_markers or {}
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; --engine ray writes a folder of codes shards: pass -o FOLDER")
    files = input_files(input_path)
    embedder = _codec_embedder(codec)
    cache = embedder.cache
    bsize = block_size(cfg)
    t0 = time.perf_counter()
    with ray_session(cfg) as ray, _data_context():
        pieces = split_on_ray(ray, files, range_bytes, show)
        n = len(pieces)
        if not n:
            raise DataError(f"no text found in {input_path}")
        # Which pieces need embedding, in Embedder.encode's order: unique, not cached, shortest first.
        uniq, first, inverse = np.unique(pieces.keys.view("V16").ravel(), return_index=True, return_inverse=True)
        row = cache.lookup(k.tobytes() for k in uniq)  # chunks checked; a damaged one comes back -1
        todo = np.flatnonzero(row < 0)
        todo = todo[np.lexsort((first[todo], pieces.chars[first[todo]]))]  # by length, then first seen
        size = embed_mod.CACHE_CHUNK
        spec = _embedder_spec(embedder, codec.cfg["device"])
        chunks = [pieces.texts.take(first[todo[i:i + size]]).combine_chunks()
                  for i in range(0, len(todo), size)]
        with tqdm(total=len(todo), unit="sent", desc="embed (ray)", disable=not show, smoothing=0.05) as bar:
            for c, vecs in embed_chunks_on_ray(ray, chunks, spec, cfg, crash.get("embed")):
                base = cache.starts[-1]
                cache.add(chunks[c].to_pylist(), vecs)
                row[todo[c * size:(c + 1) * size]] = np.arange(base, base + len(vecs))
                bar.update(len(vecs))
        rows = row[inverse.ravel()]
        del chunks

        blocks = [{"block": b, "start": s, "end": min(n, s + bsize)} for b, s in enumerate(range(0, n, bsize))]
        compute, need, threads = _pool(ray, cfg, len(blocks), gpu=False)
        ds = ray.data.from_items(blocks, override_num_blocks=len(blocks))
        ds = ds.map_batches(_EncodeActor, batch_size=1, batch_format="numpy", compute=compute,
                            fn_constructor_args=(str(codec.dir), cfg, [f and str(f) for f in cache.files],
                                                 list(cache.starts), ray.put(rows), threads, crash.get("encode")),
                            **need)
        k, bits = codec.model.num_codebooks, codec.bits_per_code
        out.mkdir(parents=True, exist_ok=True)
        shards: dict[int, dict[str, Any]] = {}
        with tqdm(total=n, unit="sent", desc="encode (ray)", disable=not show, smoothing=0.05) as bar:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                if not shards:  # from the first new shard on, the old set (if any) is no longer whole
                    with contextlib.suppress(FileNotFoundError):
                        (out / SHARDS_MANIFEST).unlink()
                for b, count, raw in zip(batch["block"], batch["count"], batch["codes"]):
                    codes = np.frombuffer(raw, np.uint16).reshape(int(count), k).astype(np.int64)
                    shards[int(b)] = shard_entry(out, SHARD_NAME.format(int(b)), codes, bits, codec.fingerprint)
                    bar.update(int(count))
    if sorted(shards) != list(range(len(blocks))):
        raise RuntimeError(f"Ray returned {len(shards)} of {len(blocks)} code blocks")
    manifest = write_shards_manifest(out, [shards[b] for b in range(len(blocks))], codec.fingerprint, k, bits,
                                     engine="ray", input=str(input_path), seconds=round(time.perf_counter() - t0, 3))
    return {"sentences": n, "bytes": sum(s["bytes"] for s in manifest["shards"]), "utf8_bytes": pieces.utf8,
            "shards": len(blocks)}
