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
from .artifacts import ArtifactError, verify
from .codec import Codec
from .codes import read_codes
from .embed import Embedder

log = logging.getLogger("semcomp")
RUN_FILES = ["test.scz", "test.txt", "test.npy", "dictionary.txt", "dictionary.npy", "history.json"]


def load_reconstructions(path: Path, fingerprint: str, originals: list[str]) -> list[dict[str, Any]]:
    """Records aligned to the held-out sentences by id; other runs' or misaligned records are refused."""
    if not path.exists():
        raise ArtifactError(f"no {path}: run `python decode.py` first")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in records:
        if r.get("run") != fingerprint:
            raise ArtifactError(f"{path} comes from another pipeline run: re-run `python decode.py`")
        i = r.get("id")
        if not isinstance(i, int) or not 0 <= i < len(originals) or r.get("original") != originals[i]:
            raise ArtifactError(f"{path}: record id {i!r} does not match the held-out sentence with that id; "
                                f"re-run `python decode.py`")
    return records


def stsb_scores(codec: Codec, path: Path, roundtrips: dict[str, Any]) -> dict[str, float]:
    """Spearman on STS-B dev for the raw embeddings and each quantiser's round trip."""
    s1, s2, gold = metrics.load_stsb(path)
    e1, e2 = codec.embed(s1), codec.embed(s2)
    out = {"uncompressed": metrics.spearman(e1, e2, gold)}
    for name, fn in roundtrips.items():
        out[name] = metrics.spearman(fn(e1), fn(e2), gold)
    return out


def evaluate(cfg: dict[str, Any], sweep_bits: list[int], bert_model: str, stsb_path: Path | None,
             plots: bool = True) -> dict[str, Any]:
    t0 = time.perf_counter()
    root = Path(cfg["artifacts_dir"])
    codec = Codec.load(root, cfg)
    m = codec.manifest
    verify(root, m, RUN_FILES)
    test_texts = (root / "test.txt").read_text(encoding="utf-8").split("\n")
    dict_texts, dict_e, _ = codec.dictionary
    test_e = np.load(root / "test.npy")
    codes = read_codes(root / "test.scz", codec.fingerprint).codes
    records = load_reconstructions(root / "reconstructions.jsonl", m["fingerprint"], test_texts)
    n = len(test_texts)
    bits = m["bits_per_sentence"]

    # Embedding fidelity of the VQ-VAE and of standard quantisers at the same and other budgets.
    decoded = codec.decode(codes)
    cos = metrics.rowwise_cosine(decoded, test_e)
    quantizers: dict[str, baselines.Quantizer] = {}
    for b in sorted(set(sweep_bits) | {bits}):
        for kind in baselines.FAISS_KINDS:
            q = baselines.faiss_quantizer(kind, b, dict_e, cfg["seed"])
            quantizers[q.name] = q
    for q in (baselines.sign_binary(dict_e.shape[1]), baselines.int8(dict_e)):
        quantizers[q.name] = q
    log.info("baselines trained (%.0f s)", time.perf_counter() - t0)

    roundtrips = {"vqvae": lambda e: codec.decode(codec.encode(e))}
    roundtrips.update({name: q.roundtrip for name, q in quantizers.items()})
    stsb = stsb_scores(codec, stsb_path, roundtrips) if stsb_path else {}

    base_rows = {}
    for name, q in quantizers.items():
        rec = q.roundtrip(test_e)
        base_rows[name] = {"bits": q.bits,
                           "cosine_mean": float(metrics.rowwise_cosine(rec, test_e).mean()),
                           "recall_at_10": metrics.recall_at_k(dict_e, test_e, rec),
                           "stsb_spearman": stsb.get(name)}

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
    by_method: dict[str, list[dict[str, Any]]] = {}  # an LLM run can mix llm:* and fallback records
    for r in records:
        by_method.setdefault(r["method"], []).append(r)
    ceiling = [dict_texts[j] for j in ceil_ids[:, 0]]
    floor = [rng.choice(dict_texts) for _ in ids]
    bert_base = metrics.bertscore_baseline(dict_texts, bert_model, seed=cfg["seed"])
    _, bert_used = metrics.bertscorer(bert_model)

    def score(hyps: list[str], refs_: list[str], ref_e_: np.ndarray) -> dict[str, float]:
        return metrics.text_metrics(hyps, refs_, ref_embed(hyps), ref_e_, bert_model, bert_base)

    reconstruction = {}
    for meth, recs in by_method.items():
        rid = [r["id"] for r in recs]
        reconstruction[meth] = score([r["reconstruction"] for r in recs], [test_texts[i] for i in rid], text_e[rid])
    identical = score(refs[:200], refs[:200], ref_e[:200])

    # Compression, from the actual files.
    size = (root / "test.scz").stat().st_size
    utf8 = sum(len(t.encode("utf-8")) for t in test_texts)
    zstd = metrics.zstd_size(test_texts)
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
            "cosine_mean": float(cos.mean()),
            "cosine": metrics.summary(cos),
            "recall_at_10": metrics.recall_at_k(dict_e, test_e, decoded),
            "stsb_spearman": stsb.get("vqvae"),
            "stsb_spearman_uncompressed": stsb.get("uncompressed"),
        },
        "reconstruction": reconstruction,
        "ceiling": score(ceiling, refs, ref_e),
        "floor": score(floor, refs, ref_e),
        "identical": identical,
        "baselines": base_rows,
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
