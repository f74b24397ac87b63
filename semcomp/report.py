"""report.md and the PNG plots from evaluate's result."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import atomic_write


def _fmt(x: Any, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def markdown(r: dict[str, Any]) -> str:
    e = r["embedding"]
    sets = list(e["sets"])
    label = f"**{r.get('quantizer', 'vqvae')} (this run)**"
    lines = [
        "# semcomp evaluation",
        "",
        f"{r['n']} held-out sentences (never in the dictionary of {r.get('dictionary_size', '?')}), "
        f"{r['bits_per_sentence']} bits = {r['bytes_per_sentence']} bytes a sentence. Run `{r['fingerprint']}`.",
        "",
        "## Embedding fidelity: decoded vs original cosine, every quantiser trained on the same vectors",
        "",
        f"recall@10: share of the original's exact top-10 dictionary neighbours found with the decoded "
        f"vector (first {r.get('recall_queries', '?')} sentences of each set).",
        "",
        "| quantiser | bits | " + " | ".join(f"{s} cosine | {s} recall@10" for s in sets) + " | STS-B Spearman |",
        "|---|---:|" + "---:|---:|" * len(sets) + "---:|",
    ]
    rows = [(label, {"bits": r["bits_per_sentence"], "sets": e["sets"], "stsb_spearman": e["stsb_spearman"]})]
    rows += sorted(r["baselines"].items(), key=lambda kv: (kv[1]["bits"], kv[0]))
    for name, b in rows:
        cells = " | ".join(f"{_fmt(b['sets'][s]['cosine'])} | {_fmt(b['sets'][s]['recall_at_10'])}" for s in sets)
        lines.append(f"| {name} | {b['bits']} | {cells} | {_fmt(b['stsb_spearman'])} |")
    lines.append(f"| uncompressed float32 | {384 * 32} | " + "1.000 | 1.000 | " * len(sets)
                 + f"{_fmt(e['stsb_spearman_uncompressed'])} |")
    if r.get("baselines_below_faiss_advice"):
        lines += ["", f"Trained on fewer points than FAISS advises (39 a centroid; the run's dictionary is "
                      f"small for them): {', '.join(r['baselines_below_faiss_advice'])}."]
    same_bits = [n for n, b in sorted(r["baselines"].items()) if b["bits"] == r["bits_per_sentence"]]
    for s in sets:
        sources = list(e["sets"][s]["by_source"])
        if len(sources) < 2:
            continue
        lines += ["", f"### {s}: cosine by source, at {r['bits_per_sentence']} bits", "",
                  "| source | n | " + " | ".join([label] + same_bits) + " |",
                  "|---|---:|" + "---:|" * (1 + len(same_bits))]
        for src in sources:
            vals = [e["sets"][s]["by_source"][src]] + [r["baselines"][n]["sets"][s]["by_source"][src] for n in same_bits]
            count = e["sets"][s].get("counts", {}).get(src, "")
            lines.append(f"| {src} | {count} | " + " | ".join(_fmt(v) for v in vals) + " |")
    c = e["cosine"]
    lines += ["", f"{r.get('quantizer', 'vqvae')} held-out cosine percentiles: p10 {c['p10']:.3f}, p50 {c['p50']:.3f}, "
                  f"p90 {c['p90']:.3f}.", "",
              "## Similarity decoding, every set", "",
              "Text cosine between each original and the dictionary sentence its code decodes to, against the "
              "ceiling (the same search with the uncompressed embedding); both with the run's embedder.", "",
              "| set | n | text cosine | ceiling | share of ceiling |", "|---|---:|---:|---:|---:|"]
    for s, d in r.get("similarity_decoding", {}).items():
        lines.append(f"| {s} | {d['n']} | {_fmt(d['text_cosine'])} | {_fmt(d['ceiling'])} | {100 * d['share_of_ceiling']:.1f} % |")
    lines += ["", "## Text reconstruction (held-out, scored with the reference PyTorch SBERT)", "",
              f"BERTScore model: {r['bertscore_model']}; rescaled against random corpus pairs "
              f"(baseline F1 {r['bertscore_baseline_f1']:.3f}).", "",
              "| system | n | SBERT cosine | BERTScore F1 | rescaled | BLEU | chrF | exact | s/sentence |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    trows = [(f"**{k}**", v) for k, v in r["reconstruction"].items()]
    trows += [("ceiling (uncompressed search)", r["ceiling"]), ("floor (random sentence)", r["floor"]),
              ("identical text (check)", r["identical"])]
    for name, t in trows:
        lines.append(f"| {name} | {t['n']} "
                     f"| {_fmt(t['text_cosine'])} | {_fmt(t['bertscore_f1'])} | {_fmt(t['bertscore_f1_rescaled'])} "
                     f"| {_fmt(t['bleu'], 1)} | {_fmt(t['chrf'], 1)} | {_fmt(t['exact_match'])} "
                     f"| {_fmt(t.get('seconds_per_sentence'), 2)} |")
    if len(r["reconstruction"]) > 1 and r.get("side_by_side"):
        methods = list(r["reconstruction"])
        lines += ["", f"Side by side ({len(r['side_by_side'])} seeded held-out rows):", "",
                  "| original | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
        lines += ["| " + " | ".join(row[c].replace("|", "\\|") for c in ["original", *methods]) + " |"
                  for row in r["side_by_side"]]
    cr = r["compression_ratio"]
    lines += ["", "## Compression (actual file sizes)", "",
              f"Codes file: {r['codes_file_bytes']} bytes for {r['n']} sentences. "
              f"Ratio vs float32 embeddings {cr['vs_float32']:.0f}x, vs UTF-8 text {cr['vs_utf8']:.1f}x, "
              f"vs zstd-19 text {cr['vs_zstd']:.1f}x.", "",
              "![rate-distortion](rate_distortion.png) ![cosine](cosine_hist.png) ![loss](training_loss.png)", ""]
    return "\n".join(lines)


def write_plots(root: Path, r: dict[str, Any], cos: np.ndarray, history: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    names = {"pq": "PQ", "opq": "OPQ+PQ", "rq": "RQ (beam 8)", "lsq": "LSQ"}
    for kind, name in names.items():
        pts = sorted((b["bits"], b["cosine_mean"]) for n, b in r["baselines"].items() if n.startswith(kind + "-"))
        if pts:
            ax.plot(*zip(*pts), marker="o", label=name)
    ax.scatter([r["bits_per_sentence"]], [r["embedding"]["cosine_mean"]], color="k", marker="*", s=150,
               zorder=5, label=f"{r.get('quantizer', 'vqvae')} (this run)")
    ax.set(xlabel="bits per sentence", ylabel="held-out cosine", title="Rate–distortion")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, root / "rate_distortion.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(cos, bins=40)
    ax.set(xlabel="cosine(decoded, original)", ylabel="sentences", title=f"Per-sentence cosine ({r.get('quantizer', 'vqvae')})")
    _save(fig, root / "cosine_hist.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    trained = [h for h in history if h.get("loss") is not None]  # FAISS quantisers log no epochs
    ax.plot([h["epoch"] for h in trained], [h["loss"] for h in trained], marker="o")
    ax.set(xlabel="epoch", ylabel="training loss", title="VQ-VAE training")
    _save(fig, root / "training_loss.png")


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
