"""Screen for inverter rounds aimed by the judge (inverter_rounds), before the decoder had them.

    python docs/bench/inverter-rounds-100/screen.py 100 "8,16,8+8@1.0,8+8@0.5"
    python docs/bench/inverter-rounds-100/screen.py 100 "8+8+8@0.5,16+16@0.5,8+8@0.5|b6"

A scheme "8+8@0.5": 8 samples, then 8 more aimed at unit(aim + 0.5 (target - best sample's
embedding)); "|b6": edit beam 6. Then the fusion decoder's default edit search with 4 lines'
words (llm_edit_lines=4). Text cosine with the reference SBERT; the same 100 + 100 sentences as
bench/generative.py --n 100. Every round here sampled with the first round's seed; the decoder
(inverter.write) gives each round its own.
"""
import sys, time, json
from pathlib import Path
import numpy as np
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
from semcomp import Codec, decoders
from semcomp.config import load_config
from semcomp.embed import Embedder
import generative as G

n = int(sys.argv[1]); schemes = sys.argv[2].split(",")
cfg = load_config(str(ROOT / "configs" / "general.json"), [])
cfg["artifacts_dir"] = str(ROOT / "artifacts-general")
codec = Codec.load(cfg["artifacts_dir"], cfg)
sets = G.eval_sets(codec, codec.cfg, n, 0)
ref = Embedder(codec.cfg["sbert_model"], codec.cfg["device"], Path(cfg["artifacts_dir"]) / "cache",
               codec.cfg["embed_batch_size"], backend="torch").encode
inv = codec.inverter
def unit(x): return x / np.linalg.norm(x, axis=-1, keepdims=True)
for sname, texts in sets.items():
    emb = codec.embed(texts); codes = codec.encode(emb); decoded = codec.decode(codes)
    ids, sc = codec.search(decoded, codec.cfg["llm_neighbours"])
    recs = decoders.similarity_records(ids, sc, codec.dictionary[0], texts)
    ref_e = unit(ref(texts))
    for scheme in schemes:
        # scheme: "S" samples, "S+C@a" corrected round of C samples at alpha a, "|bB" beam
        beam = 4
        if "|b" in scheme: scheme_, beam = scheme.split("|b"); beam = int(beam)
        else: scheme_ = scheme
        t0 = time.perf_counter()
        parts = scheme_.split("@"); a = float(parts[1]) if len(parts) > 1 else 0.0
        counts = [int(x) for x in parts[0].split("+")]
        items = decoders.targets(decoded, recs, inv, counts[0], 0.8)
        t = unit(decoded); tk = t.copy()
        for r, c in enumerate(counts[1:], 1):
            best = []
            for i, it in enumerate(items):
                e = unit(np.asarray(codec.judge(it["proposals"]), np.float32))
                best.append(e[np.argmax(e @ t[i])])
            tk = unit(tk + a * (t - np.stack(best))).astype(np.float32)
            more = decoders.targets(tk, recs, inv, c, 0.8)
            for it, m in zip(items, more):
                it["proposals"] = it["proposals"] + m["proposals"]
        scfg = {**codec.cfg, "llm_edit_steps": 12, "llm_edit_beam": beam, "llm_edit_lines": 4}
        run = decoders.text_decoder(scfg, "fusion", None)
        out = run(items, codec.judge, pairs=codec.word_pairs)
        secs = (time.perf_counter() - t0) / len(texts)
        hyps = [o["reconstruction"] for o in out]
        cos = float(np.mean(np.sum(unit(ref(hyps)) * ref_e, 1)))
        print(f"{sname} {scheme}: cosine {cos:.4f}  judge {np.mean([o['score'] for o in out]):.4f}  {secs:.2f} s", flush=True)
