import sys, time
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/work/main/bench")
from pathlib import Path
import numpy as np
from semcomp import Codec, decoders
from semcomp.config import load_config
import generative as G

cfg = load_config("/work/main/configs/general.json", [])
cfg["artifacts_dir"] = str(Path("/work/main") / cfg["artifacts_dir"])
codec = Codec.load(cfg["artifacts_dir"], cfg)
texts = G.eval_sets(codec, codec.cfg, 500, 0)["WikiText held-out"][:int(sys.argv[1])]
codes = codec.encode(codec.embed(texts))
decoded = codec.decode(codes)
ids, scores = codec.search(decoded, codec.cfg["llm_neighbours"])
records = decoders.similarity_records(ids, scores, codec.dictionary[0], texts)
print("llm_threads", codec.cfg["llm_threads"], flush=True)
for flu, lm in [(0.05, 0.0), (0.05, 0.05), (0.05, 0.0)]:
    scfg = {**codec.cfg, "llm_edit_steps": 12, "llm_edit_beam": 4, "llm_edit_words": 48, "llm_edit_neighbours": 5,
            "llm_fluency": flu, "llm_pick_lm": lm, "llm_pick_top": 8}
    run = decoders.text_decoder(scfg, "fusion", None)
    # time the pick
    spent = [0.0, 0]
    from semcomp.decoders import pick as P
    orig = P.TokenLogProb.__call__
    def timed(self, texts, _o=orig):
        t = time.perf_counter(); r = _o(self, texts); spent[0] += time.perf_counter() - t; spent[1] += len(texts); return r
    P.TokenLogProb.__call__ = timed
    t = time.perf_counter()
    out = run(decoders.targets(decoded, records), codec.judge, progress=False, pairs=codec.word_pairs)
    s = time.perf_counter() - t
    P.TokenLogProb.__call__ = orig
    lens = np.mean([len(o["reconstruction"].split()) for o in out])
    print(f"f{flu} p{lm}: {s/len(texts):.2f} s/sent, pick {spent[0]/len(texts):.2f} s/sent over {spent[1]} texts, mean words {lens:.1f}", flush=True)
