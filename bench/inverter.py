"""Train the inverter (semcomp/decoders/inverter.py) on the general build, in two steps.

    python bench/inverter.py data                      # on this machine: sentences, codes, tokens
    python bench/inverter.py train --seconds 3300 --tokens 4096 --lr 2e-3 \
        --shape '{"layers": 4, "width": 256, "heads": 4, "dropout": 0.0}'   # 55 min on 2 CPU cores
    python bench/inverter.py train --init artifacts-general/inverter --seed 1 --seconds 3900 \
        --tokens 4096 --lr 1e-3                                          # then 65 min more
    python bench/inverter.py train --device cuda --seconds 390 \
        --shape '{"layers": 8, "width": 640, "heads": 10}'               # 6.5 min on one H200

`data` takes every dictionary sentence of the general codec (configs/general.json, built by
pipeline.py) and the WikiText-2 training split (its articles are not the validation and test ones
the WikiText held-out sentences come from), drops any sentence of the codec's test set, embeds the
new ones with the codec's embedder (cached), encodes them all with the codec (plain encode: the
dictionary is no help to a sentence already in it) and writes codes, token ids and the tokenizer
to ARTIFACTS/cache/inverter-data/ (a few tens of MB: small enough to carry to a GPU machine).
`train` decodes the codes, so the model learns from what the codes keep of each sentence, and
trains for a wall-time budget; it writes ARTIFACTS/inverter/, which `--set inverter_samples=N`
decoding reads.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from semcomp import decoders, quantizers  # noqa: E402
from semcomp.decoders import inverter  # noqa: E402
from semcomp.errors import ModelError  # noqa: E402


def build_data(config: str, out: Path, vocab: int, max_tokens: int) -> None:
    from semcomp import Codec
    from semcomp.config import load_config
    from semcomp.data import read_source

    cfg = load_config(config)
    codec = Codec.load(cfg["artifacts_dir"], cfg)
    folder = Path(cfg["artifacts_dir"])
    dictionary = (folder / "dictionary.txt").read_text(encoding="utf-8").split("\n")
    emb = np.load(folder / "dictionary.npy", mmap_mode="r")
    assert len(dictionary) == len(emb), "dictionary.txt and dictionary.npy disagree: rebuild with pipeline.py"
    held = set((folder / "test.txt").read_text(encoding="utf-8").split("\n"))
    extra, _ = read_source({"name": "wikitext", "path": str(ROOT.parent / "shared/data/wikitext-2"),
                            "split": "train"}, {**cfg, "dataset_name": "wikitext-2-v1"})
    known = held | set(dictionary)
    extra = [s for s in dict.fromkeys(extra) if s not in known]
    print(f"{len(dictionary)} dictionary + {len(extra)} WikiText-2 train sentences", flush=True)
    keep = [i for i, s in enumerate(dictionary) if s not in held]
    sentences = [dictionary[i] for i in keep] + extra
    x = np.concatenate([np.asarray(emb[keep], np.float32), codec.embed(extra, show_progress_bar=True)])
    order = np.random.default_rng(0).permutation(len(sentences))  # train's held-out rows are the last
    sentences, x = [sentences[i] for i in order], x[order]
    t = time.perf_counter()
    codes = np.concatenate([codec.model.encode(x[i:i + 16384]) for i in range(0, len(x), 16384)])
    print(f"encoded {len(x)} in {time.perf_counter() - t:.0f} s", flush=True)
    tok = inverter.train_tokenizer(sentences, vocab)
    ids = inverter.tokenize(tok, sentences, max_tokens)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "data.npz", codes=codes.astype(np.uint16), ids=np.concatenate(ids).astype(np.uint16),
                        lengths=np.asarray([len(i) for i in ids], np.int32))
    tok.save(str(out / "tokenizer.json"))
    for name in quantizers.FILES[cfg["quantizer"]]:
        (out / name).write_bytes((folder / name).read_bytes())
    (out / "meta.json").write_text(json.dumps({"quantizer": cfg["quantizer"], "codec": codec.manifest["fingerprint"],
                                               "sentences": len(sentences),
                                               "tokens": int(sum(len(i) for i in ids)), "max_tokens": max_tokens}))
    print(f"wrote {out}: {len(sentences)} sentences, {sum(len(i) for i in ids)} tokens", flush=True)


def train(data: Path, out: Path, seconds: float, device: str, shape: dict, init: str | None, **opts) -> None:
    from tokenizers import Tokenizer

    meta = json.loads((data / "meta.json").read_text())
    arrays = np.load(data / "data.npz")
    model = quantizers.load(meta["quantizer"], data)
    x = model.decode(arrays["codes"].astype(np.int64))
    ids = np.split(arrays["ids"].astype(np.int64), np.cumsum(arrays["lengths"])[:-1])
    tok = Tokenizer.from_file(str(data / "tokenizer.json"))
    start = None
    if init:  # checked before the log is opened, so a wrong folder leaves the last run's log alone
        try:
            start = decoders.load_inverter(init, meta["codec"])
        except ModelError as exc:
            sys.exit(f"error: {exc}")
        if start.tokenizer.to_str() != tok.to_str():
            sys.exit(f"error: {init} was trained on other data than {data}: train from scratch (no --init)")
    log_path = out.with_suffix(".log")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        def say(row: dict) -> None:
            print(json.dumps(row), flush=True)
            log.write(json.dumps(row) + "\n")

        say({"sentences": len(ids), "tokens": int(arrays["lengths"].sum()), "device": device, "shape": shape,
             "threads": torch.get_num_threads(), **{f"train_{k}": v for k, v in opts.items()}})
        if start is not None:
            say({"init": init, "shape": start.shape})
        net = inverter.train(x, ids, tok, {**shape, "max_tokens": meta["max_tokens"], "codec": meta["codec"]}, seconds=seconds,
                             device=device, init=start, log=say, **opts)
        net.save(out)
        for s in net.to("cpu").sample(x[-3:], 3, temperature=0.7):
            say({"samples": s})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=["data", "train"])
    p.add_argument("--config", default=str(ROOT / "configs" / "general.json"))
    p.add_argument("--data", default=None, help="default: ARTIFACTS/cache/inverter-data")
    p.add_argument("--out", default=None, help="default: ARTIFACTS/inverter")
    p.add_argument("--vocab", type=int, default=inverter.SHAPE["vocab"])
    p.add_argument("--max-tokens", type=int, default=inverter.SHAPE["max_tokens"])
    p.add_argument("--seconds", type=float, default=3600, help="training wall time")
    p.add_argument("--device", default="cpu")
    p.add_argument("--shape", default="{}", help='JSON, e.g. {"layers": 8} (see inverter.SHAPE)')
    p.add_argument("--tokens", type=int, help="tokens a training step (default: inverter.train's)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: inverter.train's)")
    p.add_argument("--fp32", action="store_true", help="train in float32 (default: bfloat16 matrix products)")
    p.add_argument("--init", help="go on from the inverter in this folder (same data), on a new schedule")
    p.add_argument("--seed", type=int, help="batch order and initial weights (default: inverter.train's)")
    a = p.parse_args()
    artifacts = Path(json.loads(Path(a.config).read_text()).get("artifacts_dir", "artifacts"))
    artifacts = artifacts if artifacts.is_absolute() else ROOT / artifacts
    data = Path(a.data) if a.data else artifacts / "cache" / "inverter-data"
    if a.step == "data":
        build_data(a.config, data, a.vocab, a.max_tokens)
    else:
        train(data, Path(a.out) if a.out else artifacts / "inverter", a.seconds, a.device, json.loads(a.shape), a.init,
              **{k: v for k, v in {"tokens": a.tokens, "lr": a.lr, "seed": a.seed}.items() if v is not None},
              bf16=not a.fp32)


if __name__ == "__main__":
    main()
