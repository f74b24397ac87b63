"""Training tokens a second of two inverter shapes, float32 against bfloat16 autocast (docs/inverter.md).

    python docs/bench/inverter/throughput.py 2        # the thread count

One step = 256 sentences of 26 tokens (about the data's mean), random tokens and embeddings; the
median of steps 2-4 (step 1 warms up). Run on an otherwise idle machine.
"""
import sys
import time

import numpy as np
import torch

sys.path.insert(0, ".")
from semcomp.decoders.inverter import Inverter  # noqa: E402

torch.set_num_threads(int(sys.argv[1]))
for shape in [dict(layers=4, width=256, heads=4, dropout=0.0), dict(layers=6, width=320, heads=5, dropout=0.0)]:
    m = Inverter(shape)
    n = sum(p.numel() for p in m.parameters())
    opt = torch.optim.AdamW(m.parameters(), 1e-3)
    B, T = 256, 26
    emb, ids, L = torch.randn(B, 384), torch.randint(1, 8192, (B, T)), torch.full((B,), T)
    for amp in [False, True]:
        ts = []
        for i in range(4):
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                loss = m.loss(emb, ids, L)
            opt.zero_grad()
            loss.backward()
            opt.step()
            ts.append(time.perf_counter() - t)
        print(shape, f"{n / 1e6:.1f}M", "bf16" if amp else "fp32", f"{B * T / np.median(ts[1:]):.0f} tok/s", flush=True)
