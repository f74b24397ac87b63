import time, sys
sys.path.insert(0, "/work/main")
from semcomp.decoders.local import load_llama
llama, path = load_llama(None, None, 1024, logits_all=True)
toks = llama.tokenize(("The quick brown fox jumps over the lazy dog near the river bank. " * 40).encode(), add_bos=True)
for n in (8, 35, 70, 140, 280, 512):
    best = 1e9
    for _ in range(3):
        llama.n_tokens = 0
        t = time.perf_counter(); llama.eval(toks[:n]); best = min(best, time.perf_counter() - t)
    print(n, f"{n/best:.0f} tok/s  {best*1000:.0f} ms", flush=True)
