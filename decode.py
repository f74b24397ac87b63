"""Turn codes back into text: nearest dictionary sentences, or an LLM guided by them.

    python decode.py                          # the held-out test codes written by pipeline.py
    python decode.py --codes notes.scz        # any codes file made by the same model
    python decode.py --backend claude --limit 20
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from semcomp import cli
from semcomp.reconstruct import LLM_BACKENDS


def run() -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--codes", help="codes file (default: ARTIFACTS/test.scz, the held-out split)")
    p.add_argument("--backend", choices=("similarity", *LLM_BACKENDS), default=None,
                   help="similarity (default) or an LLM; env SEMANTIC_RECON_BACKEND also sets it")
    p.add_argument("-k", type=int, default=5, help="neighbours kept per record (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="decode only the first N codes")
    p.add_argument("-o", "--output", help="JSONL to write (default: ARTIFACTS/reconstructions.jsonl "
                                          "for the test codes, CODES.jsonl otherwise)")
    args = p.parse_args()
    cfg = cli.config_from(args)
    backend = args.backend or os.environ.get("SEMANTIC_RECON_BACKEND") or "similarity"
    if backend not in ("similarity", *LLM_BACKENDS):
        raise cli.ConfigError(f"SEMANTIC_RECON_BACKEND={backend!r}: use similarity, {', '.join(LLM_BACKENDS)}")
    if args.limit is not None and args.limit < 1:
        raise cli.ConfigError("--limit must be at least 1")

    from semcomp import Codec
    from semcomp.artifacts import atomic_write, verify
    from semcomp.codes import read_codes

    root = Path(cfg["artifacts_dir"])
    codec = Codec.load(root, cfg)
    codes_path = Path(args.codes) if args.codes else root / "test.scz"
    originals = None
    if not args.codes:
        verify(root, codec.manifest, ["test.scz", "test.txt"])
        originals = (root / "test.txt").read_text(encoding="utf-8").split("\n")
    codes = read_codes(codes_path, expect_fingerprint=codec.fingerprint).codes[: args.limit]
    out = Path(args.output) if args.output else (
        root / "reconstructions.jsonl" if not args.codes else codes_path.with_suffix(".jsonl"))

    t = time.perf_counter()
    records = codec.reconstruct(codes, backend=backend, k=args.k,
                                originals=originals[: len(codes)] if originals else None,
                                progress=cfg["show_progress_bar"])
    elapsed = time.perf_counter() - t
    with atomic_write(out, "w") as f:
        for rec in records:
            rec["run"] = codec.manifest["fingerprint"]
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")

    width = 48
    print(f"{'id':>5}  {'score':>6}  {'original':<{width}}  reconstruction")
    for rec in records[:10]:
        orig = (rec["original"] or "-")[:width]
        print(f"{rec['id']:>5}  {rec['score']:6.3f}  {orig:<{width}}  {rec['reconstruction'][:width]}")
    fell_back = sum(1 for r in records if r.get("fallback_reason"))
    print(f"{len(records)} records ({backend}, {len(records) / max(elapsed, 1e-9):.0f}/s"
          f"{f', {fell_back} fell back to similarity' if fell_back else ''}) -> {out}")
    return 0


if __name__ == "__main__":
    cli.main(run)
