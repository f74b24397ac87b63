"""A real language model: llama.cpp in this process (--backend local) and llama.cpp's
OpenAI-compatible server on 127.0.0.1 through the official openai SDK, with the packaged
SmolLM2-135M-Instruct. Needs requirements-llm.txt (CI installs it)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from semcomp.config import validate
from semcomp.decoders import llm_failure, reconstruct_llm
from semcomp.decoders.local import LocalLM
from semcomp.weights import GGUF_SHA256, packaged_gguf
from semcomp.errors import UserError
from semcomp.util import sha256_file

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def codec(built):
    from semcomp import Codec

    root, _ = built
    return Codec.load(root, validate({"llm_rounds": 1, "llm_candidates": 2, "show_progress_bar": False}))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """llama.cpp's own OpenAI-compatible server, one thread, as a user would start it. Its log goes
    to a file: llama.cpp's model-load log fills a pipe nobody reads, and the server then stalls."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_gguf()),
                                 "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--n_ctx", "1024"],
                                stdout=f, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/models", timeout=1).read()
                break
            except OSError:
                assert proc.poll() is None, log.read_text()[-2000:]
                time.sleep(0.1)
        else:
            pytest.fail(f"llama.cpp server not up after a minute: {log.read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_packaged_model_is_the_genuine_file():
    path = packaged_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and sha256_file(path) == GGUF_SHA256


def test_a_file_that_is_not_a_model_is_one_line(tmp_path):
    bad = tmp_path / "notes.gguf"
    bad.write_text("not a model")
    with pytest.raises(UserError, match="GGUF") as e:
        LocalLM(str(bad), threads=1)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="is not a file"):
        LocalLM(str(tmp_path / "missing.gguf"), threads=1)


def test_local_model_continues_the_list_deterministically():
    lm = LocalLM(None, threads=1)
    req = {"prompt": "Sentences that all say nearly the same thing:\n- The cat sat on the mat.\n- A cat was "
                     "sitting on the rug.\n-", "max_tokens": 24, "temperature": 0.8, "seed": 3, "stop": ["\n"]}
    a, b = lm.complete(req), lm.complete(req)
    assert a == b and a.strip() and "\n" not in a
    assert lm.complete({**req, "seed": 4}) != a or lm.complete({**req, "seed": 5}) != a


def test_local_backend_end_to_end(codec, tmp_path):
    """Codes -> text with the model in this process: new sentences, never below similarity by the
    judge's score, the same result again from the response cache."""
    from semcomp.codes import read_codes

    root = codec.dir
    codes = read_codes(root / "test.scz").codes[:3]
    sim = codec.reconstruct(codes, k=1)
    recs = codec.reconstruct(codes, backend="local", k=1)
    assert [r["method"] for r in recs] == ["llm:local"] * 3 and llm_failure(recs) is None
    for s, r in zip(sim, recs):
        assert r["score"] >= s["score"] - 1e-3  # the best neighbour is always a candidate
        assert r["neighbours"] == s["neighbours"] and len(r["candidates"]) >= 2
    dictionary = set(codec.dictionary[0])
    assert any(t not in dictionary for r in recs for t, _ in r["candidates"])  # the model wrote something
    again = codec.reconstruct(codes, backend="local", k=1)
    assert [r["candidates"] for r in again] == [r["candidates"] for r in recs]


def test_openai_sdk_against_real_llama_cpp_server(server, codec, tmp_path):
    """The few-shot completion prompt through the official openai SDK to llama.cpp's server: every
    item gets an answer (before: 18 of 20 timed out, 1 unparseable), bounded replies, one call in
    flight (the default for a llm_base_url server)."""
    cfg = validate({"llm_backend": "openai", "llm_base_url": server, "llm_rounds": 1, "llm_candidates": 2,
                    "llm_max_tokens": 32})
    os.environ.pop("OPENAI_API_KEY", None)
    decoded = codec.decode(codec.encode(["The river floods every spring.", "He was elected mayor in 1990."]))
    ids, scores = codec.search(decoded, 5)
    texts = codec.dictionary[0]
    items = [{"neighbours": [(texts[j], float(s)) for j, s in zip(i, sc)], "target": d}
             for i, sc, d in zip(ids, scores, decoded)]
    t = time.perf_counter()
    recs = reconstruct_llm(items, codec.judge, cfg, cache_dir=tmp_path, pairs=codec.word_pairs)
    assert time.perf_counter() - t < 120
    assert [r["method"] for r in recs] == ["llm:openai"] * 2, [r["fallback_reason"] for r in recs]
    for r, it in zip(recs, items):
        assert r["score"] >= max(s for _, s in it["neighbours"]) - 1e-2
        assert all(len(t.split()) <= 40 for t, _ in r["candidates"])  # one line of at most 32 tokens
    assert len(list(tmp_path.glob("*.json"))) == 4  # 2 items x 2 candidates, cached


def test_decode_local_without_llama_cpp_says_what_to_install(built, tmp_path):
    """A missing extra is one line naming the install command, before any work."""
    root, _ = built
    shim = tmp_path / "shim" / "llama_cpp"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('No module named llama_cpp')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim.parent), str(ROOT)])}
    r = subprocess.run([sys.executable, "decode.py", "--artifacts", str(root), "-q", "--backend", "local",
                        "-o", str(tmp_path / "out.jsonl")], cwd=ROOT, capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr[-2000:]
    assert "pip install -r requirements-llm.txt" in r.stderr and not (tmp_path / "out.jsonl").exists()


def test_token_log_prob_reads_text_as_more_likely_than_its_words_shuffled():
    """The pick's reader: real sentences beat their own words in another order, and reusing a
    shared start gives what a fresh context gives (the candidates are mostly edits of one)."""
    from semcomp.decoders.pick import TokenLogProb

    texts = ["The battery easily lasts two days, which is the main reason I bought it.",
             "The battery easily lasts two days, which is why I bought it.",
             "can you grab milk on the way home"]
    shuffled = ["days, The it. bought lasts is main the reason which I easily two battery",
                "is why The two bought battery easily days, lasts it. I which",
                "way grab can the home on you milk"]
    lp = TokenLogProb()(texts + shuffled)
    assert (lp[:3] > lp[3:] + 1.0).all(), lp  # more than a nat a token apart
    fresh = [float(TokenLogProb()([t])[0]) for t in texts[1:]]
    assert lp[1:3] == pytest.approx(fresh, abs=1e-4)  # text 1 reused text 0's start


def test_judge_scale_is_the_decoders():
    """Scores are cosines to the target whatever the embedder's norm (no server needed)."""
    from semcomp.decoders.refine import refine

    target = np.eye(4, dtype=np.float32)[0]
    vecs = {"a": np.array([2.0, 0, 0, 0]), "b": np.array([1.0, 1.0, 0, 0])}
    r = refine([("b", 0.7)], target, lambda ts: np.stack([vecs[t] for t in ts]), lambda n, p, i: ["a"], 1)
    assert r["reconstruction"] == "a" and r["score"] == pytest.approx(1.0)
