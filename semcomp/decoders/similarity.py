"""Similarity decoding: each decoded embedding becomes its nearest dictionary sentence."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def similarity_records(hit_ids: np.ndarray, hit_scores: np.ndarray, texts: Sequence[str],
                       originals: Sequence[str] | None = None, ids: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """One record a query from its top-k dictionary hits (ids and cosines, best first): the best
    hit is the reconstruction, its cosine to the decoded embedding the score."""
    ids = list(ids) if ids is not None else list(range(len(hit_ids)))
    records = []
    for i, (row, scores) in enumerate(zip(hit_ids, hit_scores)):
        neighbours = [(texts[j], round(float(s), 6)) for j, s in zip(row, scores)]
        records.append({
            "id": ids[i],
            "original": originals[i] if originals is not None else None,
            "reconstruction": neighbours[0][0],
            "method": "similarity",
            "score": neighbours[0][1],
            "neighbours": neighbours,
        })
    return records
