"""Throughput of `pipeline.py --compress ... --engine ray` against `--engine local` on this machine.

    python bench/ray_bench.py artifacts-general                 # 100k sentences of diverse-en train
    python bench/ray_bench.py artifacts-general --n 10000       # a quicker look

Each engine runs the real command (`pipeline.py -q --compress TEXT -o OUT --engine E`) on the first N
lines of the source (one sentence a line), against its own view of the artifacts folder: links to
the trained files and a fresh, empty embedding cache (the ONNX graph is shared), so both embed every
sentence. Wall time includes what a user waits for: Python start, model loads and, for Ray, starting
a local Ray. The codes of the two runs are compared. Writes docs/bench/ray_bench.json (--out) and
a markdown table beside it (.md); give each run its own --out to keep its report.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from semcomp.util import cores

ROOT = Path(__file__).resolve().parents[1]


def artifacts_view(src: Path, dst: Path) -> Path:
    """dst/: a link to every file of src, and a cache/ holding only a link to src's ONNX graph."""
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.is_file():
            (dst / p.name).symlink_to(p.resolve())
    (dst / "cache").mkdir()
    if (src / "cache" / "onnx").is_dir():
        (dst / "cache" / "onnx").symlink_to((src / "cache" / "onnx").resolve())
    return dst


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", help="a trained artifacts folder (e.g. artifacts-general)")
    ap.add_argument("--n", type=int, default=100_000, help="sentences (source lines) to compress")
    ap.add_argument("--source", default=str(ROOT.parent / "shared" / "data" / "diverse-en" / "train.txt"))
    ap.add_argument("--engines", default="local,ray")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config overrides for both runs (e.g. ray_actors=2)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench" / "ray_bench.json"),
                    help="results file; the markdown table goes beside it, as .md "
                         "(default: docs/bench/ray_bench.json)")
    args = ap.parse_args()

    from semcomp.codes import read_codes
    from semcomp.codes import read_sharded_codes

    lines = Path(args.source).read_text(encoding="utf-8").splitlines()[: args.n]
    result = {"n_lines": len(lines), "source": args.source, "artifacts": args.artifacts, "sets": args.set,
              "machine": {"cores": cores(), "python": platform.python_version()}, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp:
        text = Path(tmp) / "input.txt"
        text.write_text("\n".join(lines) + "\n", encoding="utf-8")
        codes = {}
        for engine in args.engines.split(","):
            view = artifacts_view(Path(args.artifacts), Path(tmp) / f"artifacts-{engine}")
            out = Path(tmp) / f"out-{engine}.scz"
            cmd = [sys.executable, str(ROOT / "pipeline.py"), "-q", "--artifacts", str(view), "--compress",
                   str(text), "-o", str(out), "--engine", engine] + sum((["--set", s] for s in args.set), [])
            before = load()
            t = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=ROOT)
            seconds = time.perf_counter() - t
            codes[engine] = (read_sharded_codes(out) if out.is_dir() else read_codes(out)).codes
            n = len(codes[engine])
            result["runs"][engine] = {"seconds": round(seconds, 2), "sentences": n,
                                      "sentences_per_s": round(n / seconds, 1),
                                      "load_before": before, "load_after": load()}
            print(f"{engine:>5}: {n} sentences in {seconds:.1f} s = {n / seconds:.1f} sentences/s "
                  f"(load average before {before[0]}, after {load()[0]})", flush=True)
        if len(codes) == 2:
            a, b = codes.values()
            result["identical_codes"] = bool(a.shape == b.shape and (a == b).all())
            runs = list(result["runs"].values())
            result["ratio_second_to_first"] = round(runs[1]["sentences_per_s"] / runs[0]["sentences_per_s"], 3)
            print(f"identical codes: {result['identical_codes']}; "
                  f"{args.engines.split(',')[1]} / {args.engines.split(',')[0]} throughput: "
                  f"{result['ratio_second_to_first']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    md = [f"{result['n_lines']} lines of {Path(args.source).name}, artifacts {args.artifacts}, {cores()} cores"
          + (f", --set {' '.join(args.set)}" if args.set else ""), "",
          "| engine | sentences | seconds | sentences/s | load before | load after |", "|---|---:|---:|---:|---|---|"]
    md += [f"| {e} | {r['sentences']:,} | {r['seconds']} | {r['sentences_per_s']} | {r['load_before']} | "
           f"{r['load_after']} |" for e, r in result["runs"].items()]
    if "identical_codes" in result:
        md += ["", f"identical codes: {'yes' if result['identical_codes'] else 'no'}; "
                   f"second / first throughput: {result['ratio_second_to_first']}"]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(f"-> {out} and its .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
