"""Decode 100+100 (same as fluency-100) with fusion f0 and f0.05; keep all candidates."""
import sys, pickle, time
sys.path.insert(0, "bench")
from pathlib import Path
import generative as g
from semcomp import Codec, decoders
from semcomp.config import load_config
cfg = load_config("configs/general.json", [])
cfg["artifacts_dir"] = str(Path(cfg["artifacts_dir"]).resolve())
codec = Codec.load(cfg["artifacts_dir"], cfg)
sets = g.eval_sets(codec, codec.cfg, 100, 0)
sets["own text"] = [t for _, t in g.OWN_TEXT]
out = {}
for sname, texts in sets.items():
    codes = codec.encode(codec.embed(texts)); decoded = codec.decode(codes)
    ids, scores = codec.search(decoded, codec.cfg["llm_neighbours"])
    records = decoders.similarity_records(ids, scores, codec.dictionary[0], texts)
    out[sname] = {"texts": texts, "similarity": records, "decoded": decoded}
    for f in (0.0, 0.05):
        scfg = {**codec.cfg, "llm_edit_steps": 12, "llm_edit_beam": 4, "llm_edit_words": 48, "llm_edit_neighbours": 5, "llm_fluency": f}
        t = time.time()
        res = decoders.text_decoder(scfg, "fusion", None)(decoders.targets(decoded, records), codec.judge, pairs=codec.word_pairs)
        out[sname][f] = res
        print(sname, f, time.time() - t, flush=True)
pickle.dump(out, open("/tmp/exp/decoded.pkl", "wb"))
