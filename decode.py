"""Turn codes back into text: nearest dictionary sentences, or an LLM guided by them.

    python decode.py                          # the held-out test codes written by pipeline.py
    python decode.py --codes notes.scz        # any codes file made by the same model
    python decode.py --backend local          # a language model in this process (requirements-llm.txt)
    python decode.py --backend claude --limit 20
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

# FAISS's k-means makes many tiny BLAS calls; OpenBLAS's spinning worker threads made OPQ training
# 3x slower on 2 busy cores (measured): one BLAS thread unless the user says otherwise. Set before
# numpy loads OpenBLAS, and here rather than in the library, which must not change its importer's.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from semcomp import cli  # noqa: E402
from semcomp.config import BACKEND_ENV, DECODE_BACKENDS
from semcomp.errors import UsageError

KEY_ENV = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY")

LLM_FAILED = 3  # exit code: the records are written, but the LLM part failed (see llm_failure)
EPILOG = f"""LLM decoding keys (--set KEY=VALUE; --backend llm means llm_backend):
{cli.config_keys("llm")}

environment:
  {BACKEND_ENV}  the default for --backend ({", ".join(DECODE_BACKENDS)})
  {", ".join(KEY_ENV)}  API keys, read from here only

exit codes: 0 done; 1 missing, foreign or mismatched artifacts or codes; 2 bad arguments, config
or API key; {LLM_FAILED} records written, but the LLM part failed (server unreachable, or no item
got an LLM answer) and the items hold their similarity fallback"""


def run() -> int:
    p = cli.parser(__doc__.splitlines()[0], set_example="llm_base_url=http://localhost:11434/v1", epilog=EPILOG)
    p.add_argument("--codes", help="codes file (default: ARTIFACTS/test.scz, the held-out split)")
    p.add_argument("--backend", choices=DECODE_BACKENDS, default=None,
                   help=f"similarity (default: the nearest dictionary sentence, fast), fusion (its "
                        f"clauses recombined, judged by the embedder, no model), local (fusion plus a "
                        f"language model in this process: pip install -r requirements-llm.txt), llm (the "
                        f"config's llm_backend) or a hosted LLM by name; env {BACKEND_ENV} sets the default")
    p.add_argument("-k", type=int, default=5, help="neighbours kept per record (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="decode only the first N codes")
    p.add_argument("-o", "--output", help="JSONL to write (default: ARTIFACTS/reconstructions.jsonl for the test "
                                          "codes, CODES.jsonl otherwise; NAME.partial.jsonl when --limit "
                                          "leaves codes out)")
    args = p.parse_args()
    cfg = cli.config_from(args)
    # Checked before any work: the library would fail on these deep inside, with a traceback.
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if args.k < 1:
        raise UsageError("-k must be at least 1")

    from semcomp import Codec
    from semcomp.artifacts import verify
    from semcomp.codes import code_shape, is_sharded, read_codes, read_sharded_codes, shards_folder
    from semcomp.decoders import choose_backend, llm_failure, write_records

    backend = choose_backend(args.backend, cfg["llm_backend"])  # for the summary: Codec.reconstruct checks it
    root = Path(cfg["artifacts_dir"])
    codec = Codec.load(root, cfg)
    codes_path = Path(args.codes) if args.codes else root / "test.scz"
    originals = None
    if not args.codes:
        verify(root, codec.manifest, ["test.scz", "test.txt"])
        originals = (root / "test.txt").read_text(encoding="utf-8").split("\n")
    read = read_codes
    if args.codes and is_sharded(codes_path):  # a folder of shards (or its manifest) from --engine ray
        codes_path, read = shards_folder(codes_path), read_sharded_codes
    every = read(codes_path, expect_fingerprint=codec.fingerprint, expect_shape=code_shape(codec.model)).codes
    codes = every[: args.limit]
    full_out = root / "reconstructions.jsonl" if not args.codes else codes_path.with_suffix(".jsonl")
    # A partial run must not replace the full file (evaluate.py reads ARTIFACTS/reconstructions.jsonl).
    partial = len(codes) < len(every) and not args.output
    out = Path(args.output) if args.output else full_out.with_suffix(".partial.jsonl") if partial else full_out

    t = time.perf_counter()
    records = codec.reconstruct(codes, backend=backend, k=args.k,
                                originals=originals[: len(codes)] if originals else None,
                                progress=cfg["show_progress_bar"])
    elapsed = time.perf_counter() - t
    write_records(out, records, codec.manifest["fingerprint"])

    width = 48
    print(f"{'id':>5}  {'score':>6}  {'original':<{width}}  reconstruction")
    for rec in records[:10]:
        orig = (rec["original"] or "-")[:width]
        print(f"{rec['id']:>5}  {rec['score']:6.3f}  {orig:<{width}}  {rec['reconstruction'][:width]}")
    fell_back = sum(1 for r in records if r.get("fallback_reason"))
    rate = len(records) / max(elapsed, 1e-9)
    speed = f"{rate:.0f}/s" if rate >= 10 else f"{1 / max(rate, 1e-9):.1f} s a sentence"  # LLM decoding is slow
    print(f"{len(records)} records ({backend}, {speed}"
          f"{f', {fell_back} fell back to similarity' if fell_back else ''}) -> {out}")
    if partial:
        print(f"partial run ({len(codes)} of {len(every)} codes): {full_out} left as it was")
    failure = llm_failure(records) if backend not in ("similarity", "fusion") else None
    if failure:
        print(f"error: LLM decoding failed: {failure}", file=sys.stderr)
        return LLM_FAILED
    return 0


if __name__ == "__main__":
    cli.main(run)
