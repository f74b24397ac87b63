"""Same-run cost of edit beam 8 against 10: the default decode (fusion, the inverter's 8 + 8 aimed
samples, 4 lines' words, fp32 pick of 8) of 40 diverse-en test sentences from the general build,
beam 8, 10, 8, 10 on an otherwise idle machine; the ratio scales the 500 + 500 run's figures.

    PYTHONPATH=. python docs/bench/beam10/time.py     # from the repository root; time.log
"""
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
import generative as G  # noqa: E402
from semcomp import Codec  # noqa: E402
from semcomp.config import load_config  # noqa: E402

cfg = load_config(str(ROOT / "configs" / "general.json"), ["inverter_samples=8"])
cfg["artifacts_dir"] = str(ROOT / "artifacts-general")
codec = Codec.load(cfg["artifacts_dir"], cfg)
for name in ("diverse-en test",):  # the set whose 500-run time shared the cores
    texts = G.eval_sets(codec, codec.cfg, 40, 0)[name]
    codes = codec.encode(codec.embed(texts))
    codec.reconstruct(codes[:2], backend="fusion")  # models loaded before any timing
    for beam in (8, 10, 8, 10):
        codec.cfg["llm_edit_beam"] = beam
        t = time.perf_counter()
        codec.reconstruct(codes, backend="fusion")
        print(name, f"beam {beam}: {(time.perf_counter() - t) / len(texts):.3f} s/sentence", flush=True)
