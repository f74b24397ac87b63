"""Same-run A/B of the edit search's checks: edit.py as of c2b9a6f (each edit's grams hashed as
joined strings, one Python tuple a gram) against the current one (grams hashed from their words'
hashes, every edit of a sentence checked as numpy arrays).

    PYTHONPATH=. python docs/bench/edit-arrays/ab.py     # from the repository root; ab.log

The old code needs its own n-gram tables (the hashing differs), built here from the dictionary.
The default fusion decode (edit beam 8) with the inverter of 40 WikiText held-out sentences from the general
build, old, new, old, new; then whether the reconstructions are the same.
"""
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
import generative as G  # noqa: E402
from at_commit import module_at  # noqa: E402
from semcomp import Codec  # noqa: E402
from semcomp.config import load_config  # noqa: E402
import semcomp.decoders.refine  # noqa: E402,F401

R = sys.modules["semcomp.decoders.refine"]  # `semcomp.decoders.refine` the attribute is the function
old = module_at("c2b9a6f", "semcomp/decoders/edit.py")

cfg = load_config(str(ROOT / "configs" / "general.json"), ["inverter_samples=8"])
cfg["artifacts_dir"] = str(ROOT / "artifacts-general")
codec = Codec.load(cfg["artifacts_dir"], cfg)
new_pairs = codec.word_pairs
t = time.perf_counter()
old_pairs = old.WordPairs(codec.dictionary[0])
print(f"old tables built in {time.perf_counter() - t:.1f} s; the same sizes:",
      [len(h) for h, _ in old_pairs.tables] == [len(h) for h, _ in new_pairs.tables], flush=True)
texts = G.eval_sets(codec, codec.cfg, 40, 0)["WikiText held-out"]
codes = codec.encode(codec.embed(texts))
codec.reconstruct(codes[:2], backend="fusion")  # models loaded before any timing
out: dict[str, list[str]] = {}
for name, f, pairs in (("old", old.edits, old_pairs), ("new", R.edits, new_pairs)) * 2:
    R.edits, codec.__dict__["word_pairs"] = f, pairs
    t = time.perf_counter()
    recs = codec.reconstruct(codes, backend="fusion")
    print(name, f"{(time.perf_counter() - t) / len(texts):.3f} s/sentence", flush=True)
    out.setdefault(name, [r["reconstruction"] for r in recs])
print("same reconstructions:", out["old"] == out["new"])
