"""Screen: does the int8 judge's noise cost reconstruction quality?

    python docs/bench/judge-100/screen.py 100

The default decode (fusion, 8 + 8 aimed inverter samples, edit beam 4, 4 lines' words) judged by
the int8 ONNX embedder (the CPU default), then:
  - its candidates' top K re-scored by the fp32 ONNX graph (cosine 1.000 to torch) and the best
    of those kept (the best neighbour re-scored too, as the floor);
  - the whole decode judged by fp32 ONNX.
Text cosine with the reference SBERT (torch), the same 100 + 100 sentences as bench/generative.py.
"""
import sys, time
from pathlib import Path
import numpy as np
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
from semcomp import Codec, decoders
from semcomp.config import load_config
from semcomp.embed import Embedder
import generative as G

n = int(sys.argv[1]); ks = [int(k) for k in (sys.argv[2] if len(sys.argv) > 2 else "4,8,16,32").split(",")]
cfg = load_config(str(ROOT / "configs" / "general.json"), [])
cfg["artifacts_dir"] = str(ROOT / "artifacts-general")
codec = Codec.load(cfg["artifacts_dir"], cfg)
sets = G.eval_sets(codec, codec.cfg, n, 0)
mk = lambda b: Embedder(codec.cfg["sbert_model"], codec.cfg["device"], None, codec.cfg["embed_batch_size"], backend=b).encode
ref = Embedder(codec.cfg["sbert_model"], codec.cfg["device"], Path(cfg["artifacts_dir"]) / "cache",
               codec.cfg["embed_batch_size"], backend="torch").encode
fp32 = mk("onnx")
def unit(x): return x / np.linalg.norm(x, axis=-1, keepdims=True)
run = decoders.text_decoder(codec.cfg, "fusion", None)
print("judge", codec.embedder.backend, "edit", codec.cfg["llm_edit_steps"], codec.cfg["llm_edit_beam"], flush=True)
for sname, texts in sets.items():
    emb = codec.embed(texts); codes = codec.encode(emb); decoded = codec.decode(codes)
    ids, sc = codec.search(decoded, codec.cfg["llm_neighbours"])
    recs = decoders.similarity_records(ids, sc, codec.dictionary[0], texts)
    ref_e = unit(ref(texts))
    cos = lambda hyps: float(np.mean(np.sum(unit(ref(hyps)) * ref_e, 1)))
    for name, judge in (("int8", codec.judge), ("fp32", fp32)):
        t0 = time.perf_counter()
        items = decoders.targets(decoded, recs, codec.inverter, codec.cfg["inverter_samples"] or 8,
                                 codec.cfg["inverter_temperature"], rounds=codec.cfg["inverter_rounds"],
                                 step=codec.cfg["inverter_step"], judge=judge)
        out = run(items, judge, pairs=codec.word_pairs)
        secs = (time.perf_counter() - t0) / len(texts)
        print(f"{sname} judge {name}: cosine {cos([o['reconstruction'] for o in out]):.4f}  {secs:.2f} s", flush=True)
        if name != "int8":
            continue
        for k in ks:
            t1 = time.perf_counter(); hyps = []
            for i, (o, r) in enumerate(zip(out, recs)):
                top = [c for c, _ in o["candidates"][:k]]
                nb = r["neighbours"][0][0]
                pool = list(dict.fromkeys(top + [nb]))
                s = unit(np.asarray(fp32(pool), np.float32)) @ unit(decoded[i])
                floor = s[pool.index(nb)]
                hyps.append(pool[int(np.argmax(np.where(s >= floor, s, -1)))])
            extra = (time.perf_counter() - t1) / len(texts)
            print(f"{sname} int8 + fp32 top {k}: cosine {cos(hyps):.4f}  +{extra:.3f} s", flush=True)
