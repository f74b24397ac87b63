"""One command, one run: plain SBERT encode (the limit), the pipeline cold and warm, decode speed, memory.

    python bench/run.py --set data_dir=../shared/data/wikitext-2-raw      # writes docs/bench/run.{json,md}
    python bench/run.py --set data_dir=../shared/data/wikitext-2-raw --set sample_size=3000 --stem run-3k

first = a first run on the machine: empty artifacts folder and empty per-user cache, so the one-off
ONNX export (~9 s, overlapped with segmentation) is included. cold = empty artifacts folder, the
export already in the per-user cache (every later run on the machine, whatever its artifacts folder).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from semcomp import cli
from semcomp.util import cores

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb_children() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def pipeline(args: list[str], artifacts: Path, user_cache: Path) -> tuple[float, dict]:
    t = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "pipeline.py"), "-q", "--artifacts", str(artifacts), *args],
                   check=True, cwd=ROOT, env={**os.environ, "SEMCOMP_CACHE": str(user_cache)})
    return time.perf_counter() - t, json.loads((artifacts / "manifest.json").read_text())


def run() -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "bench"), help="folder for the report (default: docs/bench)")
    p.add_argument("--stem", default="run", help="report name: writes OUT/STEM.json and OUT/STEM.md (default: run)")
    args = p.parse_args()
    cfg = cli.config_from(args)
    # pipeline.py runs in the repository (cwd=ROOT), so paths given relative to the caller's folder
    # are made absolute first; the last --set of a key wins.
    sets = sum((["--set", s] for s in args.set), [])
    if cfg["data_dir"]:
        sets += ["--set", f"data_dir={Path(cfg['data_dir']).resolve()}"]
    if args.config:
        sets = ["--config", str(Path(args.config).resolve()), *sets]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        art, user = Path(tmp) / "artifacts", Path(tmp) / "user-cache"
        rows["pipeline_first_s"], _ = pipeline(sets, Path(tmp) / "first", user)
        cold_s, m = pipeline(sets, art, user)
        rows["pipeline_cold_s"] = cold_s
        rows.update({f"stage_{k}_s": v for k, v in m["seconds"].items()})
        warm_s, _ = pipeline(sets, art, user)
        rows["pipeline_warm_s"] = warm_s
        rows["peak_rss_mb"] = peak_rss_mb_children()

        # The limit: plain sentence-transformers encode of the same sentences, in a fresh process.
        code = ("import sys,time,json;from semcomp.embed import load_sbert;"
                "t=(art:=%r);s=open(t+'/dictionary.txt').read().split('\\n')+open(t+'/test.txt').read().split('\\n');"
                "m=load_sbert(%r,'cpu');t0=time.perf_counter();m.encode(s,batch_size=32);"
                "print(json.dumps({'n':len(s),'s':time.perf_counter()-t0}))") % (str(art), cfg["sbert_model"])
        plain = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                          check=True).stdout.strip().splitlines()[-1])
        rows["plain_encode_s"] = plain["s"]
        rows["sentences"] = plain["n"]

        from semcomp import Codec
        from semcomp.codes import read_codes

        codec = Codec.load(art)
        codes = read_codes(art / "test.scz").codes
        reps = max(1, 10000 // len(codes))
        big = codes[[i % len(codes) for i in range(len(codes) * reps)]]
        codec.search(codec.decode(big[:10]), 5)  # load the index once
        t = time.perf_counter()
        codec.search(codec.decode(big), 5)
        rows["decode_per_s"] = len(big) / (time.perf_counter() - t)
        t = time.perf_counter()
        codec.reconstruct(big, k=5)
        rows["decode_records_per_s"] = len(big) / (time.perf_counter() - t)

    rows["cold_over_plain"] = rows["pipeline_cold_s"] / rows["plain_encode_s"]
    rows["first_over_plain"] = rows["pipeline_first_s"] / rows["plain_encode_s"]
    rows["warm_over_cold"] = rows["pipeline_warm_s"] / rows["pipeline_cold_s"]
    targets = {
        "pipeline_cold_s <= 1.5 x plain_encode_s": rows["pipeline_cold_s"] <= 1.5 * rows["plain_encode_s"],
        "pipeline_warm_s <= 0.15 x pipeline_cold_s": rows["pipeline_warm_s"] <= 0.15 * rows["pipeline_cold_s"],
        "decode_per_s >= 5000": rows["decode_per_s"] >= 5000,
        "peak_rss_mb <= 2000": rows["peak_rss_mb"] <= 2000,
    }
    setup = {"embed_backend": m["config"]["embed_backend"], "cold": "empty artifacts folder (segmentation, "
             "embedding, training and index included; the ONNX export in the per-user cache); first = empty "
             "per-user cache too (the one-off export included)", "cpus": cores()}
    report = {"rows": rows, "targets": targets, "setup": setup}
    (out / f"{args.stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    md = [f"embed_backend {setup['embed_backend']}; cold = {setup['cold']}; {setup['cpus']} cores", "",
          "| measure | value |", "|---|---:|"] + [f"| {k} | {v:.2f} |" for k, v in rows.items()]
    md += ["", "| target | met |", "|---|---|"] + [f"| {k} | {'yes' if v else 'no'} |" for k, v in targets.items()]
    (out / f"{args.stem}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    cli.main(run)
