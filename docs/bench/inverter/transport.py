"""Carry a trained inverter back from a GPU machine that returns at most 64 MiB in 16 MiB files.

    python transport.py pack INVERTER_DIR OUT_DIR [--data DATA_DIR]   # there: int8, split, verified
    python transport.py unpack OUT_DIR INVERTER_DIR                   # here: float16 again

Each weight matrix goes as int8 with a float16 scale for every 64 values (absmax), the rest as
float16. `pack --data` also prints the held-out loss of the weights before and after, so the
rounding's cost is measured, not assumed. A record of how the inverter in docs/inverter.md came
back; not part of semcomp.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

GROUP, PART = 64, 15 << 20


def quantize(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        v = v.float()
        if v.dim() == 2 and v.numel() % GROUP == 0:
            g = v.reshape(-1, GROUP)
            scale = g.abs().amax(1, keepdim=True).clamp(min=1e-8) / 127
            out[k + ".q"] = torch.round(g / scale).to(torch.int8)
            out[k + ".s"] = scale.half()
            out[k + ".shape"] = torch.tensor(v.shape)
        else:
            out[k] = v.half()
    return out


def dequantize(q: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in q.items():
        if k.endswith(".q"):
            base = k[:-2]
            out[base] = (v.float() * q[base + ".s"].float()).reshape(*q[base + ".shape"].tolist()).half()
        elif not k.endswith((".s", ".shape")):
            out[k] = v
    return out


def held_out_loss(folder: Path, data: Path, state: dict[str, torch.Tensor]) -> float:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from semcomp import quantizers
    from semcomp.decoders.inverter import Inverter

    model = Inverter.load(folder)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(dev).eval()
    z = np.load(data / "data.npz")
    n = 2000  # the rows inverter.train held out: the last
    meta = json.loads((data / "meta.json").read_text())
    emb = quantizers.load(meta["quantizer"], data).decode(z["codes"][-n:].astype(np.int64))
    lengths = z["lengths"]
    ids = np.split(z["ids"].astype(np.int64), np.cumsum(lengths)[:-1])[-n:]
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, n, 250):
            rows = ids[i:i + 250]
            pad = np.zeros((len(rows), max(len(r) for r in rows)), np.int64)
            for j, r in enumerate(rows):
                pad[j, :len(r)] = r
            ln = torch.tensor([len(r) for r in rows], device=dev)
            loss = model.loss(torch.tensor(emb[i:i + 250], device=dev), torch.tensor(pad, device=dev), ln)
            total, count = total + loss.item() * int(ln.sum()), count + int(ln.sum())
    return total / count


def main() -> None:
    step, src, dst = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    dst.mkdir(parents=True, exist_ok=True)
    if step == "pack":
        state = load_file(str(src / "inverter.safetensors"))
        q = quantize(state)
        blob = dst / "q.safetensors"
        save_file(q, str(blob))
        if "--data" in sys.argv:
            data = Path(sys.argv[sys.argv.index("--data") + 1])
            print(json.dumps({"held_out_loss_float16": held_out_loss(src, data, state),
                              "held_out_loss_int8": held_out_loss(src, data, dequantize(q))}), flush=True)
        raw = blob.read_bytes()
        for i in range(0, len(raw), PART):
            (dst / f"q.part{i // PART}").write_bytes(raw[i:i + PART])
        blob.unlink()
        shutil.copy(src / "inverter.json", dst / "inverter.json")
    else:
        parts = sorted(src.glob("q.part*"), key=lambda p: int(p.suffix.removeprefix(".part")))
        (dst / "q.safetensors").write_bytes(b"".join(p.read_bytes() for p in parts))
        save_file(dequantize(load_file(str(dst / "q.safetensors"))), str(dst / "inverter.safetensors"))
        (dst / "q.safetensors").unlink()
        shutil.copy(src / "inverter.json", dst / "inverter.json")


if __name__ == "__main__":
    main()
