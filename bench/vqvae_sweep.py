"""VQ-VAE vs FAISS PQ / OPQ+PQ / RQ (beam 8) at 64, 72 and 128 bits per sentence.

Protocol (the product's default run): sample_split(validtest sentences, 10000, 0.1, seed=0) ->
9,000 dictionary/training sentences and 1,000 held-out ones. Every quantiser trains on the 9,000
only (plus the same --extra set for all of them when given). Metrics on the held-out 1,000:
  cosine   mean cos(decode(encode(e)), e)
  R@10     overlap of the exact-inner-product top-10 dictionary neighbours, decoded vs original
  STS      Spearman of cos(rt(e1), rt(e2)) with the STS-B dev gold score (beside the raw one)
plus, for the VQ-VAE, the least-used codebook's share of used entries (on the 9,000) and the
training seconds (embedding time excluded).

  python bench/vqvae_sweep.py --set vqvae_epochs=5 --out bench/results/vqvae_sweep/final   # the final table
  python bench/vqvae_sweep.py --bits 72 --only vqvae --set vqvae_lsq_iters=0   # one variant
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from semcomp.config import load_config, parse_override
from semcomp.data import sample_split

ROOT = Path(__file__).resolve().parents[1]

SHAPES = {64: (8, 256), 72: (8, 512), 128: (16, 256)}  # bits -> (codebooks, entries)
SHARED = ROOT.parent / "shared" / "data"
WORK = ROOT / "bench" / "results" / "vqvae_sweep"


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).correlation)


def load_sts(path: str, cache: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """STS-B dev pairs (tab-separated, no quoting): embeddings of s1, s2 and the gold score."""
    f = cache / "sts_dev.npz"
    if f.exists():
        z = np.load(f)
        return z["e1"], z["e2"], z["score"]
    from semcomp.embed import Embedder

    rows = [r.rstrip("\n").split("\t") for r in open(path, encoding="utf-8")]
    rows = [r for r in rows if len(r) >= 7]
    s1, s2 = [r[5] for r in rows], [r[6] for r in rows]
    score = np.array([float(r[4]) for r in rows])
    e = Embedder(cache_dir=str(cache / "embed_cache")).encode(s1 + s2)
    e1, e2 = e[: len(s1)], e[len(s1):]
    np.savez(f, e1=e1, e2=e2, score=score)
    return e1, e2, score


def ensure_corpus(args) -> None:
    """The validation+test sentences and their PyTorch embeddings, made from --data-dir on first use."""
    if Path(args.embeddings).exists() and Path(args.sentences).exists():
        return
    from semcomp.data import load_paragraphs, split_sentences
    from semcomp.embed import Embedder

    cfg = load_config(None, [f"data_dir={args.data_dir}", "dataset_split=validation+test"])
    sents = split_sentences(load_paragraphs(cfg))
    emb = Embedder(cache_dir=str(Path(args.cache) / "embed_cache")).encode(sents, show_progress_bar=True)
    Path(args.sentences).parent.mkdir(parents=True, exist_ok=True)
    Path(args.sentences).write_text(json.dumps(sents))
    Path(args.embeddings).parent.mkdir(parents=True, exist_ok=True)
    np.save(args.embeddings, emb)


def load_data(args) -> dict[str, np.ndarray]:
    ensure_corpus(args)
    sents = json.loads(Path(args.sentences).read_text())
    emb = np.load(args.embeddings).astype(np.float32)
    row = {s: i for i, s in enumerate(sents)}
    dict_s, test_s = sample_split(sents, 10000, 0.1, seed=0)
    data = {"train": emb[[row[s] for s in dict_s]], "test": emb[[row[s] for s in test_s]]}
    if args.extra:
        extra = np.load(args.extra).astype(np.float32)
        held = set(test_s)
        keep = [i for i, s in enumerate(json.loads(Path(args.extra.replace(".npy", ".json")).read_text()))
                if s not in held]  # never train on a held-out sentence
        data["fit"] = np.concatenate([data["train"], extra[keep]])
    else:
        data["fit"] = data["train"]
    data["sts1"], data["sts2"], data["sts_score"] = load_sts(args.sts, Path(args.cache))
    return data


def metrics(rt, data: dict[str, np.ndarray]) -> dict[str, float]:
    """rt: (n, d) -> (n, d) unit-norm round trip through a quantiser."""
    test, dic = data["test"], data["train"]
    dec = rt(test)
    cos = float((dec * test).sum(1).mean())
    top = lambda q: np.argsort(-(q @ dic.T), axis=1)[:, :10]  # noqa: E731
    t0, t1 = top(test), top(dec)
    r10 = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(t0, t1)]))
    s = (rt(data["sts1"]) * rt(data["sts2"])).sum(1)
    return {"cosine": round(cos, 4), "recall@10": round(r10, 4), "sts": round(spearman(s, data["sts_score"]), 4)}


def rq_progressive(bits: int, train: np.ndarray):
    """FAISS RQ, beam 8, with FAISS's own default training (progressive-dimension k-means).
    baselines.faiss_baseline('rq') sets Train_default (= 0: plain k-means), which is weaker; the
    VQ-VAE's codebooks start from this trainer, so this is the fair linear reference."""
    import faiss

    from semcomp.baselines import Baseline
    from semcomp.metrics import unit_rows

    k, n = SHAPES[bits]
    q = faiss.ResidualQuantizer(train.shape[1], k, int(np.log2(n)))
    q.max_beam_size = 8
    q.cp.seed = 0
    q.train(np.ascontiguousarray(train, np.float32))
    return Baseline(f"rqpd-{bits}", q.code_size * 8, lambda x: q.compute_codes(np.ascontiguousarray(x, np.float32)),
                    lambda c: unit_rows(q.decode(c)))


