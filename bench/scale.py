"""Dictionaries past 100,000 sentences: index build time, search throughput, recall@10, memory.

    python bench/scale.py                      # writes docs/bench/scale.{json,md}

The embedding memmaps it builds (about 1.6 GB) stay in --work, git-ignored bench/results/scale.

Sizes (each measured in its own process, so peak RSS is per size):
  wiki-9k   the first 9,000 sentences of the tokenised WikiText-2 train split, the default index
  wiki      every sentence of that split (real embeddings, ~41k after cleaning and de-duplication)
  synth-200k, synth-1m  200,000 / 1,000,000 synthetic vectors: mixtures of two real embeddings
            plus noise, unit norm (separate files, so both are streamed)
Embeddings are streamed to .npy memmaps in chunks and the index is trained on a sample and filled
chunk by chunk (semcomp.index.build_index), so no size needs its vectors in memory. Queries: 1,000
sentences of the tokenised test split (never in any dictionary). recall@10: share of the exact
top 10 (brute force over the memmap) that the index's search (IVF/PQ candidates re-ranked by exact
cosine, as decode.py does) returns.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from semcomp.data import local_split_paths, split_sentences
from semcomp.embed import Embedder
from semcomp.index import build_index, search

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT.parent / "shared" / "data" / "wikitext-2"
CHUNK = 65_536
# size -> (rows or None for all, index factory, nprobe values to measure)
SIZES = {
    "wiki-9k": (9_000, "OPQ16,PQ16", [1]),
    "wiki": (None, "OPQ16,IVF1024,PQ16", [8, 64]),
    "synth-200k": (200_000, "OPQ16,IVF2048,PQ16", [16, 64]),
    "synth-1m": (1_000_000, "OPQ16,IVF4096,PQ16", [16, 64]),
}


def write_rows(path: Path, start: int, rows: np.ndarray) -> None:
    """Write rows into an .npy memmap mapped for this write only, so RSS holds one chunk."""
    mm = np.load(path, mmap_mode="r+")
    mm[start:start + len(rows)] = rows
    mm.flush()
    del mm


def peak_rss_mb() -> float:
    """This process's own high-water RSS (ru_maxrss would carry the parent's over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def embed_to_memmap(sentences: list[str], path: Path, backend: str, batch: int = 4096) -> np.ndarray:
    """Embeddings written chunk by chunk into an .npy memmap (kept: later runs reuse it)."""
    if path.exists():
        return np.load(path, mmap_mode="r")
    emb = Embedder(batch_size=32, backend=backend)
    tmp = path.with_suffix(".part.npy")
    np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(sentences), 384)).flush()
    for i in range(0, len(sentences), batch):
        write_rows(tmp, i, emb.encode(sentences[i:i + batch]))
        print(f"  embedded {min(i + batch, len(sentences))}/{len(sentences)}", flush=True)
    tmp.replace(path)
    return np.load(path, mmap_mode="r")


def synthesize(base: np.ndarray, n: int, path: Path, seed: int = 0) -> np.ndarray:
    """n vectors e_i + 0.6 e_j + noise (unit norm), streamed; the real ones give them their shape."""
    if path.exists():
        return np.load(path, mmap_mode="r")
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".part.npy")
    np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, base.shape[1])).flush()
    for i in range(0, n, CHUNK):
        m = min(CHUNK, n - i)
        x = base[rng.integers(0, len(base), m)] + 0.6 * base[rng.integers(0, len(base), m)]
        x += 0.02 * rng.standard_normal(x.shape, dtype=np.float32)
        write_rows(tmp, i, x / np.linalg.norm(x, axis=1, keepdims=True))
    tmp.replace(path)
    return np.load(path, mmap_mode="r")


def exact_top(dict_path: Path, n: int, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Brute-force top-k ids, one chunk of the memmap at a time."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.zeros((len(queries), k), np.int64)
    for i in range(0, n, CHUNK):
        mm = np.load(dict_path, mmap_mode="r")
        s = queries @ np.asarray(mm[i:min(i + CHUNK, n)]).T
        del mm
        top = np.argpartition(-s, k, axis=1)[:, :k] if s.shape[1] > k else np.arange(s.shape[1])[None].repeat(len(s), 0)
        cat_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1)
        cat_i = np.concatenate([best_i, top + i], 1)
        keep = np.argpartition(-cat_s, k, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cat_s, keep, 1), np.take_along_axis(cat_i, keep, 1)
    return best_i


