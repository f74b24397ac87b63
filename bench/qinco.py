"""QINCo against FAISS RQ and LSQ at the same bits, trained on the same general-codec vectors.

    python pipeline.py --config configs/general.json          # once: embeddings, dictionary, held-out
    python bench/qinco.py --bits 64,72,128                    # ~15 min QINCo + ~25 min LSQ a size, cold
    python bench/qinco.py --bits 128 --out docs/bench/qinco-128   # a report of its own

Training vectors: the general build's dictionary (every diverse-en train sentence plus WikiText
train, ~285k). Scored on what evaluate.py scores: WikiText held-out, diverse-en test (minus any
sentence in the dictionary), STS-B dev Spearman, and recall@10 of the decoded vector's neighbours
among the dictionary against the original's (first 2,000 queries of each set). Codes here are
the quantisers' own least-distortion codes (no closed loop), for every method alike.

RQ and LSQ come from the same cache evaluate.py uses (trained once per vectors, kind, bits, seed);
QINCo models are cached where pipeline.py caches its model, so a pipeline run with the same
settings (`--set quantizer=qinco`) reuses the one trained here. Timings use the machine's threads
as the product does; run nothing else meanwhile. Writes docs/bench/qinco.{json,md} (--out); rows of
an earlier run into the same report are kept unless this run measures the same method, bits, training
vectors and epochs again.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the scripts: torch and FAISS bring their own threads

import argparse  # noqa: E402  (below: numpy must load after the BLAS setting)
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from semcomp import Codec, baselines, metrics  # noqa: E402
from semcomp.config import load_config  # noqa: E402
from semcomp.evaluation import eval_sets  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

SHAPES = {64: (8, 256), 72: (8, 512), 128: (16, 256)}  # bits -> codebooks x entries


def rate(fn, arg, reps: int = 1) -> tuple[float, np.ndarray]:
    """Rows a second of fn(arg), best of reps, and its output."""
    best, out = float("inf"), None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn(arg)
        best = min(best, time.perf_counter() - t)
    return len(arg) / best, out


def qinco_model(cfg: dict, dict_e: np.ndarray, bits: int, cache: Path):
    """Trained with cfg's qinco_* keys at `bits`, or loaded from where pipeline.py caches the same run."""
    from semcomp.build import trained_model

    k, n = SHAPES[bits]
    cfg = {**cfg, "quantizer": "qinco", "vqvae_num_codebooks": k, "vqvae_num_embeddings": n}
    model, history, _ = trained_model(cfg, dict_e, cache, lambda r: print(
        f"  epoch {r['epoch']} mse {r['mse']:.4f} {r['seconds']:.0f} s", flush=True))
    return model, history


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "general.json"))
    ap.add_argument("--bits", default="72", help="comma-separated, of 64, 72, 128")
    ap.add_argument("--methods", default="rq,lsq,qinco")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides (qinco_*)")
    ap.add_argument("--stsb", default=str(ROOT.parent / "shared" / "data" / "stsb" / "sts-dev.csv"))
    ap.add_argument("--train-sample", type=int, default=None, metavar="N",
                    help="train every method on a seeded sample of N training vectors (data scaling); "
                         "recall is still against the whole dictionary")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench" / "qinco"),
                    help="report path without suffix: writes OUT.json and OUT.md (default: docs/bench/qinco)")
    args = ap.parse_args()

    cfg = load_config(args.config, [*args.set, "show_progress_bar=true"])
    art = ROOT / cfg["artifacts_dir"]
    codec = Codec.load(art, cfg)
    dict_texts, dict_e, _ = codec.dictionary
    dict_e = np.ascontiguousarray(dict_e)
    sets = {name: s["emb"] for name, s in eval_sets(codec, cfg, art, dict_texts).items()}
    sets = {("wikitext held-out" if name == "held-out" else name): e for name, e in sets.items()}
    truths = {name: metrics.exact_topk(dict_e, e[:2000], 10) for name, e in sets.items()}
    stsb = None
    if Path(args.stsb).exists():
        s1, s2, gold = metrics.load_stsb(Path(args.stsb))
        stsb = codec.embed(s1), codec.embed(s2), gold
    train_e = dict_e
    if args.train_sample and args.train_sample < len(dict_e):
        pick = np.sort(np.random.default_rng(cfg["seed"]).choice(len(dict_e), args.train_sample, replace=False))
        train_e = np.ascontiguousarray(dict_e[pick])
    print(f"training vectors {len(train_e)} of {len(dict_e)}; " + ", ".join(f"{k} {len(v)}" for k, v in sets.items()), flush=True)

    rows = []
    for bits in map(int, args.bits.split(",")):
        for method in args.methods.split(","):
            t = time.perf_counter()
            if method == "qinco":
                model, hist = qinco_model(cfg, train_e, bits, art / "cache")
                encode, decode = model.encode, model.decode
                train_s, extra = hist[-1]["seconds"], {"epochs": len(hist)}
            else:
                q = baselines.faiss_baseline(method, bits, train_e, cfg["seed"], art / "cache" / "baselines",
                                              train_beam=cfg["vqvae_train_beam"])
                encode, decode, extra = q.encode, q.decode, {}
                train_s = None  # ready_s is the training time on a cold cache, a load after
            load_s = time.perf_counter() - t
            row = {"method": method, "bits": bits, "train_vectors": len(train_e), "ready_s": round(load_s, 1),
                   "train_s": train_s, **extra}
            probe = next(iter(sets.values()))
            row["encode_per_s"], codes = rate(encode, probe)
            row["decode_per_s"], _ = rate(decode, codes, reps=3)
            for name, e in sets.items():
                dec = decode(encode(e))
                row[f"cosine {name}"] = float(metrics.rowwise_cosine(dec, e).mean())
                row[f"recall@10 {name}"] = metrics.recall(truths[name], metrics.exact_topk(dict_e, dec[:2000], 10))
            if stsb:
                s1, s2, gold = stsb
                row["stsb"] = metrics.spearman(decode(encode(s1)), decode(encode(s2)), gold)
            print(json.dumps(row), flush=True)
            rows.append(row)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else []
    def key(r: dict) -> tuple:  # rows written before train_vectors was recorded trained on everything
        return r["method"], r["bits"], r.get("train_vectors", len(dict_e)), r.get("epochs")

    keep = [r for r in old if key(r) not in {key(r2) for r2 in rows}]
    allrows = sorted(keep + rows, key=lambda r: (r["bits"], r["method"]))
    out.with_suffix(".json").write_text(json.dumps(allrows, indent=1) + "\n")
    cols = list(dict.fromkeys(c for r in allrows for c in r if c not in ("method", "bits")))
    lines = ["| bits | method | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for r in allrows:
        cells = [f"{r.get(c):.4f}" if isinstance(r.get(c), float) and abs(r.get(c)) < 10 else
                 (f"{r.get(c):,.0f}" if isinstance(r.get(c), float) else str(r.get(c, ""))) for c in cols]
        lines.append(f"| {r['bits']} | {r['method']} | " + " | ".join(cells) + " |")
    note = ("ready_s: training wall time when the model was not cached yet, else the load time; "
            "train_s: QINCo's training time, kept with its cached model\n\n")
    out.with_suffix(".md").write_text(note + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
