"""evaluate.py's work: every figure from one run's artifacts, with baselines, ceiling and floor."""
from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import baselines, metrics
from .artifacts import BASELINES, verify
from .codec import Codec
from .codes import read_codes
from .data import read_source
from .decoders import read_records
from .embed import Embedder
from .quantizers import DEFAULT_BASELINES

log = logging.getLogger("semcomp")
RUN_FILES = ["test.scz", "test.txt", "test.npy", "dictionary.txt", "dictionary.npy", "history.json"]


def stsb_scores(codec: Codec, path: Path, roundtrips: dict[str, Any]) -> dict[str, float]:
    """Spearman on STS-B dev for the raw embeddings and each quantiser's round trip."""
    s1, s2, gold = metrics.load_stsb(path)
    e1, e2 = codec.embed(s1), codec.embed(s2)
    out = {"uncompressed": metrics.spearman(e1, e2, gold)}
    for name, fn in roundtrips.items():
        out[name] = metrics.spearman(fn(e1), fn(e2), gold)
    return out


def eval_sets(codec: Codec, cfg: dict[str, Any], root: Path, dict_texts: list[str]) -> dict[str, dict[str, Any]]:
    """The run's held-out split plus each `eval_sources` entry, minus any sentence the dictionary
    holds (the codec is never scored on what it trained on): name -> embeddings and source labels."""
    test_e = np.load(root / "test.npy")
    labels_file = root / "test.sources.txt"
    labels = labels_file.read_text(encoding="utf-8").split("\n") if labels_file.exists() else []
    sets = {"held-out": {"emb": test_e, "labels": labels if len(labels) == len(test_e) else ["held-out"] * len(test_e)}}
    known = set(dict_texts)
    for spec in cfg["eval_sources"]:
        texts, labels = read_source(spec, cfg)
        keep = [i for i, t in enumerate(texts) if t not in known]
        name = f"{spec['name']} {spec.get('split') or ''}".strip()
        log.info("eval set %s: %d sentences (%d dropped: in the dictionary)", name, len(keep), len(texts) - len(keep))
        texts = [texts[i] for i in keep]
        sets[name] = {"emb": codec.embed(texts, show_progress_bar=cfg["show_progress_bar"]),
                      "labels": [labels[i] for i in keep], "texts": texts}
    return sets


def fidelity(decoded: np.ndarray, original: np.ndarray, labels: list[str], dict_e: np.ndarray,
             truth: np.ndarray) -> dict[str, Any]:
    """Cosine overall and by source, and recall@10 against the originals' exact neighbours
    (`truth`, for the first len(truth) rows)."""
    cos = metrics.rowwise_cosine(decoded, original)
    by_source = {lab: float(cos[[i for i, x in enumerate(labels) if x == lab]].mean()) for lab in sorted(set(labels))}
    return {"n": len(cos), "cosine": float(cos.mean()), "by_source": by_source,
            "counts": {lab: labels.count(lab) for lab in by_source},
            "recall_at_10": metrics.recall(truth, metrics.exact_topk(dict_e, decoded[: len(truth)], 10))}


