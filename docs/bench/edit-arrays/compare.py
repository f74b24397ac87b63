"""edit.py as of c2b9a6f against the current one, in isolation, on the general build: the n-gram
tables built from the dictionary by each (their sizes: a hash collision would shrink one), the
edits of 200 seeded (test sentence, 4 dictionary neighbours' words) cases by each, twice, timed,
and whether they are the same edits in the same order; and the fluency scores of 300 sentences.

    PYTHONPATH=. python docs/bench/edit-arrays/compare.py     # from the repository root; compare.log
"""
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from at_commit import module_at  # noqa: E402
from semcomp.decoders import edit as new  # noqa: E402

old = module_at("c2b9a6f", "semcomp/decoders/edit.py")

art = ROOT / "artifacts-general"
sents = [s for s in (art / "dictionary.txt").read_text(encoding="utf-8").split("\n") if s]
test = [s.strip() for s in (art / "test.txt").read_text(encoding="utf-8").split("\n") if s.strip()]
tables = {}
for name, mod in (("old", old), ("new", new)):
    t = time.perf_counter()
    tables[name] = mod.WordPairs(sents)
    print(f"{name} tables from {len(sents)} sentences: {time.perf_counter() - t:.1f} s,",
          "distinct 1/2/3-grams", [len(h) for h, _ in tables[name].tables], flush=True)
rng = random.Random(0)
cases = []
for _ in range(200):
    s, nb = rng.choice(test), [rng.choice(sents) for _ in range(4)]
    cases.append((s, old.vocabulary([(x, 1.0) for x in nb], top=4, limit=48)))
got = {}
for name, mod in (("old", old), ("new", new)) * 2:
    t = time.perf_counter()
    got[name] = [mod.edits(s, v, tables[name]) for s, v in cases]
    print(f"{name}: {time.perf_counter() - t:.2f} s for {len(cases)} sentences' edits, {sum(map(len, got[name]))} kept",
          flush=True)
print("same edits in the same order:", got["old"] == got["new"])
f_old, f_new = tables["old"].fluency(test[:300]), tables["new"].fluency(test[:300])
print("fluency, largest difference over 300 sentences:", float(np.abs(f_old - f_new).max()))
