"""Score a run: embedding fidelity, text reconstruction, compression, and baselines at the same bits.

    python evaluate.py                   # after pipeline.py and decode.py
    python evaluate.py --sweep 32,64,128 --stsb ../shared/data/stsb/sts-dev.csv
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from semcomp import cli

log = logging.getLogger("semcomp")
DEFAULT_STSB = Path(__file__).resolve().parent.parent / "shared" / "data" / "stsb" / "sts-dev.csv"


def run() -> int:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--sweep", default="64,128", help="extra bit budgets for the baselines (default: %(default)s)")
    p.add_argument("--bertscore-model", default="roberta-large", help="BERTScore model (default: %(default)s)")
    p.add_argument("--stsb", default=None, help=f"STS-B dev file; 'none' to skip (default: {DEFAULT_STSB}, if present)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = p.parse_args()
    cfg = cli.config_from(args)
    try:
        sweep = [int(b) for b in args.sweep.split(",") if b.strip()]
    except ValueError:
        raise cli.ConfigError(f"--sweep must be comma-separated integers, got {args.sweep!r}") from None
    stsb = DEFAULT_STSB if args.stsb is None else None if args.stsb.lower() == "none" else Path(args.stsb)
    if args.stsb is None and not stsb.exists():
        log.warning("no STS-B file at %s: STS-B figures skipped (pass --stsb PATH)", stsb)
        stsb = None
    if stsb is not None and not stsb.exists():
        raise cli.ConfigError(f"STS-B file {stsb} not found: pass --stsb PATH or --stsb none")

    from semcomp.artifacts import atomic_write, write_json
    from semcomp.evaluation import evaluate
    from semcomp.report import markdown

    result = evaluate(cfg, sweep, args.bertscore_model, stsb, plots=not args.no_plots)
    root = Path(cfg["artifacts_dir"])
    write_json(root / "metrics.json", result)
    with atomic_write(root / "report.md", "w") as f:
        f.write(markdown(result))
    e = result["embedding"]
    log.info("VQ-VAE: cosine %.3f, recall@10 %.3f, STS-B %s at %d bits", e["cosine_mean"], e["recall_at_10"],
             f"{e['stsb_spearman']:.3f}" if e["stsb_spearman"] is not None else "–", result["bits_per_sentence"])
    for meth, t in result["reconstruction"].items():
        log.info("%s: text cosine %.3f (ceiling %.3f, floor %.3f), BERTScore rescaled %.3f",
                 meth, t["text_cosine"], result["ceiling"]["text_cosine"], result["floor"]["text_cosine"],
                 t["bertscore_f1_rescaled"])
    log.info("%s/report.md, metrics.json (%.0f s)", root, result["seconds"])
    print(json.dumps({"bits": result["bits_per_sentence"], "cosine": e["cosine_mean"]}))
    return 0


if __name__ == "__main__":
    cli.main(run)
