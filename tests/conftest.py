"""Shared fixtures. tests/unit need nothing outside the repository (the tiny corpus in tests/data);
tests/integration run the real pipeline on ../shared/data (built once per session), real servers and Ray."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from semcomp.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SEMCOMP_SHARED_DATA", ROOT.parent / "shared" / "data"))
RAW = SHARED / "wikitext-2-raw"
TINY = Path(__file__).resolve().parent / "data" / "tiny"  # committed: what unit tests read instead of ../shared


def small_config(artifacts: Path, **extra) -> dict:
    sets = [f"data_dir={RAW}", "dataset_split=validation", "sample_size=700", "test_fraction=0.1",
            "vqvae_epochs=3", "vqvae_num_embeddings=16", "vqvae_num_codebooks=4", "vqvae_hidden_dim=64",
            "pq_M=8", "index_factory=OPQ{pq_M},PQ{pq_M}x4", "show_progress_bar=false", f"artifacts_dir={artifacts}"]
    sets += [f"{k}={v}" for k, v in extra.items()]
    return load_config(None, sets)


def _export_onnx(path: Path, int8: bool) -> Path:
    # In a child process, as semcomp.embed does: the export peaks at 1.3 GB this process would keep.
    cmd = [sys.executable, "-m", "semcomp.onnx_embed", str(path)] + (["--int8"] if int8 else [])
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and path.is_file(), done.stderr[-2000:]
    return path


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory) -> Path:
    """The per-user cache (the ONNX export) in a session folder: tests neither read a graph left in
    ~/.cache by another version nor write there. Child processes (the CLI tests) inherit it."""
    folder = tmp_path_factory.mktemp("user-cache")
    os.environ["SEMCOMP_CACHE"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def onnx_dir(user_cache) -> Path:
    """The user cache's folder of ONNX graphs, with the int8 one exported once per session (~9 s):
    every Embedder of the session finds it there."""
    pytest.importorskip("onnxruntime")
    from semcomp.embed import onnx_dir as folder

    _export_onnx(folder() / "model-int8.onnx", int8=True)
    return folder()


@pytest.fixture(scope="session")
def onnx_fp32(onnx_dir) -> Path:
    """The fp32 graph beside it, for the tests that compare the two (only they pay its export)."""
    return _export_onnx(onnx_dir / "model.onnx", int8=False)


@pytest.fixture(scope="session")
def built(tmp_path_factory, request) -> tuple[Path, dict]:
    """Artifacts of one real (small) pipeline run: 700 WikiText sentences, 70 held out."""
    from semcomp.build import build
    from semcomp.embed import resolve_backend

    root = tmp_path_factory.mktemp("artifacts")
    cfg = small_config(root)
    if resolve_backend(cfg["embed_backend"], cfg["sbert_model"], cfg["device"]) == "onnx-int8":
        request.getfixturevalue("onnx_dir")  # the session's export, before the build would start its own
    manifest = build(cfg)
    return root, manifest


@pytest.fixture
def tiny_wikitext(tmp_path) -> Path:
    """A data_dir of the committed tiny corpus under WikiText's file names (it is not WikiText, and
    committed files named like WikiText's would read as a copy of ../shared)."""
    for split in ("valid", "test"):
        (tmp_path / f"wiki.{split}.raw").write_bytes((TINY / f"{split}.wikitext").read_bytes())
    return tmp_path
