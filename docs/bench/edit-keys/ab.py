"""Same-run A/B of the edit search's edit generation: edit.py as of 46c5975 (every edit's words
built and keyed) against the current one (keys sliced, words written only when kept).

    PYTHONPATH=. python docs/bench/edit-keys/ab.py     # from the repository root; ab.log

The default fusion decode with the inverter (8 + 8 aimed samples, beam 6, fp32 pick) of 40
WikiText held-out sentences from the general build, old, new, old, new; then whether the
reconstructions are the same.
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
old = module_at("46c5975", "semcomp/decoders/edit.py")

cfg = load_config(str(ROOT / "configs" / "general.json"), ["inverter_samples=8"])
cfg["artifacts_dir"] = str(ROOT / "artifacts-general")
codec = Codec.load(cfg["artifacts_dir"], cfg)
texts = G.eval_sets(codec, codec.cfg, 40, 0)["WikiText held-out"]
codes = codec.encode(codec.embed(texts))
codec.reconstruct(codes[:2], backend="fusion")  # models loaded before any timing
out: dict[str, list[str]] = {}
for name, f in (("old", old.edits), ("new", R.edits), ("old", old.edits), ("new", R.edits)):
    R.edits = f
    t = time.perf_counter()
    recs = codec.reconstruct(codes, backend="fusion")
    print(name, f"{(time.perf_counter() - t) / len(texts):.3f} s/sentence", flush=True)
    out.setdefault(name, [r["reconstruction"] for r in recs])
print("same reconstructions:", out["old"] == out["new"])
