import numpy as np

from semcomp.embed import PACKAGED_SHA256, Embedder, packaged_model_dir, sha256_file

SENTS = ["The lobster is a large crustacean with a hard shell.", "It lives in the eastern Atlantic Ocean.",
         "Football is the most popular sport in Brazil."]


def test_packaged_weights_are_the_official_revision():
    assert sha256_file(packaged_model_dir() / "model.safetensors") == PACKAGED_SHA256


def test_cache_embeds_each_text_once(tmp_path):
    emb = Embedder(cache_dir=tmp_path)
    calls = []
    real = emb._encode
    emb._encode = lambda texts, bar: calls.append(list(texts)) or real(texts, bar)
    first = emb.encode(SENTS)
    assert first.shape == (3, 384) and np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    again = Embedder(cache_dir=tmp_path)  # a new process would see the same file
    again._encode = lambda texts, bar: calls.append(list(texts)) or real(texts, bar)
    np.testing.assert_array_equal(again.encode(SENTS[::-1]), first[::-1])
    again.encode(SENTS + ["A new sentence about the weather today."])
    assert calls == [SENTS, ["A new sentence about the weather today."]]


def test_onnx_int8_backend_through_embedder(tmp_path):
    torch_e = Embedder().encode(SENTS)
    int8_e = Embedder(cache_dir=tmp_path, backend="onnx-int8").encode(SENTS)
    assert (tmp_path / "onnx" / "model-int8.onnx").exists()
    assert float((torch_e * int8_e).sum(1).min()) > 0.98


def test_auto_backend_is_int8_onnx_only_for_the_packaged_model_on_cpu():
    from semcomp.embed import resolve_backend

    assert resolve_backend("auto", "sentence-transformers/all-MiniLM-L6-v2", "cpu") == "onnx-int8"
    assert resolve_backend("auto", "sentence-transformers/all-mpnet-base-v2", "cpu") == "torch"
    assert resolve_backend("torch", "sentence-transformers/all-MiniLM-L6-v2", "cpu") == "torch"
