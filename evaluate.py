"""Score a run: embedding fidelity, text reconstruction, compression, and baselines at the same bits.

    python evaluate.py                   # after pipeline.py and decode.py
    python evaluate.py --sweep 64,128 --stsb ../shared/data/stsb/sts-dev.csv
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

# FAISS's k-means makes many tiny BLAS calls; OpenBLAS's spinning worker threads made OPQ training
# 3x slower on 2 busy cores (measured): one BLAS thread unless the user says otherwise. Set before
# numpy loads OpenBLAS, and here rather than in the library, which must not change its importer's.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from semcomp import cli  # noqa: E402
from semcomp.quantizers import BASELINE_KINDS, DEFAULT_BASELINES  # noqa: E402

log = logging.getLogger("semcomp")
DEFAULT_STSB = Path(__file__).resolve().parent.parent / "shared" / "data" / "stsb" / "sts-dev.csv"


def run() -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--sweep", default="",
                   help="extra bit budgets for the baselines beside the codec's own, e.g. 64,128 (the sweep "
                        "in docs/results.md; each budget trains every baseline again) (default: none)")
    p.add_argument("--bertscore-model", default="roberta-large", help="BERTScore model (default: %(default)s)")
    p.add_argument("--stsb", default=None, help=f"STS-B dev file; 'none' to skip (default: {DEFAULT_STSB}, if present)")
    p.add_argument("--baselines", default=",".join(DEFAULT_BASELINES),
                   help=f"FAISS quantisers trained on the run's vectors at each budget: {', '.join(BASELINE_KINDS)} "
                        "(lsq: LSQ++, slow to train) (default: %(default)s)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = p.parse_args()
    cfg = cli.config_from(args)
    try:
        sweep = [int(b) for b in args.sweep.split(",") if b.strip()]
    except ValueError:
        raise cli.ConfigError(f"--sweep must be comma-separated integers, got {args.sweep!r}") from None
    if bad := [b for b in sweep if not 8 <= b <= 1024]:  # FAISS would fail deep inside, after minutes
        raise cli.ConfigError(f"--sweep bit budgets must be in [8, 1024], got {bad[0]}")
    kinds = tuple(k.strip() for k in args.baselines.split(",") if k.strip())
    if bad := [k for k in kinds if k not in BASELINE_KINDS]:
        raise cli.ConfigError(f"--baselines: unknown {', '.join(bad)} (use {', '.join(BASELINE_KINDS)})")
    stsb = DEFAULT_STSB if args.stsb is None else None if args.stsb.lower() == "none" else Path(args.stsb)
    if args.stsb is None and not stsb.exists():
        log.warning("no STS-B file at %s: STS-B figures skipped (pass --stsb PATH)", stsb)
        stsb = None
    if stsb is not None and not stsb.exists():
        raise cli.ConfigError(f"STS-B file {stsb} not found: pass --stsb PATH or --stsb none")
    if stsb is not None:
        from semcomp.metrics import load_stsb

        load_stsb(stsb)  # a file that is not STS-B fails here, in one line, not after the baselines

    from semcomp.artifacts import atomic_write, write_json
    from semcomp.evaluation import evaluate
    from semcomp.report import markdown

    result = evaluate(cfg, sweep, args.bertscore_model, stsb, plots=not args.no_plots, kinds=kinds)
    root = Path(cfg["artifacts_dir"])
    write_json(root / "metrics.json", result)
    with atomic_write(root / "report.md", "w") as f:
        f.write(markdown(result))
    e = result["embedding"]
    for name, d in e["sets"].items():
        log.info("%s: cosine %.3f, recall@10 %.3f at %d bits; similarity decoding %.1f %% of its ceiling",
                 name, d["cosine"], d["recall_at_10"], result["bits_per_sentence"],
                 100 * result["similarity_decoding"][name]["share_of_ceiling"])
    if e["stsb_spearman"] is not None:
        log.info("STS-B Spearman %.3f (uncompressed %.3f)", e["stsb_spearman"], e["stsb_spearman_uncompressed"])
    for meth, t in result["reconstruction"].items():
        log.info("%s: text cosine %.3f (ceiling %.3f, floor %.3f), BERTScore rescaled %.3f",
                 meth, t["text_cosine"], result["ceiling"]["text_cosine"], result["floor"]["text_cosine"],
                 t["bertscore_f1_rescaled"])
    log.info("%s/report.md, metrics.json (%.0f s)", root, result["seconds"])
    return 0


if __name__ == "__main__":
    cli.main(run)
