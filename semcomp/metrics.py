"""Scores: embedding fidelity, neighbour recall, STS-B, text metrics with chance levels, compression."""
from __future__ import annotations

import csv
import logging
import random
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import faiss
import numpy as np

from .errors import UsageError
from .util import hub_online
from .weights import packaged_model_dir

log = logging.getLogger("semcomp")
BERTSCORE_FALLBACK_LAYERS = 4  # of MiniLM-L6's 6; middle-to-upper layers carry the most meaning


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (unit_rows(a) * unit_rows(b)).sum(1)


def usage(codes: np.ndarray, num_embeddings: int) -> list[dict[str, float]]:
    """Per codebook: share of entries used and perplexity of the code distribution."""
    out = []
    for col in np.asarray(codes).T:
        p = np.bincount(col, minlength=num_embeddings) / max(len(col), 1)
        nz = p[p > 0]
        out.append({"used": float((p > 0).mean()), "perplexity": float(np.exp(-(nz * np.log(nz)).sum()))})
    return out


def summary(values: np.ndarray) -> dict[str, float]:
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return {"mean": float(values.mean()), "p10": float(p10), "p50": float(p50), "p90": float(p90)}


def exact_topk(dictionary: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Ids of each query's exact top-k dictionary neighbours by inner product (brute force)."""
    index = faiss.IndexFlatIP(dictionary.shape[1])
    index.add(np.ascontiguousarray(dictionary, np.float32))
    return index.search(np.ascontiguousarray(queries, np.float32), k)[1]


def recall(truth: np.ndarray, found: np.ndarray) -> float:
    """Mean share of each row's true ids that `found` holds: the one recall used everywhere."""
    k = truth.shape[1]
    return float(np.mean([len(set(t) & set(f[:k])) / k for t, f in zip(truth, found)]))


def recall_at_k(dictionary: np.ndarray, original: np.ndarray, decoded: np.ndarray, k: int = 10,
                truth: np.ndarray | None = None) -> float:
    """Share of the original's exact top-k dictionary neighbours also found with the decoded
    embedding (`truth`: the originals' top-k, when already computed)."""
    truth = exact_topk(dictionary, original, k) if truth is None else truth
    return recall(truth, exact_topk(dictionary, decoded, k))


def load_stsb(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """STS-B split file: tab-separated, no quoting; fields 4-6 are score, sentence1, sentence2."""
    s1, s2, gold = [], [], []
    try:
        with open(path, encoding="utf-8") as f:
            for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                if len(row) >= 7:
                    gold.append(float(row[4]))
                    s1.append(row[5])
                    s2.append(row[6])
    except (UnicodeDecodeError, ValueError, csv.Error) as e:
        raise UsageError(f"{path} is not an STS-B file ({type(e).__name__}): pass --stsb PATH or --stsb none") from None
    if len(gold) < 2:
        raise UsageError(f"{path} holds {len(gold)} STS-B pairs (tab-separated, score in field 5): "
                         f"pass --stsb PATH or --stsb none")
    return s1, s2, np.array(gold)


def spearman(e1: np.ndarray, e2: np.ndarray, gold: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(rowwise_cosine(e1, e2), gold).statistic)


def bleu_chrf(hyps: Sequence[str], refs: Sequence[str]) -> tuple[float, float]:
    import sacrebleu

    return (float(sacrebleu.corpus_bleu(list(hyps), [list(refs)]).score),
            float(sacrebleu.corpus_chrf(list(hyps), [list(refs)]).score))


@lru_cache(maxsize=2)
def bertscorer(model: str) -> tuple[Any, str]:
    """roberta-large (as in the literature) when loadable; offline, the packaged MiniLM, said so."""
    from bert_score import BERTScorer

    if hub_online() or Path(model).exists():
        try:
            return BERTScorer(model_type=model, lang="en"), model
        except (OSError, KeyError, ValueError) as e:
            log.warning("BERTScore model %s unavailable (%s): using packaged MiniLM", model, type(e).__name__)
    path = str(packaged_model_dir())
    return BERTScorer(model_type=path, num_layers=BERTSCORE_FALLBACK_LAYERS), \
        f"sentence-transformers/all-MiniLM-L6-v2 (packaged, num_layers={BERTSCORE_FALLBACK_LAYERS})"


def bertscore_f1(hyps: Sequence[str], refs: Sequence[str], model: str) -> tuple[np.ndarray, str]:
    scorer, used = bertscorer(model)
    _, _, f1 = scorer.score(list(hyps), list(refs), batch_size=64)
    return f1.numpy(), used


def bertscore_groups(groups: Sequence[tuple[Sequence[str], Sequence[str]]], model: str) -> list[np.ndarray]:
    """F1 of each (hypotheses, references) group, in one scoring pass: bert-score embeds each
    distinct sentence of a call once, and the groups share most of theirs (the same references)."""
    hyps = [h for g in groups for h in g[0]]
    refs = [r for g in groups for r in g[1]]
    if len(hyps) != len(refs):
        raise ValueError("hypotheses and references are not aligned")
    f1, _ = bertscore_f1(hyps, refs, model) if hyps else (np.zeros(0, np.float32), "")
    ends = np.cumsum([len(g[0]) for g in groups])
    return np.split(f1, ends[:-1])


def baseline_pairs(corpus: Sequence[str], pairs: int = 500, seed: int = 0) -> tuple[list[str], list[str]]:
    """Random unrelated sentence pairs from the corpus: bert-score's own baseline method (its mean
    F1 is what rescaling subtracts)."""
    rng = random.Random(seed)
    a = [rng.choice(corpus) for _ in range(pairs)]
    b = [rng.choice(corpus) for _ in range(pairs)]
    return a, b


def text_metrics(hyps: Sequence[str], refs: Sequence[str], hyp_emb: np.ndarray, ref_emb: np.ndarray,
                 f1: np.ndarray, bert_baseline: float) -> dict[str, float]:
    """Each hypothesis against its own reference (same position); f1 from bertscore_groups."""
    if not len(hyps) == len(refs) == len(f1):
        raise ValueError("hypotheses, references and BERTScores are not aligned")
    bleu, chrf = bleu_chrf(hyps, refs)
    return {
        "n": len(hyps),
        "text_cosine": float(rowwise_cosine(hyp_emb, ref_emb).mean()),
        "bertscore_f1": float(f1.mean()),
        "bertscore_f1_rescaled": float(((f1 - bert_baseline) / (1 - bert_baseline)).mean()),
        "bleu": bleu,
        "chrf": chrf,
        "exact_match": float(np.mean([h == r for h, r in zip(hyps, refs)])),
    }


def zstd_size(texts: Sequence[str], level: int = 19) -> int:
    import zstandard

    return len(zstandard.ZstdCompressor(level=level).compress("\n".join(texts).encode("utf-8")))