def prepare(work: Path, backend: str) -> None:
    """Sentences and embeddings every size reads: tokenised train (dictionary) and test (queries)."""
    work.mkdir(parents=True, exist_ok=True)
    for split, cap in (("train", None), ("test", 1000)):
        path = work / f"{split}.npy"
        if path.exists():
            continue
        t = time.perf_counter()
        lines = local_split_paths(DATA, "wikitext-2-v1", split)[0].read_text(encoding="utf-8").splitlines()
        sents = split_sentences(lines)[:cap]
        print(f"{split}: {len(sents)} sentences ({time.perf_counter() - t:.0f} s to segment)", flush=True)
        t = time.perf_counter()
        embed_to_memmap(sents, path, backend)
        (work / f"{split}.seconds").write_text(f"{time.perf_counter() - t:.1f}")
    for i, size in enumerate(("synth-200k", "synth-1m")):
        synthesize(np.load(work / "train.npy"), SIZES[size][0], work / f"{size}.npy", seed=i)


def one(size: str, work: Path, candidates: int) -> dict:
    rows, factory, nprobes = SIZES[size]
    path = work / (f"{size}.npy" if size.startswith("synth") else "train.npy")
    full = np.load(path, mmap_mode="r")
    n = rows or len(full)
    emb = full[:n]  # what the re-rank reads (pages in as touched)
    queries = np.ascontiguousarray(np.load(work / "test.npy"))
    t = time.perf_counter()
    # the whole file streams from disk; a prefix (the 9k size) is small enough to copy
    index = build_index(path if n == len(full) else np.array(emb), factory)
    build_s = time.perf_counter() - t
    truth = exact_top(path, n, queries)
    out = {"size": size, "vectors": n, "factory": factory, "build_s": round(build_s, 1),
           "index_mb": round(index.sa_code_size() * n / 2**20 if hasattr(index, "sa_code_size") else 0, 1),
           "search": []}
    for nprobe in nprobes:
        for cands in sorted({candidates, 8 * candidates}):
            search(index, emb, queries, 10, cands, nprobe)  # warm-up: pages in what the re-rank reads
            times = []
            for _ in range(3):  # best of three: the machine's other load only ever adds time
                t = time.perf_counter()
                ids, _ = search(index, emb, queries, 10, cands, nprobe)
                times.append(time.perf_counter() - t)
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth)])
            out["search"].append({"nprobe": nprobe, "candidates": cands, "queries_per_s": round(len(queries) / min(times)),
                                  "recall_at_10": round(float(recall), 3)})
    out["peak_rss_mb"] = round(peak_rss_mb())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "scale",
                    help="where the embedding memmaps go (about 1.6 GB; reused by later runs)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench",
                    help="folder for scale.json and scale.md (default: docs/bench)")
    ap.add_argument("--sizes", default=",".join(SIZES), help="comma-separated subset of " + ", ".join(SIZES))
    ap.add_argument("--backend", default="onnx-int8", help="embedding runtime for the real sentences")
    ap.add_argument("--candidates", type=int, default=32, help="index candidates re-ranked exactly (search_k)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one size in this process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.work, args.candidates)))
        return 0
    prepare(args.work, args.backend)
    results = []
    for size in args.sizes.split(","):
        done = subprocess.run([sys.executable, __file__, "--one", size, "--work", str(args.work),
                               "--candidates", str(args.candidates)], capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    md = ["| dictionary | vectors | index | build s | nprobe | re-ranked | queries/s | recall@10 | peak RSS MB |",
          "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for s in r["search"]:
            md.append(f"| {r['size']} | {r['vectors']:,} | {r['factory']} | {r['build_s']} | {s['nprobe']} | {s['candidates']} | "
                      f"{s['queries_per_s']:,} | {s['recall_at_10']:.3f} | {r['peak_rss_mb']:,} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "scale.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
