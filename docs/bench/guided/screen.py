"""Screen: the inverter writing token by token, each step's extensions ranked by the judge (ZSInvert's
guided beam search, with the inverter as the language model instead of a prompted one; inverter.guide).

    PYTHONPATH=. python docs/bench/guided/screen.py N [BEAM,EXPAND ...]

For each of the first N sentences of each bench set (the same sentences as bench/generative.py),
the default decode (fusion, 8 + 8 aimed inverter samples, edit beam 10, 4 lines, fp32 pick of 8),
then the same with the guided search's finished sentences added to the inverter's samples.
Text cosine with the reference SBERT (torch); the guided sentences' own best (by the judge) too.
screen.log: `... screen.py 40 4,8`, at edit beam 10, run with this search as a copy in this script; moved
to semcomp/decoders/inverter.py as `guide`, it gives the same sentences (checked on 4 WikiText ones).
"""
import sys, time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
from semcomp import Codec, decoders
from semcomp.config import load_config
from semcomp.decoders.inverter import guide
from semcomp.embed import Embedder
import generative as G


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


if __name__ == "__main__":
    n = int(sys.argv[1])
    shapes = [tuple(int(v) for v in a.split(",")) for a in (sys.argv[2:] or ["4,8"])]
    cfg = load_config(str(ROOT / "configs" / "general.json"), [])
    cfg["artifacts_dir"] = str(ROOT / "artifacts-general")
    codec = Codec.load(cfg["artifacts_dir"], cfg)
    c = {**codec.cfg, "inverter_samples": 8}
    sets = G.eval_sets(codec, c, 500, 0)
    ref = Embedder(c["sbert_model"], c["device"], Path(cfg["artifacts_dir"]) / "cache",
                   c["embed_batch_size"], backend="torch").encode
    run = decoders.text_decoder(c, "fusion", None)
    inv = codec.inverter
    for sname, texts in sets.items():
        texts = texts[:n]
        emb = codec.embed(texts); decoded = codec.decode(codec.encode(emb))
        ids, sc = codec.search(decoded, c["llm_neighbours"])
        recs = decoders.similarity_records(ids, sc, codec.dictionary[0], texts)
        ref_e = unit(ref(texts))
        cos = lambda hyps: float(np.mean(np.sum(unit(ref(hyps)) * ref_e, 1)))
        t0 = time.perf_counter()
        items = decoders.targets(decoded, recs, inv, 8, c["inverter_temperature"], rounds=c["inverter_rounds"],
                                 step=c["inverter_step"], judge=codec.judge)
        t_inv = time.perf_counter() - t0
        out = run(items, codec.judge, pairs=codec.word_pairs, exact=codec.exact_judge)
        t_all = time.perf_counter() - t0
        print(f"{sname} default: cosine {cos([o['reconstruction'] for o in out]):.4f}  "
              f"{t_all / n:.2f} s (inverter {t_inv / n:.2f})", flush=True)
        for beam, expand in shapes:
            t1 = time.perf_counter()
            written = [w for s0 in range(0, n, 32) for w in guide(inv, decoded[s0:s0 + 32], codec.judge, beam, expand)]
            t_g = time.perf_counter() - t1
            firsts = [w[0] if w else r["reconstruction"] for w, r in zip(written, recs)]
            more = [{**it, "proposals": list(it["proposals"]) + w} for it, w in zip(items, written)]
            t2 = time.perf_counter()
            out2 = run(more, codec.judge, pairs=codec.word_pairs, exact=codec.exact_judge)
            t_run = time.perf_counter() - t2
            print(f"{sname} guided b{beam} x{expand}: its best {cos(firsts):.4f}; with the default "
                  f"{cos([o['reconstruction'] for o in out2]):.4f}  guided {t_g / n:.2f} s, "
                  f"decode {(t_inv + t_g + t_run) / n:.2f} s", flush=True)
            for i in range(min(3, n)):
                print("   ", texts[i][:90], "|", firsts[i][:90], "|", out2[i]["reconstruction"][:90], flush=True)
