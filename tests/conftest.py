"""Shared fixtures: a small real pipeline run on ../shared/data, built once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from semcomp.config import load_config

SHARED = Path(os.environ.get("SEMCOMP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
RAW = SHARED / "wikitext-2-raw"


def small_config(artifacts: Path, **extra) -> dict:
    sets = [f"data_dir={RAW}", "dataset_split=validation", "sample_size=700", "test_fraction=0.1",
            "vqvae_epochs=3", "vqvae_num_embeddings=16", "vqvae_num_codebooks=4", "vqvae_hidden_dim=64",
            "pq_M=8", "index_factory=OPQ{pq_M},PQ{pq_M}x4", "show_progress_bar=false", f"artifacts_dir={artifacts}"]
    sets += [f"{k}={v}" for k, v in extra.items()]
    return load_config(None, sets)


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[Path, dict]:
    """Artifacts of one real (small) pipeline run: 700 WikiText sentences, 70 held out."""
    from semcomp.build import build

    root = tmp_path_factory.mktemp("artifacts")
    cfg = small_config(root)
    manifest = build(cfg)
    return root, manifest
