"""Dictionaries past 100,000 sentences: index build time, search throughput, recall@10, memory.

    python bench/scale.py                      # writes bench/results/scale.{json,md}

Sizes (each measured in its own process, so peak RSS is per size):
  wiki-9k   the first 9,000 sentences of the tokenised WikiText-2 train split, the default index
  wiki      every sentence of that split (real embeddings, ~41k after cleaning and de-duplication)
  synth-1m  1,000,000 synthetic vectors: mixtures of two real embeddings plus noise, unit norm
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from semcomp.data import local_split_paths, split_sentences  # noqa: E402
from semcomp.embed import Embedder  # noqa: E402
from semcomp.index import build_index, search  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "wikitext-2"
CHUNK = 65_536
# size -> (rows or None for all, index factory, nprobe values to measure)
SIZES = {
    "wiki-9k": (9_000, "OPQ16,PQ16", [1]),
    "wiki": (None, "OPQ16,IVF1024,PQ16", [8, 32]),
    "synth-1m": (1_000_000, "OPQ16,IVF4096,PQ16", [16, 64]),
}


def embed_to_memmap(sentences: list[str], path: Path, backend: str, batch: int = 4096) -> np.ndarray:
    """Embeddings written chunk by chunk into an .npy memmap (kept: later runs reuse it)."""
    if path.exists():
        return np.load(path, mmap_mode="r")
    emb = Embedder(batch_size=32, backend=backend)
    tmp = path.with_suffix(".part.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(sentences), 384))
    for i in range(0, len(sentences), batch):
        out[i:i + batch] = emb.encode(sentences[i:i + batch])
        print(f"  embedded {min(i + batch, len(sentences))}/{len(sentences)}", flush=True)
    out.flush()
    del out
    tmp.replace(path)
    return np.load(path, mmap_mode="r")


def synthesize(base: np.ndarray, n: int, path: Path, seed: int = 0) -> np.ndarray:
    """n vectors e_i + 0.6 e_j + noise (unit norm), streamed; the real ones give them their shape."""
    if path.exists():
        return np.load(path, mmap_mode="r")
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".part.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, base.shape[1]))
    for i in range(0, n, CHUNK):
        m = min(CHUNK, n - i)
        x = base[rng.integers(0, len(base), m)] + 0.6 * base[rng.integers(0, len(base), m)]
        x += 0.02 * rng.standard_normal(x.shape, dtype=np.float32)
        out[i:i + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    out.flush()
    del out
    tmp.replace(path)
    return np.load(path, mmap_mode="r")


def exact_top(dict_path: Path, n: int, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Brute-force top-k ids, one chunk of the memmap at a time."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.zeros((len(queries), k), np.int64)
    for i in range(0, n, CHUNK):
        chunk = np.asarray(np.load(dict_path, mmap_mode="r")[i:min(i + CHUNK, n)])
        s = queries @ chunk.T
        cat_s = np.concatenate([best_s, s], 1)
        cat_i = np.concatenate([best_i, np.arange(i, i + len(chunk))[None].repeat(len(queries), 0)], 1)
        top = np.argpartition(-cat_s, k, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cat_s, top, 1), np.take_along_axis(cat_i, top, 1)
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
    synthesize(np.load(work / "train.npy"), SIZES["synth-1m"][0], work / "synth-1m.npy")


def one(size: str, work: Path, candidates: int) -> dict:
    rows, factory, nprobes = SIZES[size]
    path = work / ("synth-1m.npy" if size == "synth-1m" else "train.npy")
    emb = np.load(path, mmap_mode="r")
    n = rows or len(emb)
    emb = emb[:n]
    queries = np.ascontiguousarray(np.load(work / "test.npy"))
    t = time.perf_counter()
    index = build_index(emb, factory)
    build_s = time.perf_counter() - t
    truth = exact_top(path, n, queries)
    out = {"size": size, "vectors": n, "factory": factory, "build_s": round(build_s, 1),
           "index_mb": round(index.sa_code_size() * n / 2**20 if hasattr(index, "sa_code_size") else 0, 1),
           "search": []}
    for nprobe in nprobes:
        search(index, emb, queries[:10], 10, candidates, nprobe)  # warm-up
        t = time.perf_counter()
        ids, _ = search(index, emb, queries, 10, candidates, nprobe)
        qps = len(queries) / (time.perf_counter() - t)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth)])
        out["search"].append({"nprobe": nprobe, "queries_per_s": round(qps), "recall_at_10": round(float(recall), 3)})
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "scale",
                    help="where the embedding memmaps go (about 1.6 GB; reused by later runs)")
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
    md = ["| dictionary | vectors | index | build s | nprobe | queries/s | recall@10 | peak RSS MB |",
          "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in results:
        for s in r["search"]:
            md.append(f"| {r['size']} | {r['vectors']:,} | {r['factory']} | {r['build_s']} | {s['nprobe']} | "
                      f"{s['queries_per_s']:,} | {s['recall_at_10']:.3f} | {r['peak_rss_mb']:,} |")
    res = ROOT / "bench" / "results"
    (res / "scale.json").write_text(json.dumps(results, indent=2))
    (res / "scale.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