def run_baseline(kind: str, bits: int, data) -> dict:
    from semcomp.baselines import faiss_baseline

    t = time.time()
    q = rq_progressive(bits, data["fit"]) if kind == "rqpd" else faiss_baseline(kind, bits, data["fit"])
    secs = time.time() - t
    return {"method": kind, "bits": q.bits, **metrics(q.roundtrip, data), "train_s": round(secs, 1)}


def run_vqvae(bits: int, data, overrides: list[str], log: bool) -> dict:
    import torch

    from semcomp.metrics import usage
    from semcomp.quantizers.vqvae import train as train_vqvae

    k, n = SHAPES[bits]
    cfg = load_config(None, [f"vqvae_num_codebooks={k}", f"vqvae_num_embeddings={n}"])
    for item in overrides:  # keys beyond config.py's schema are allowed here (experiments)
        key, value = parse_override(item)
        cfg[key] = value
    t = time.time()
    model, hist = train_vqvae(data["fit"], cfg, log=(lambda r: print("   ", r, flush=True)) if log else None)
    secs = time.time() - t
    codes = model.encode(data["train"])
    used = min(u["used"] for u in usage(codes, n))
    with torch.no_grad():
        m = metrics(lambda x: model.decode(model.encode(x)), data)
    tag = "vqvae" + ("[" + ",".join(overrides) + "]" if overrides else "")
    return {"method": tag, "bits": model.bits, **m, "min_used": round(used, 3), "train_s": round(secs, 1)}


def markdown(rows: list[dict], raw_sts: float) -> str:
    cols = ["bits", "method", "cosine", "recall@10", "sts", "sts/raw", "min_used", "train_s"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        r = {**r, "sts/raw": f"{r['sts'] / raw_sts:.1%}"}
        out.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    out.append(f"\nUncompressed STS-B dev Spearman: {raw_sts:.4f}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embeddings", default=str(WORK / "validtest.npy"),
                   help="(n, 384) unit-norm embeddings; made from --data-dir when missing")
    p.add_argument("--sentences", default=str(WORK / "validtest.json"), help="JSON list, same order as --embeddings")
    p.add_argument("--data-dir", default=str(SHARED / "wikitext-2-raw"),
                   help="WikiText-2 raw folder the sentences and embeddings are made from")
    p.add_argument("--extra", default=None, help="optional extra training embeddings (.npy beside a .json of "
                   "sentences), given to every quantiser alike")
    p.add_argument("--sts", default=str(SHARED / "stsb" / "sts-dev.csv"), help="STS-B dev file")
    p.add_argument("--cache", default=str(WORK), help="cache folder for embeddings")
    p.add_argument("--bits", type=int, nargs="+", default=[64, 72, 128], choices=sorted(SHAPES))
    p.add_argument("--only", nargs="+", default=["pq", "opq", "rq", "rqpd", "vqvae"],
                   choices=["pq", "opq", "rq", "rqpd", "vqvae"],
                   help="methods; rqpd = FAISS RQ with progressive-dim training (see rq_progressive)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="VQ-VAE config override")
    p.add_argument("--threads", type=int, default=1, help="torch/FAISS threads (the box is shared)")
    p.add_argument("--log", action="store_true", help="print the VQ-VAE's per-epoch history")
    p.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    args = p.parse_args(argv)

    import faiss
    import torch

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    data = load_data(args)
    raw_sts = spearman((data["sts1"] * data["sts2"]).sum(1), data["sts_score"])
    print(f"train {len(data['train'])} (fit {len(data['fit'])}) test {len(data['test'])} "
          f"STS pairs {len(data['sts_score'])} raw STS {raw_sts:.4f}", flush=True)
    rows = []
    for bits in args.bits:
        for kind in args.only:
            r = run_vqvae(bits, data, args.set, args.log) if kind == "vqvae" else run_baseline(kind, bits, data)
            print(json.dumps(r), flush=True)
            rows.append(r)
    if args.out:
        Path(args.out + ".json").write_text(json.dumps({"raw_sts": raw_sts, "rows": rows,
                                                        "extra": args.extra, "set": args.set}, indent=1))
        Path(args.out + ".md").write_text(markdown(rows, raw_sts))
    print(markdown(rows, raw_sts))


if __name__ == "__main__":
    main()
