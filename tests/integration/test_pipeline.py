"""The whole pipeline on a few hundred real WikiText sentences, then decode and evaluate on its artifacts."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from semcomp import Codec
from semcomp.codes import HEADER, read_codes, row_bytes, write_codes

from fake_llm_server import FakeLLMServer

ROOT = Path(__file__).resolve().parents[2]


def script(*args, check=True):
    r = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check:
        assert r.returncode == 0, r.stderr[-2000:]
    return r


def test_manifest_and_files(built):
    root, m = built
    assert m["counts"]["dictionary"] == 630 and m["counts"]["test"] == 70
    assert m["bits_per_sentence"] == 16 and m["bytes_per_sentence"] == 2
    for name, info in m["files"].items():
        assert (root / name).stat().st_size == info["bytes"]
    assert (root / "test.scz").stat().st_size == HEADER.size + 70 * row_bytes(4, 4)
    assert set(m["seconds"]) >= {"segment", "embed", "train", "index", "total"}
    assert min(c["used"] for c in m["codebook_usage"]) >= 0.9
    assert not list(root.glob(".staging-*"))


def test_held_out_never_in_dictionary(built):
    root, _ = built
    test = set((root / "test.txt").read_text().split("\n"))
    assert not test & set((root / "dictionary.txt").read_text().split("\n"))


def test_codec_api(built):
    root, _ = built
    codec = Codec.load(root)
    texts = (root / "test.txt").read_text().split("\n")[:5]
    e = codec.embed(texts)
    assert e.shape == (5, 384) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    c = codec.encode(texts)
    assert c.shape == (5, 4) and np.issubdtype(c.dtype, np.integer)
    np.testing.assert_array_equal(c, codec.encode(e))
    np.testing.assert_array_equal(c, read_codes(root / "test.scz").codes[:5])
    d = codec.decode(c)
    assert d.shape == (5, 384)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1, atol=1e-5)
    assert float((d * e).sum(1).mean()) > 0.3  # far above unrelated sentences (~0.05)


def test_closed_loop_codes_find_closer_sentences(built):
    """The pipeline's codes (closed loop) land nearer the original's best sentence than plain codes."""
    root, _ = built
    codec = Codec.load(root)
    _, dict_e, _ = codec.dictionary
    test_e = np.load(root / "test.npy")
    closed = read_codes(root / "test.scz").codes
    np.testing.assert_array_equal(closed, codec.encode(test_e))
    plain = codec.encode(test_e, closed_loop=False)

    def text_score(codes):
        hit, _ = codec.search(codec.decode(codes), 1)
        return (dict_e[hit[:, 0]] * test_e).sum(1)

    gain = text_score(closed) - text_score(plain)
    # not row by row: the candidates come from a wider beam than the plain code
    assert (gain >= -1e-6).mean() > 0.9 and gain.mean() > 0.005
    embed_cos = [float((codec.decode(c) * test_e).sum(1).mean()) for c in (closed, plain)]
    assert embed_cos[0] > embed_cos[1] - 0.02  # bought without giving up embedding fidelity


def test_similarity_reconstruct(built):
    root, _ = built
    codec = Codec.load(root)
    codes = read_codes(root / "test.scz").codes
    recs = codec.reconstruct(codes, k=3)
    dictionary = set(codec.dictionary[0])
    assert len(recs) == 70
    for r in recs:
        assert r["method"] == "similarity" and r["reconstruction"] in dictionary
        assert len(r["neighbours"]) == 3 and r["neighbours"][0][0] == r["reconstruction"]
        assert r["score"] >= r["neighbours"][-1][1]
    # score is the cosine between the reconstruction's embedding and the decoded embedding
    e = codec.embed([recs[0]["reconstruction"]])[0]
    assert abs(float(e @ codec.decode(codes[:1])[0]) - recs[0]["score"]) < 1e-4


def test_compress_decode_and_foreign_codes(built, tmp_path):
    root, _ = built
    notes = tmp_path / "notes.txt"
    notes.write_text("The lobster is a large crustacean with a hard shell. It lives in the eastern Atlantic Ocean.\n")
    out = tmp_path / "notes.scz"
    script("pipeline.py", "--artifacts", str(root), "-q", "--compress", str(notes), "-o", str(out))
    codes = read_codes(out, expect_fingerprint=Codec.load(root).fingerprint)
    assert codes.codes.shape == (2, 4) and out.stat().st_size == HEADER.size + 2 * 2
    script("decode.py", "--artifacts", str(root), "-q", "--codes", str(out))
    assert len(out.with_suffix(".jsonl").read_text().splitlines()) == 2
    foreign = tmp_path / "foreign.scz"
    write_codes(foreign, codes.codes, 4, b"otherrun")
    r = script("decode.py", "--artifacts", str(root), "-q", "--codes", str(foreign), check=False)
    assert r.returncode == 1 and "different model" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bad_input_leaves_artifacts_intact(built, tmp_path):
    root, _ = built
    before = (root / "manifest.json").read_bytes()
    r = script("pipeline.py", "--artifacts", str(root), "--set", "data_dir=/nonexistent", check=False)
    assert r.returncode == 1 and "not found" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = script("pipeline.py", "--artifacts", str(root), "--input", str(tmp_path / "none.txt"), check=False)
    assert r.returncode == 1 and "does not exist" in r.stderr
    assert (root / "manifest.json").read_bytes() == before
    r = script("decode.py", "--artifacts", str(tmp_path / "empty"), check=False)
    assert r.returncode == 1 and "run `python pipeline.py` first" in r.stderr


def test_llm_refinement_through_fake_server_returns_true_sentence(built, monkeypatch):
    """Codec.reconstruct with the real OpenAI SDK against a local server whose candidates include the original.

    Refinement keeps the candidate closest to the decoded embedding, so the original must win
    wherever it is closer than every dictionary neighbour; those items are the ones checked.
    """
    root, _ = built
    codec = Codec.load(root)
    codes = read_codes(root / "test.scz").codes
    originals = (root / "test.txt").read_text().split("\n")
    sim = codec.reconstruct(codes, k=1)
    own = (codec.embed(originals) * codec.decode(codes)).sum(1)
    by_top: dict[str, str] = {}  # top neighbour -> original, for items with distinct top neighbours
    pick = []
    for i, r in enumerate(sim):
        if own[i] > r["score"] + 1e-3 and r["reconstruction"] not in by_top and len(pick) < 3:
            by_top[r["reconstruction"]] = originals[i]
            pick.append(i)
    assert pick, "no held-out sentence is closer to its decoded embedding than its neighbours"

    def responder(prompt: str) -> str:
        # The item is known by its top neighbour, the first reference line ("0.612: text").
        first = prompt.split("Reference sentences (similarity: sentence):\n", 1)[1].split("\n", 1)[0]
        true = [by_top[first.split(": ", 1)[1]]] if first.split(": ", 1)[1] in by_top else []
        return json.dumps(true + ["An unrelated sentence about football matches."])

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    with FakeLLMServer(responder) as server:
        codec.cfg.update(llm_base_url=f"{server.url}/v1", llm_rounds=2, llm_prompt="instruction",
                         llm_fusion=False)
        recs = codec.reconstruct(codes[pick], backend="openai", originals=[originals[i] for i in pick])
    assert [r["reconstruction"] for r in recs] == [originals[i] for i in pick]
    assert all(r["method"] == "llm:openai" and r["score"] >= s["score"] for r, s in zip(recs, [sim[i] for i in pick]))


def test_decode_cli_llm_backend(built, tmp_path):
    """decode.py --backend openai end to end: records written, key never in output or files."""
    root, _ = built
    with FakeLLMServer(lambda prompt: json.dumps(["A sentence from the fake model."])) as server:
        env = {**os.environ, "OPENAI_API_KEY": "sk-test-secret"}
        r = subprocess.run([sys.executable, "decode.py", "--artifacts", str(root), "-q", "--backend", "openai",
                            "--limit", "3", "--set", f"llm_base_url={server.url}/v1", "--set", "llm_rounds=1",
                            "--set", "llm_prompt=instruction", "--set", "llm_fusion=false",
                            "-o", str(tmp_path / "llm.jsonl")],
                           cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
        assert len(server.requests) == 3
    assert r.returncode == 0, r.stderr[-2000:]
    text = (tmp_path / "llm.jsonl").read_text()
    assert len(text.splitlines()) == 3 and "sk-test-secret" not in text + r.stderr + r.stdout
    env.pop("OPENAI_API_KEY")
    r = subprocess.run([sys.executable, "decode.py", "--artifacts", str(root), "-q", "--backend", "openai"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2 and "OPENAI_API_KEY" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_evaluate(built):
    root, m = built
    script("decode.py", "--artifacts", str(root), "-q")
    script("evaluate.py", "--artifacts", str(root), "-q", "--sweep", "32", "--no-plots")
    r = json.loads((root / "metrics.json").read_text())
    for key in ("n", "bits_per_sentence", "bytes_per_sentence", "compression_ratio", "embedding",
                "reconstruction", "ceiling", "floor", "baselines", "bertscore_model"):
        assert key in r
    assert r["n"] == 70 and r["bits_per_sentence"] == 16
    assert abs(r["compression_ratio"]["vs_float32"] - 70 * 1536 / (root / "test.scz").stat().st_size) < 1e-9
    assert r["identical"]["bertscore_f1_rescaled"] == pytest.approx(1.0, abs=1e-4)
    assert r["identical"]["text_cosine"] == pytest.approx(1.0, abs=1e-4)
    assert abs(r["floor"]["bertscore_f1_rescaled"]) < 0.1
    assert r["floor"]["text_cosine"] < r["reconstruction"]["similarity"]["text_cosine"] <= r["ceiling"]["text_cosine"] + 0.05
    assert {b["bits"] for n, b in r["baselines"].items() if n.split("-")[0] in ("pq", "opq", "rq")} == {16, 32}
    for name, b in r["baselines"].items():
        assert int(name.split("-")[1]) == b["bits"]  # each baseline really uses its stated bits
    report = (root / "report.md").read_text()
    assert report.count("| **vqvae (this run)** |") == 1
    flagged = r["baselines_below_faiss_advice"]  # a few hundred vectors: every k-means baseline is short of 39 a centroid
    assert flagged == sorted(n for n in r["baselines"] if n.split("-")[0] in ("pq", "opq", "rq"))
    assert "fewer points than FAISS advises" in report


def test_evaluate_scores_another_backend_beside_similarity(built):
    """A fusion decode is scored against similarity decoding of the same codes, with its cost per
    sentence, and report.md shows both side by side."""
    root, _ = built
    try:
        script("decode.py", "--artifacts", str(root), "-q", "--backend", "fusion")
        script("evaluate.py", "--artifacts", str(root), "-q", "--no-plots")  # no --sweep: the codec's size only
        r = json.loads((root / "metrics.json").read_text())
        assert {b["bits"] for n, b in r["baselines"].items() if n.split("-")[0] in ("pq", "opq", "rq")} == {16}
        rec = r["reconstruction"]
        assert set(rec) == {"similarity", "fusion"} and rec["similarity"]["n"] == rec["fusion"]["n"] == 70
        assert rec["fusion"]["seconds_per_sentence"] > 0 and rec["fusion"]["fell_back"] == 0
        assert rec["fusion"]["text_cosine"] != rec["similarity"]["text_cosine"]
        rows = r["side_by_side"]
        assert len(rows) == 20 and all(set(row) == {"original", "similarity", "fusion"} for row in rows)
        report = (root / "report.md").read_text()
        assert "| original | similarity | fusion |" in report and "| **fusion** |" in report
    finally:
        script("decode.py", "--artifacts", str(root), "-q")  # the similarity file the other tests expect


def test_evaluate_refuses_misaligned_and_missing(built, tmp_path):
    root, _ = built
    rec_path = root / "reconstructions.jsonl"
    script("decode.py", "--artifacts", str(root), "-q")
    good = rec_path.read_text()
    lines = good.splitlines()
    a, b = json.loads(lines[0]), json.loads(lines[1])
    a["id"], b["id"] = b["id"], a["id"]
    rec_path.write_text("\n".join([json.dumps(a), json.dumps(b)] + lines[2:]) + "\n")
    r = script("evaluate.py", "--artifacts", str(root), "-q", "--no-plots", check=False)
    assert r.returncode == 1 and "does not match" in r.stderr
    rec_path.unlink()
    r = script("evaluate.py", "--artifacts", str(root), "-q", "--no-plots", check=False)
    assert r.returncode == 1 and "python decode.py" in r.stderr
    rec_path.write_text(good)


@pytest.mark.parametrize("kind", ["rq", "opq"])
def test_faiss_quantizer_selectable(built, tmp_path, kind):
    """quantizer=rq|opq: the same K x b codes, files and API, decoded by FAISS itself."""
    import shutil

    from conftest import small_config

    from semcomp.build import build

    root, _ = built
    shutil.copytree(root / "cache", tmp_path / "cache")  # embeddings already computed
    m = build(small_config(tmp_path, quantizer=kind))
    assert m["bits_per_sentence"] == 16 and (tmp_path / "quantizer.faiss").exists()
    assert not (tmp_path / "vqvae.safetensors").exists()
    codec = Codec.load(tmp_path)
    test_e = np.load(tmp_path / "test.npy")
    codes = read_codes(tmp_path / "test.scz", expect_fingerprint=codec.fingerprint).codes
    assert codes.shape == (70, 4) and codes.max() < 16
    np.testing.assert_array_equal(codes, codec.encode(test_e))  # closed loop, as the pipeline wrote them
    index = codec.model.index
    want = index.sa_decode(index.sa_encode(test_e))  # FAISS's own codes, decoded by FAISS
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(codec.decode(codec.encode(test_e, closed_loop=False)), want, atol=1e-5)
    assert (codes != codec.encode(test_e, closed_loop=False)).any(axis=1).mean() > 0  # the loop chose others
    assert m["test_decoded_cosine"] > 0.3
    assert len(codec.reconstruct(codes[:5])) == 5


def test_qinco_selectable(built, tmp_path):
    """quantizer=qinco: same codes file and API; closed-loop codes as the pipeline wrote them, better
    reconstructions than the FAISS RQ it starts from (on the training vectors, as it is trained)."""
    import shutil

    from conftest import small_config

    from semcomp.build import build
    import torch

    from semcomp.quantizers.faiss_codec import faiss_codec
    from semcomp.quantizers.qinco import QINCo

    root, _ = built
    shutil.copytree(root / "cache", tmp_path / "cache")
    m = build(small_config(tmp_path, quantizer="qinco", qinco_embed_dim=16, qinco_hidden_dim=32,
                           qinco_batch_size=64, qinco_epochs=4))
    assert m["bits_per_sentence"] == 16 and (tmp_path / "qinco.safetensors").exists()
    codec = Codec.load(tmp_path)
    assert isinstance(codec.model, QINCo)
    test_e = np.load(tmp_path / "test.npy")
    codes = read_codes(tmp_path / "test.scz", expect_fingerprint=codec.fingerprint).codes
    assert codes.shape == (70, 4) and codes.max() < 16
    np.testing.assert_array_equal(codes, codec.encode(test_e))
    dict_e = np.load(tmp_path / "dictionary.npy")
    start = QINCo(**codec.model.shape)
    start.set_codebooks(torch.from_numpy(faiss_codec("rq", 4, 4, dict_e, 0, None, 8, 5).codebooks()))
    cos = [float((q.decode(q.encode(dict_e)) * dict_e).sum(1).mean()) for q in (start, codec.model)]
    assert cos[1] > cos[0] + 0.005, cos
    assert len(codec.reconstruct(codes[:5])) == 5


def test_rerun_reuses_model_and_retraining_reproduces_it(built):
    """A warm re-run reuses the cached model and index; retraining from scratch gives the same bytes."""
    import shutil

    from conftest import small_config

    from semcomp.build import build

    root, first = built
    cfg = small_config(root)
    again = build(cfg)
    assert again["fingerprint"] == first["fingerprint"]
    assert again["seconds"]["embed"] < 1.0
    for d in root.glob("cache/model-*"):
        shutil.rmtree(d)
    for f in root.glob("cache/index-*"):
        f.unlink()
    retrained = build(cfg)
    assert retrained["fingerprint"] == first["fingerprint"]  # deterministic for a fixed seed
    assert retrained["files"]["test.scz"]["sha256"] == first["files"]["test.scz"]["sha256"]
