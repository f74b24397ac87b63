"""Which of the edit search's candidates to return: the judge's best, or a pick that keeps wording.

    python bench/pick.py                 # 100 diverse-en test + 100 WikiText held-out, the fusion default

The fusion decoder (default edit search) decodes the same codes as bench/generative.py; each
item's 30 best candidates by the judge (the local int8 embedder's cosine to the decoded embedding)
are then picked from by several rules, and each pick is scored against the original with the
reference PyTorch SBERT and chrF:
- judge: the best by the judge (what the decoder returns);
- reference judge: the best by the reference SBERT's cosine to the decoded embedding (is the int8
  judge the limit?);
- MBR chrF top K: of the judge's K best, the one with the highest mean chrF to the other K - 1
  (minimum Bayes risk, the candidates as each other's references);
- oracle: the candidate closest to the original (the headroom the pool holds; needs the original).
Writes docs/bench/pick.{json,md}.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import sacrebleu

from generative import OWN_TEXT, ROOT, eval_sets
from semcomp import Codec, decoders, metrics
from semcomp.config import load_config
from semcomp.embed import Embedder

POOL = 30


def mbr(cands: list[str]) -> int:
    """Index of the candidate with the highest mean sentence chrF against the others."""
    if len(cands) < 2:
        return 0
    gain = [np.mean([sacrebleu.sentence_chrf(a, [b]).score for j, b in enumerate(cands) if j != i])
            for i, a in enumerate(cands)]
    return int(np.argmax(gain))


def run() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "general.json"))
    p.add_argument("--n", type=int, default=100, help="sentences per set (default: %(default)s)")
    p.add_argument("--mbr", default="5,10", help="K values of the MBR rule (default: %(default)s)")
    p.add_argument("--out", default=str(ROOT / "docs" / "bench" / "pick.json"))
    args = p.parse_args()
    cfg = load_config(args.config, [])
    if not Path(cfg["artifacts_dir"]).is_absolute():
        cfg["artifacts_dir"] = str(ROOT / cfg["artifacts_dir"])
    codec = Codec.load(cfg["artifacts_dir"], cfg)
    sets = eval_sets(codec, codec.cfg, args.n, 0)
    sets["own text"] = [t for _, t in OWN_TEXT]
    ref = Embedder(codec.cfg["sbert_model"], codec.cfg["device"], Path(cfg["artifacts_dir"]) / "cache",
                   codec.cfg["embed_batch_size"], backend="torch").encode
    fusion = decoders.text_decoder(codec.cfg, "fusion", None)
    ks = [int(k) for k in args.mbr.split(",") if k]
    result: dict = {"n": args.n, "pool": POOL, "config": {k: codec.cfg[k] for k in codec.cfg if k.startswith("llm_edit")},
                    "sets": {}}
    for sname, texts in sets.items():
        decoded = codec.decode(codec.encode(codec.embed(texts)))
        ids, scores = codec.search(decoded, codec.cfg["llm_neighbours"])
        records = decoders.similarity_records(ids, scores, codec.dictionary[0], texts)
        out = fusion(decoders.targets(decoded, records), codec.judge, progress=True, pairs=codec.word_pairs)
        pools = [[c for c, _ in o["candidates"][:POOL]] for o in out]
        orig, dec = metrics.unit_rows(ref(texts)), metrics.unit_rows(decoded)
        flat = metrics.unit_rows(ref([c for pool in pools for c in pool]))
        ends = np.cumsum([0] + [len(pool) for pool in pools])
        emb = [flat[a:b] for a, b in zip(ends[:-1], ends[1:])]
        picks = {"similarity": [r["reconstruction"] for r in records],
                 "judge": [pool[0] for pool in pools],
                 "reference judge": [pool[int(np.argmax(e @ d))] for pool, e, d in zip(pools, emb, dec)]}
        for k in ks:
            picks[f"MBR chrF top {k}"] = [pool[mbr(pool[:k])] for pool in pools]
        picks["oracle"] = [pool[int(np.argmax(e @ o))] for pool, e, o in zip(pools, emb, orig)]
        rows = []
        for name, hyps in picks.items():
            cos = float(metrics.rowwise_cosine(ref(hyps), orig).mean())
            rows.append({"pick": name, "text_cosine": cos, "chrf": sacrebleu.corpus_chrf(hyps, [texts]).score,
                         "words": float(np.mean([len(h.split()) for h in hyps]))})
            print(f"{sname} {name}: cosine {cos:.4f} chrF {rows[-1]['chrf']:.1f}", flush=True)
        result["sets"][sname] = {"n": len(texts), "original_words": float(np.mean([len(t.split()) for t in texts])),
                                 "rows": rows}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# Which candidate to return (fusion default, pool of the judge's {POOL} best)", "",
             f"`python bench/pick.py --n {args.n} --mbr {args.mbr}`; text cosine: reference SBERT, original vs "
             "pick; oracle needs the original (the pool's headroom).", ""]
    for sname, s in result["sets"].items():
        lines += [f"## {sname} (n = {s['n']}; originals {s['original_words']:.1f} words)", "",
                  "| pick | text cosine | chrF | words |", "|---|---:|---:|---:|"]
        lines += [f"| {r['pick']} | {r['text_cosine']:.4f} | {r['chrf']:.1f} | {r['words']:.1f} |" for r in s["rows"]]
        lines.append("")
    path.with_suffix(".md").write_text("\n".join(lines))
    print(f"-> {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
