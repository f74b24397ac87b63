"""Torch vs ONNX Runtime (fp32, int8 recipes) for all-MiniLM-L6-v2: throughput and cosine vs torch.

One command: exports every ONNX variant into --out, embeds the same fixed sample of WikiText-2
validation sentences with each backend, repeats interleaved (order rotated every round, so load
drift on a shared machine hits all backends alike), reports the median time, prints a markdown
table and writes it with the JSON results to docs/bench/onnx_embed.{json,md} (--json; the .md
beside it). Calibration sentences for the static recipe come from the test split, so they are
disjoint from the measured ones.

    python bench/onnx_embed.py --out artifacts/onnx --n 2000 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from semcomp import onnx_embed as oe
from semcomp.artifacts import write_json
from semcomp.data import split_sentences
from semcomp.embed import DEFAULT_MODEL, load_sbert

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "wikitext-2-raw"

# name -> what it is, for the table and the JSON.
RECIPES = {
    "torch": "sentence-transformers encode (PyTorch CPU)",
    "onnx-fp32": "torch.onnx.export(dynamo=False) + ORT BERT fusion",
    "int8-plain": "quantize_dynamic, per-tensor, every weight",
    "int8-per-channel": "quantize_dynamic, per-channel, every weight",
    "int8-best": "quantize_dynamic, per-channel, layer-0 FFN out in fp32 (export_onnx default)",
    "int8-static": "quantize_static QDQ MinMax, per-channel, FFN outs in fp32, calibrated",
}


def sentences(data_dir: Path, split: str, n: int, seed: int) -> list[str]:
    lines = (data_dir / f"wiki.{split}.raw").read_text(encoding="utf-8").splitlines()
    sents = split_sentences(lines)
    return random.Random(seed).sample(sents, min(n, len(sents)))


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def build(out: Path, calib: list[str], which: list[str]) -> dict[str, tuple[Path, float]]:
    """Each ONNX variant and the seconds its build took (each from scratch: torch export included)."""
    built: dict[str, tuple[Path, float]] = {}
    fp32, secs = timed(lambda: oe.export_onnx(out / "model.onnx"))
    built["onnx-fp32"] = (fp32, secs)  # type: ignore[assignment]
    if "int8-best" in which:
        p, secs = timed(lambda: oe.export_onnx(out / "model-int8.onnx", quantize=True))
        built["int8-best"] = (p, secs)  # type: ignore[assignment]
    # The reference recipes quantize the fused fp32 graph just built; their time excludes its export.
    for name, per_channel in (("int8-plain", False), ("int8-per-channel", True)):
        if name in which:
            p = out / f"model-{name}.onnx"
            _, secs = timed(lambda: oe._quantize_dynamic(fp32, p, per_channel=per_channel, exclude=[]))
            built[name] = (p, secs)
    if "int8-static" in which:
        p, secs = timed(lambda: oe.export_onnx(out / "model-int8-static.onnx", quantize=True,
                                               calibration_texts=calib))
        built["int8-static"] = (p, secs)  # type: ignore[assignment]
    return built


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "onnx",
                    help="folder for the exported .onnx files")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="folder with wiki.valid.raw and wiki.test.raw")
    ap.add_argument("--n", type=int, default=2000, help="measured sentences (validation split)")
    ap.add_argument("--calib-n", type=int, default=200, help="calibration sentences (test split) for int8-static")
    ap.add_argument("--seed", type=int, default=0, help="random.Random seed of both samples")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds per backend; the median is reported")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="ORT intra-op threads; default: the usable cores")
    ap.add_argument("--backends", default=",".join(RECIPES),
                    help=f"comma-separated subset of: {', '.join(RECIPES)} (torch is always run: it is the reference)")
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "bench" / "onnx_embed.json",
                    help="results file; the markdown table goes beside it, as .md")
    args = ap.parse_args(argv)
    which = [b for b in args.backends.split(",") if b]
    bad = [b for b in which if b not in RECIPES]
    if bad:
        ap.error(f"unknown backend(s) {bad}; choose from {list(RECIPES)}")
    which = ["torch"] + [b for b in RECIPES if b in which and b != "torch"]

    texts = sentences(args.data_dir, "valid", args.n, args.seed)
    calib = sentences(args.data_dir, "test", args.calib_n, args.seed)
    overlap = len(set(texts) & set(calib))
    print(f"{len(texts)} measured sentences (valid), {len(calib)} calibration (test), overlap {overlap}",
          file=sys.stderr)

    built = build(args.out, calib, which)
    import onnxruntime
    import torch

    model = load_sbert(DEFAULT_MODEL, "cpu")
    encoders: dict[str, Callable[[list[str]], np.ndarray]] = {
        "torch": lambda t: np.asarray(model.encode(t, batch_size=args.batch_size, normalize_embeddings=True,
                                                   convert_to_numpy=True), np.float32)}
    for name in which[1:]:
        enc = oe.OnnxEncoder(built[name][0], threads=args.threads)
        encoders[name] = lambda t, enc=enc: enc.encode(t, batch_size=args.batch_size)
    for fn in encoders.values():  # warm-up: first-call allocations and thread pools
        fn(texts[:64])

    load_before = os.getloadavg()
    times: dict[str, list[float]] = {k: [] for k in encoders}
    vecs: dict[str, np.ndarray] = {}
    names = list(encoders)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            v, secs = timed(lambda: encoders[name](texts))
            times[name].append(secs)
            vecs.setdefault(name, v)  # type: ignore[arg-type]
            print(f"round {r + 1}/{args.repeats} {name}: {secs:.1f}s", file=sys.stderr, flush=True)
    load_after = os.getloadavg()

    ref = vecs["torch"]
    t_torch = statistics.median(times["torch"])
    rows = []
    for name in names:
        cos = (vecs[name] * ref).sum(axis=1)
        med = statistics.median(times[name])
        path = built.get(name, (None, None))[0]
        rows.append({
            "backend": name, "recipe": RECIPES[name],
            "file": Path(path).name if path else None,  # no machine paths in a committed report
            "file_mb": round(Path(path).stat().st_size / 2**20, 1) if path else None,
            "build_s": round(built[name][1], 1) if name in built else None,
            "sentences_per_s": round(len(texts) / med, 1), "speedup": round(t_torch / med, 2),
            "cos_mean": round(float(cos.mean()), 4), "cos_p1": round(float(np.percentile(cos, 1)), 4),
            "cos_worst": round(float(cos.min()), 4),
            "norm_max_dev": round(float(np.abs(np.linalg.norm(vecs[name], axis=1) - 1).max()), 6),
            "times_s": [round(t, 2) for t in times[name]],
        })

    md = ["| backend | recipe | MB | build s | sent/s | speed-up | mean cos | p1 cos | worst cos |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        md.append(f"| {row['backend']} | {row['recipe']} | {row['file_mb'] or '-'} | {row['build_s'] or '-'} | "
                  f"{row['sentences_per_s']} | {row['speedup']:.2f}x | {row['cos_mean']:.4f} | "
                  f"{row['cos_p1']:.4f} | {row['cos_worst']:.4f} |")
    print("\n".join(md))
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "n_sentences": len(texts), "n_calibration": len(calib), "calibration_overlap": overlap,
        "seed": args.seed, "repeats": args.repeats, "batch_size": args.batch_size,
        "ort_threads": args.threads or oe.cores(), "torch_threads": torch.get_num_threads(),
        "loadavg_before": load_before, "loadavg_after": load_after,
        "versions": {"onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "rows": rows,
    }
    write_json(args.json, result)
    note = f"`{result['command']}`: {len(texts)} sentences, median of {args.repeats} rounds\n\n"
    args.json.with_suffix(".md").write_text(note + "\n".join(md) + "\n")
    print(f"\nwrote {args.json} and its .md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
