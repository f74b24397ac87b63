"""The general codec's build, measured: stage times, peak memory, disk, decode speed over the full dictionary.

    python bench/general.py                 # pipeline.py --config configs/general.json, then the figures
    python bench/general.py --evaluate      # and decode.py + evaluate.py at 72 bits (baselines trained once, cached)
    python bench/general.py --cold          # retrain the quantiser and rebuild the index first

Writes docs/bench/general.{json,md} (--out). The embedding cache in the config's artifacts folder is
kept between runs (a first run embeds ~286k sentences: ~15-25 min on 2 cores), so the embed stage
is near zero on a re-run; the trained quantiser and the index are cached too, so a re-run without
--cold only loads them.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def du_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def run() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "general.json"))
    p.add_argument("--evaluate", action="store_true", help="also run evaluate.py (and decode.py before it)")
    p.add_argument("--skip-build", action="store_true", help="measure the artifacts already built")
    p.add_argument("--cold", action="store_true",
                   help="drop the cached quantiser and index first, so the build trains and indexes (embeddings stay cached)")
    p.add_argument("--baselines", default="pq,opq,rq", help="evaluate.py's baselines (lsq: 25 min to train, then cached)")
    p.add_argument("--out", default=str(ROOT / "docs" / "bench"),
                   help="folder for general.json and general.md (default: docs/bench)")
    args = p.parse_args()
    from semcomp.config import load_config

    cfg = load_config(args.config)
    art = ROOT / cfg["artifacts_dir"]
    rows: dict[str, float] = {}
    if args.cold:
        for old in [*(art / "cache").glob("model-*"), *(art / "cache").glob("index-*.faiss")]:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    if not args.skip_build:
        t = time.perf_counter()
        subprocess.run([sys.executable, "pipeline.py", "--config", args.config], check=True, cwd=ROOT)
        rows["pipeline_s"] = time.perf_counter() - t
        rows["pipeline_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    m = json.loads((art / "manifest.json").read_text())
    rows.update({f"stage_{k}_s": v for k, v in m["seconds"].items()})
    rows["dictionary"] = m["counts"]["dictionary"]
    rows["artifacts_mb"] = du_mb(art) - du_mb(art / "cache")
    rows["cache_mb"] = du_mb(art / "cache")
    rows["index_recall_at_10"] = m["index"]["recall_at_10"]
    rows["index_effort"] = m["index"].get("effort", m["index"].get("nprobe")) or 0

    # Similarity decoding of diverse-en test codes against the whole dictionary, after loading.
    from semcomp import Codec
    from semcomp.data import read_diverse_en

    codec = Codec.load(art)
    texts, _ = read_diverse_en(ROOT / cfg["eval_sources"][0]["path"], "test")
    codes = codec.encode(codec.embed(texts[:10000]), closed_loop=False)
    codec.search(codec.decode(codes[:100]), 1)  # load the dictionary and index
    t = time.perf_counter()
    codec.search(codec.decode(codes), 5)
    rows["decode_per_s"] = len(codes) / (time.perf_counter() - t)
    t = time.perf_counter()
    codec.encode(codec.embed(texts[:2000]))
    rows["closed_loop_encode_per_s"] = 2000 / (time.perf_counter() - t)  # embeddings cached: encoding only

    if args.evaluate:
        for script in (["decode.py", "-q"], ["evaluate.py", "-q", "--sweep", "", "--baselines", args.baselines]):
            t = time.perf_counter()
            subprocess.run([sys.executable, *script, "--config", args.config], check=True, cwd=ROOT)
            rows[f"{script[0].removesuffix('.py')}_s"] = time.perf_counter() - t
        r = json.loads((art / "metrics.json").read_text())
        e = r["embedding"]
        for name, s in e["sets"].items():
            rows[f"{name}_cosine"] = s["cosine"]
            rows[f"{name}_recall_at_10"] = s["recall_at_10"]
            rows[f"{name}_similarity_share_of_ceiling"] = r["similarity_decoding"][name]["share_of_ceiling"]
        rows["stsb_spearman"] = e["stsb_spearman"]
        rows["stsb_kept"] = e["stsb_spearman"] / e["stsb_spearman_uncompressed"]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "general.json").write_text(json.dumps(rows, indent=2) + "\n")
    md = ["| measure | value |", "|---|---:|"] + [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |"
                                              for k, v in rows.items()]
    (out / "general.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(run())
