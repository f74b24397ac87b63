"""How much the filler words that edit search puts first carry: strip them from the 20 side-by-side
rows of a bench report and score both against the originals with the reference SBERT.

    PYTHONPATH=. python docs/bench/case/filler.py docs/generative-inverter-cpu2.json
"""
from __future__ import annotations

import json
import sys

import numpy as np

from semcomp.embed import Embedder

# words the search put first that no row of the originals starts with (a question's "What" is left alone)
FILLER = {"and", "that", "or", "but", "for", "with", "of", "over", "among", "as", "by", "those"}


def strip(text: str) -> str:
    words = text.split()
    while len(words) > 3 and words[0].lower().strip(",") in FILLER:
        words = words[1:]
    return " ".join(words)


def main(path: str) -> None:
    report, embed = json.load(open(path, encoding="utf-8")), Embedder(backend="torch").encode
    for name, rows in report["sets"].items():
        original = embed([r["original"] for r in rows])
        for method in (m for m in rows[0] if m.startswith("fusion")):
            kept, stripped = embed([r[method] for r in rows]), embed([strip(r[method]) for r in rows])
            changed = sum(strip(r[method]) != r[method] for r in rows)
            print(f"{name}, {method}: {changed} of {len(rows)} rows start with filler; cosine to the originals "
                  f"{np.mean((original * kept).sum(1)):.4f} as decoded, {np.mean((original * stripped).sum(1)):.4f} without it")


if __name__ == "__main__":
    main(sys.argv[1])