def evaluate(cfg: dict[str, Any], sweep_bits: list[int], bert_model: str, stsb_path: Path | None,
             plots: bool = True, kinds: tuple[str, ...] = DEFAULT_BASELINES,
             recall_queries: int = 2000) -> dict[str, Any]:
    t0 = time.perf_counter()
    root = Path(cfg["artifacts_dir"])
    codec = Codec.load(root, cfg)
    m = codec.manifest
    verify(root, m, RUN_FILES)
    test_texts = (root / "test.txt").read_text(encoding="utf-8").split("\n")
    dict_texts, dict_e, _ = codec.dictionary
    dict_e = np.ascontiguousarray(dict_e)  # read once: every baseline and recall touches all of it
    test_e = np.load(root / "test.npy")
    codes = read_codes(root / "test.scz", codec.fingerprint).codes
    records = read_records(root / "reconstructions.jsonl", m["fingerprint"], test_texts)
    n = len(test_texts)
    bits = m["bits_per_sentence"]
    sets = eval_sets(codec, cfg, root, dict_texts)
    log.info("stage: data (%.0f s)", time.perf_counter() - t0)

    # Standard quantisers trained on the run's own training vectors (the dictionary), cached by content.
    quantizers: dict[str, baselines.Baseline] = {}
    # Largest first: a shorter RQ of the same code size is cut from a longer one (see faiss_codec).
    for b in sorted(set(sweep_bits) | {bits}, reverse=True):
        for kind in kinds:
            t = time.perf_counter()
            # RQ trains with the codec's training beam (beam 8 needs n x 8 x d floats: 9 GB at 285k)
            q = baselines.faiss_baseline(kind, b, dict_e, cfg["seed"], cache_dir=root / "cache" / BASELINES,
                                         train_beam=codec.cfg["vqvae_train_beam"])
            quantizers[q.name] = q
            log.info("baseline %s ready (%.0f s)", q.name, time.perf_counter() - t)
    for q in (baselines.sign_binary(dict_e.shape[1]), baselines.int8(dict_e)):
        quantizers[q.name] = q
    log.info("stage: baselines (%.0f s)", time.perf_counter() - t0)

    # Decoded embeddings of every set, by every quantiser; the codec's own held-out codes are the
    # ones pipeline.py wrote (closed loop), the other sets are encoded the same way here.
    roundtrips = {"codec": lambda e: codec.decode(codec.encode(e))}
    roundtrips.update({name: q.roundtrip for name, q in quantizers.items()})
    truths = {name: metrics.exact_topk(dict_e, s["emb"][:recall_queries], 10) for name, s in sets.items()}
    rows: dict[str, dict[str, Any]] = {}
    decoded_sets: dict[str, np.ndarray] = {}
    for qname, fn in roundtrips.items():
        rows[qname] = {"bits": bits if qname == "codec" else quantizers[qname].bits, "sets": {}}
        for sname, s in sets.items():
            dec = codec.decode(codes) if (qname, sname) == ("codec", "held-out") else fn(s["emb"])
            if qname == "codec":
                decoded_sets[sname] = dec
            rows[qname]["sets"][sname] = fidelity(dec, s["emb"], s["labels"], dict_e, truths[sname])
    log.info("stage: fidelity (%.0f s)", time.perf_counter() - t0)
    stsb = stsb_scores(codec, stsb_path, roundtrips) if stsb_path else {}
    for qname, row in rows.items():
        row["stsb_spearman"] = stsb.get(qname)
        row["cosine_mean"] = row["sets"]["held-out"]["cosine"]
        row["recall_at_10"] = row["sets"]["held-out"]["recall_at_10"]
    log.info("stage: STS-B (%.0f s)", time.perf_counter() - t0)

    # Similarity decoding of every set, against the ceiling (the same search with the uncompressed
    # embedding). Text cosine here is the run's embedder on the original and on the dictionary
    # sentence found, for all rows; the held-out reconstructions are also scored below with the
    # reference PyTorch SBERT and the text metrics.
    similarity = {}
    for sname, s in sets.items():
        found, _ = codec.search(decoded_sets[sname], 1)
        best, _ = codec.search(s["emb"], 1)
        got = metrics.rowwise_cosine(dict_e[found[:, 0]], s["emb"])
        ceil = metrics.rowwise_cosine(dict_e[best[:, 0]], s["emb"])
        similarity[sname] = {"n": len(got), "text_cosine": float(got.mean()), "ceiling": float(ceil.mean()),
                             "share_of_ceiling": float(got.mean() / ceil.mean())}
    log.info("stage: similarity decoding (%.0f s)", time.perf_counter() - t0)

    # Text: each decoded method, the ceiling (search with the uncompressed embedding) and the floor.
    # Text is scored with the reference PyTorch SBERT whatever runtime the run embedded with, so
    # these figures compare across runtimes (int8 ONNX is cosine 0.994 to it, not 1.000).
    ref_embed = codec.embed
    if codec.embedder.backend != "torch":
        ref_embed = Embedder(codec.cfg["sbert_model"], codec.cfg["device"], root / "cache",
                             codec.cfg["embed_batch_size"], backend="torch").encode
    text_e = ref_embed(test_texts)
    ids = [r["id"] for r in records]
    refs = [test_texts[i] for i in ids]
    ref_e = text_e[ids]
    ceil_ids, _ = codec.search(test_e[ids], 1)
    rng = random.Random(cfg["seed"])
    # The decode run as written (an LLM run's fallbacks included: they are its output), and beside it
    # similarity decoding of the same codes, so any backend is scored against the fast default.
    t = time.perf_counter()
    runs = {"similarity": codec.reconstruct(codes[ids], k=1, ids=ids)}
    for r in runs["similarity"]:
        r["seconds"] = (time.perf_counter() - t) / max(len(ids), 1)
    backend = next((r["method"] for r in records if r["method"] != "similarity"), "similarity")
    if backend != "similarity":
        runs[backend] = records
    ceiling = [dict_texts[j] for j in ceil_ids[:, 0]]
    floor = [rng.choice(dict_texts) for _ in ids]
    # (hypotheses, references, reference embeddings) of every text row, BERTScored in one pass
    groups = {f"reconstruction:{meth}": ([r["reconstruction"] for r in recs], refs, ref_e) for meth, recs in runs.items()}
    groups.update({"ceiling": (ceiling, refs, ref_e), "floor": (floor, refs, ref_e),
                   "identical": (refs[:200], refs[:200], ref_e[:200])})
    base_pairs = metrics.baseline_pairs(dict_texts, seed=cfg["seed"])
    *f1s, base_f1 = metrics.bertscore_groups([g[:2] for g in groups.values()] + [base_pairs], bert_model)
    bert_base = float(base_f1.mean())
    _, bert_used = metrics.bertscorer(bert_model)
    text = {name: metrics.text_metrics(h, r, ref_embed(h), e, f1, bert_base)
            for (name, (h, r, e)), f1 in zip(groups.items(), f1s)}
    reconstruction = {name.split(":", 1)[1]: row for name, row in text.items() if name.startswith("reconstruction:")}
    for meth, recs in runs.items():  # cost: the decoders' own per-item wall time, where they kept it
        secs = [r["seconds"] for r in recs if isinstance(r.get("seconds"), (int, float))]
        reconstruction[meth].update({"seconds_per_sentence": sum(secs) / len(secs) if secs else None,
                                     "fell_back": sum(1 for r in recs if r.get("fallback_reason"))})
    side_by_side = [{"original": refs[i], **{m: recs[i]["reconstruction"] for m, recs in runs.items()}}
                    for i in sorted(random.Random(cfg["seed"]).sample(range(len(ids)), min(20, len(ids))))]
    log.info("stage: text metrics (%.0f s)", time.perf_counter() - t0)

    # Compression, from the actual files.
    size = (root / "test.scz").stat().st_size
    utf8 = sum(len(t.encode("utf-8")) for t in test_texts)
    zstd = metrics.zstd_size(test_texts)
    codec_row = rows.pop("codec")
    cos = metrics.rowwise_cosine(decoded_sets["held-out"], test_e)
    result = {
        "n": n,
        "quantizer": m["config"].get("quantizer", "vqvae"),
        "bits_per_sentence": bits,
        "bytes_per_sentence": m["bytes_per_sentence"],
        "codes_file_bytes": size,
        "compression_ratio": {
            "vs_float32": test_e.shape[1] * 4 * n / size,
            "vs_utf8": utf8 / size,
            "vs_zstd": zstd / size,
        },
        "text_bytes": {"utf8": utf8, "zstd_level19": zstd},
        "embedding": {
            "cosine_mean": codec_row["cosine_mean"],
            "cosine": metrics.summary(cos),
            "recall_at_10": codec_row["recall_at_10"],
            "stsb_spearman": codec_row["stsb_spearman"],
            "stsb_spearman_uncompressed": stsb.get("uncompressed"),
            "sets": codec_row["sets"],
        },
        "similarity_decoding": similarity,
        "reconstruction": reconstruction,
        "side_by_side": side_by_side,
        "ceiling": text["ceiling"],
        "floor": text["floor"],
        "identical": text["identical"],
        "baselines": rows,
        "baselines_below_faiss_advice": sorted(n for n, q in quantizers.items() if q.below_advice),
        "dictionary_size": len(dict_texts),
        "recall_queries": recall_queries,
        "embed_backend": codec.embedder.backend,
        "bertscore_model": bert_used,
        "bertscore_baseline_f1": bert_base,
        "fingerprint": m["fingerprint"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if plots:
        from .report import write_plots

        write_plots(root, result, cos, json.loads((root / "history.json").read_text()))
    return result
