"""LLM reconstruction: the real SDKs against a local fake server, and the refinement loop."""
from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fake_llm_server import FakeLLMServer, Reply, closed_port_url  # noqa: E402

from semcomp.artifacts import atomic_write  # noqa: E402
from semcomp.config import validate  # noqa: E402
from semcomp.errors import UserError  # noqa: E402
from semcomp.config import LLM_BACKENDS  # noqa: E402
from semcomp.decoders import (  # noqa: E402
    DEFAULT_MODELS,
    UNREACHABLE,
    LLMError,
    check_key,
    choose_backend,
    llm_failure,
    make_caller,
    parse_candidates,
    reconstruct_llm,
    refine,
)
from semcomp.decoders.refine import instruction_proposer  # noqa: E402

KEYS = {"OPENAI_API_KEY": "sk-test-OPENAI-5ecret-123456",
        "ANTHROPIC_API_KEY": "sk-ant-test-ANTHROPIC-5ecret-654321",
        "GOOGLE_API_KEY": "AIza-test-GOOGLE-5ecret-777"}
KEY_OF = {"openai": "OPENAI_API_KEY", "claude": "ANTHROPIC_API_KEY", "gemini": "GOOGLE_API_KEY"}
TRUE = "the cat sat on the mat near the door"
NEIGHBOURS = ["a cat sat on a rug", "the dog slept near the door", "birds sing in the morning"]
VECTOR_DUMP = re.compile(r"(?:-?\d+\.\d+\s*,\s*){8,}")


def embed(texts: list[str]) -> np.ndarray:
    """Deterministic stand-in for SBERT: normalised bag-of-words hashing into 384 dims."""
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in re.findall(r"[a-z0-9]+", t.lower()):
            out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 384] += 1.0
    n = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(n == 0, 1, n)


def item(true: str = TRUE, neighbours: list[str] = NEIGHBOURS) -> dict:
    target = embed([true])[0]
    return {"neighbours": [(t, float(embed([t])[0] @ target)) for t in neighbours], "target": target}


def best_neighbour(it: dict) -> str:
    return max(it["neighbours"], key=lambda p: p[1])[0]


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("SEMANTIC_RECON_BACKEND", raising=False)


@pytest.fixture
def server():
    with FakeLLMServer() as s:
        yield s


def cfg_for(server: FakeLLMServer | str, backend: str, **kw) -> dict:
    # OpenAI's base URL includes the version; Anthropic's and Gemini's SDKs add their own.
    url = server if isinstance(server, str) else server.url
    # The fake server answers JSON lists: the instruction prompt (completion prompts: test_local_llm.py).
    base = {"llm_backend": backend, "llm_base_url": url + "/v1" if backend == "openai" else url, "llm_rounds": 1,
            "llm_prompt": "instruction", "llm_fusion": False, "llm_timeout": 5.0, "llm_max_retries": 2, "llm_concurrency": 2}
    base.update(kw)
    return validate(base)


def temp_files(folder: Path) -> list[Path]:
    """atomic_write's temp files (`.NAME.XXXX.tmp`): a finished write leaves none behind."""
    return list(folder.glob(".*.tmp"))


def run(server, backend, items, cache_dir=None, **kw):
    return reconstruct_llm(items, embed, cfg_for(server, backend, **kw), cache_dir=cache_dir, base_delay=0.01)


# ---------------------------------------------------------------- each SDK end to end

# Path and where the key goes. anthropic 2.x sends the key as a Bearer token, older ones as
# x-api-key; google-genai 3.x uses API version v1 when given a base URL (v1beta before).
WIRE = {"openai": ("/v1/chat/completions", ("authorization",)),
        "claude": ("/v1/messages", ("x-api-key", "authorization")),
        "gemini": (f"/models/{DEFAULT_MODELS['gemini']}:generateContent", ("x-goog-api-key",))}


@pytest.mark.parametrize("backend", ["openai", "claude", "gemini"])
def test_sdk_end_to_end(server, backend):
    server.responder = lambda prompt: json.dumps(["a cat sat near the door", TRUE, "dogs sleep"])
    it = item()
    [rec] = run(server, backend, [it])
    assert rec["method"] == f"llm:{backend}" and rec["fallback_reason"] is None
    assert rec["reconstruction"] == TRUE and rec["score"] == pytest.approx(1.0, abs=1e-5)
    [req] = server.requests
    path, headers = WIRE[backend]
    assert req.path.endswith(path)
    key = KEYS[KEY_OF[backend]]
    assert any(req.headers.get(h) in (key, f"Bearer {key}") for h in headers)
    model = req.path if backend == "gemini" else req.body["model"]  # Gemini names it in the path
    assert DEFAULT_MODELS[backend] in model
    for text, score in it["neighbours"]:  # the prompt carries the neighbours and their scores
        assert text in req.prompt and f"{score:.3f}" in req.prompt
    assert not VECTOR_DUMP.search(req.prompt) and TRUE not in req.prompt


def test_refinement_through_server_returns_true_sentence(server):
    """Round 1 guesses near misses; once shown its scores, the fake 'model' finds the sentence."""
    def responder(prompt: str) -> str:
        if "earlier guesses" in prompt:
            return f"Here you go:\n```json\n{json.dumps(['a cat on the mat', TRUE])}\n```"
        return json.dumps(["a cat sat on the mat", "the cat was near a door"])

    server.responder = responder
    [rec] = run(server, "openai", [item()], llm_rounds=2)
    assert rec["reconstruction"] == TRUE and rec["rounds"] == 2 and len(server.requests) == 2
    assert "a cat sat on the mat" in server.requests[1].prompt  # round 2 saw round 1's guesses...
    assert re.search(r"\d\.\d{3}: a cat sat on the mat", server.requests[1].prompt)  # ...with scores
    scores = [s for _, s in rec["candidates"]]
    assert scores == sorted(scores, reverse=True)


def test_completion_prompt_through_server(server):
    """llm_prompt auto with a llm_base_url server: the few-shot list to /v1/completions, one bounded
    line a candidate, each with its own seed; one call in flight by default."""
    server.responder = lambda prompt: f" {TRUE}\nmore lines the stop sequence would cut"
    cfg = cfg_for(server, "openai", llm_prompt="auto", llm_candidates=3, llm_concurrency=None, llm_max_tokens=40)
    recs = reconstruct_llm([item(), item(neighbours=NEIGHBOURS[:2])], embed, cfg, base_delay=0.01)
    assert [r["reconstruction"] for r in recs] == [TRUE, TRUE] and all(r["method"] == "llm:openai" for r in recs)
    assert len(server.requests) == 6 and server.max_in_flight == 1
    bodies = [r.body for r in server.requests]
    assert all(r.path.endswith("/v1/completions") for r in server.requests)
    assert all(b["max_tokens"] == 40 and b["stop"] == ["\n"] for b in bodies)
    assert sorted(b["seed"] for b in bodies[:3]) == [0, 1, 2]
    prompt = server.requests[0].prompt
    assert prompt.startswith("Sentences that all say nearly the same thing:") and prompt.endswith("\n-")
    lines = prompt.splitlines()[1:-1]  # the neighbours, least similar first
    it = item()
    assert lines == [f"- {t}" for t, _ in sorted(it["neighbours"], key=lambda p: p[1])]


# ---------------------------------------------------------------- robustness

def test_429_then_success(server):
    server.push(Reply(status=429, message="slow down"))
    [rec] = run(server, "claude", [item()])
    assert rec["method"] == "llm:claude" and len(server.requests) == 2


def test_5xx_until_retries_run_out_falls_back(server):
    server.default = Reply(status=503, message="overloaded")
    it = item()
    recs = run(server, "gemini", [it], llm_max_retries=2)
    assert len(server.requests) == 3  # 1 try + 2 retries, then the item gives up
    [rec] = recs
    assert rec["method"] == "similarity" and rec["reconstruction"] == best_neighbour(it)
    assert "503" in rec["fallback_reason"] and "3 attempts" in rec["fallback_reason"]


def test_other_4xx_is_not_retried(server):
    server.default = Reply(status=400, message="bad request")
    [rec] = run(server, "openai", [item()])
    assert len(server.requests) == 1 and rec["method"] == "similarity" and "400" in rec["fallback_reason"]


@pytest.mark.parametrize("backend", ["openai", "claude"])
def test_timeout_is_not_retried(server, backend):
    """The server may still be working on a timed-out call: a retry would queue a second copy."""
    server.push(Reply(delay=1.0, text='["late"]'))
    [rec] = run(server, backend, [item()], llm_timeout=0.3, llm_max_retries=3)
    assert rec["method"] == "similarity" and "Timeout" in rec["fallback_reason"]
    assert len(server.requests) == 1


def test_server_that_never_answers_is_cut_off(server, caplog):
    """Timeouts open the breaker like refused connections: 3 timed-out calls, then no more calls.
    Before, each of 10 items waited for its timeout and every retry (5 x 30 s each by default)."""
    caplog.set_level(logging.WARNING)
    server.default = Reply(delay=2.0, text='["late"]')
    t = time.perf_counter()
    recs = run(server, "openai", [item() for _ in range(10)], llm_timeout=0.3, llm_concurrency=1)
    assert time.perf_counter() - t < 3 * 0.3 + 1.5
    assert len(server.requests) == 3
    assert all(r["method"] == "similarity" for r in recs)
    assert llm_failure(recs).startswith(UNREACHABLE) and "answer 3 times in a row" in llm_failure(recs)


def test_time_budget_ends_the_llm_part(server):
    server.default = Reply(delay=0.3, text=json.dumps([TRUE]))
    recs = run(server, "openai", [item() for _ in range(8)], llm_concurrency=1, llm_time_budget=1.0)
    done = [r for r in recs if r["method"] == "llm:openai"]
    cut = [r for r in recs if (r["fallback_reason"] or "").startswith("LLM time budget spent")]
    assert 2 <= len(done) <= 5 and len(done) + len(cut) == 8 and len(server.requests) == len(done)


def test_malformed_wire_response_falls_back_without_retry(server):
    server.default = Reply(raw=b"<html>proxy error</html>")
    [rec] = run(server, "openai", [item()])
    assert rec["method"] == "similarity" and len(server.requests) == 1 and rec["fallback_reason"]


def test_unparseable_answer_falls_back(server):
    server.responder = lambda prompt: "Sorry, I cannot help with that."
    [rec] = run(server, "gemini", [item()], llm_rounds=2)
    assert rec["method"] == "similarity" and "no parseable candidates" in rec["fallback_reason"]


def test_one_bad_item_does_not_end_the_batch(server):
    server.push(Reply(status=404, message="no such model"))
    its = [item(), item(neighbours=NEIGHBOURS[::-1])]
    recs = run(server, "openai", its, llm_concurrency=1)
    assert [r["method"] for r in recs] == ["similarity", "llm:openai"]


@pytest.mark.parametrize("backend", ["openai", "claude", "gemini"])
def test_missing_key_fails_before_any_call(server, monkeypatch, backend):
    monkeypatch.delenv(KEY_OF[backend])
    cfg = cfg_for(server, backend)
    if backend == "openai":
        cfg["llm_base_url"] = None  # with a base URL, a keyless local server is allowed
    calls = []
    with pytest.raises(LLMError) as e:
        reconstruct_llm([item()], lambda t: calls.append(t), cfg)
    msg = str(e.value)
    assert KEY_OF[backend] in msg and "\n" not in msg
    assert server.requests == [] and calls == []


def test_local_openai_compatible_server_needs_no_key(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    check_key("openai", server.url + "/v1")
    [rec] = run(server, "openai", [item()])
    assert rec["method"] == "llm:openai" and server.requests[0].headers["authorization"] == "Bearer not-needed"


def test_bounded_concurrency(server):
    server.default = Reply(delay=0.2, text='["a cat"]')
    its = [item(neighbours=[f"sentence number {i}", "a cat sat"]) for i in range(7)]
    recs = run(server, "openai", its, llm_concurrency=3)
    assert len(recs) == 7 and 1 < server.max_in_flight <= 3


# ---------------------------------------------------------------- cache and key hygiene

def test_cache_prevents_second_call(server, tmp_path):
    its = [item(), item(neighbours=NEIGHBOURS[1:])]
    first = run(server, "openai", its, cache_dir=tmp_path, llm_rounds=2)
    n = len(server.requests)
    assert n == 4
    second = run(server, "openai", its, cache_dir=tmp_path, llm_rounds=2)
    def same(recs):  # all but the wall time
        return [{k: v for k, v in r.items() if k != "seconds"} for r in recs]

    assert len(server.requests) == n and same(second) == same(first)
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 4 and not temp_files(tmp_path)
    assert json.loads(files[0].read_text())["backend"] == "openai"


def test_temp_file_check_sees_atomic_write_temp_files(tmp_path):
    """The check above can fail: mid-write, it finds the temp file atomic_write really makes."""
    with atomic_write(tmp_path / "x.json", "w") as f:
        f.write("{}")
        assert len(temp_files(tmp_path)) == 1
    assert not temp_files(tmp_path)


@pytest.mark.parametrize("backend", ["openai", "claude", "gemini"])
def test_cache_is_per_server(tmp_path, backend):
    """The same prompt to another server is another answer: it is asked, not served from the cache."""
    with FakeLLMServer(lambda prompt: json.dumps([TRUE])) as a, \
            FakeLLMServer(lambda prompt: '["birds sing in the morning light"]') as b:
        [from_a] = run(a, backend, [item()], cache_dir=tmp_path)
        [from_b] = run(b, backend, [item()], cache_dir=tmp_path)
        [again] = run(a, backend, [item()], cache_dir=tmp_path)
        assert len(a.requests) == 1 and len(b.requests) == 1 and a.requests[0].prompt == b.requests[0].prompt
    assert from_a["reconstruction"] == TRUE and again["candidates"] == from_a["candidates"]
    assert "birds sing in the morning light" in [t for t, _ in from_b["candidates"]]


@pytest.mark.parametrize("backend", ["openai", "claude", "gemini"])
def test_key_never_leaks(server, tmp_path, caplog, backend):
    caplog.set_level(logging.DEBUG)
    key = KEYS[KEY_OF[backend]]
    # Real APIs echo (part of) a bad key; this fake echoes all of it, on a retried status too.
    server.push(Reply(status=500, message=f"upstream saw key {key}"))
    server.push(Reply(status=200, text='["a cat sat on the mat"]'))
    server.push(Reply(status=401, message=f"Incorrect API key provided: {key}"))
    recs = run(server, backend, [item(), item(neighbours=NEIGHBOURS[:2])], cache_dir=tmp_path,
               llm_concurrency=1)
    assert recs[1]["method"] == "similarity" and "401" in recs[1]["fallback_reason"]
    assert server.requests[0].headers  # the key did go out, in a header
    leaked = [json.dumps(recs), caplog.text] + [p.read_text() for p in tmp_path.iterdir()]
    assert all(key not in text for text in leaked)
    assert "***" in recs[1]["fallback_reason"]


# ---------------------------------------------------------------- unreachable server

@pytest.mark.parametrize("backend", ["openai", "claude", "gemini"])
def test_unreachable_server_stops_calling(backend, caplog):
    """Refused connections open the breaker after 3 in a row: 20 items end in well under a second
    instead of 5 attempts with backoff each, all on their similarity fallback, said once."""
    caplog.set_level(logging.WARNING)
    cfg = cfg_for(closed_port_url(), backend, llm_max_retries=4)
    make_caller(cfg, backend, None)  # imports the SDK outside the timed part
    its = [item(neighbours=[f"sentence number {i}", *NEIGHBOURS]) for i in range(20)]
    t = time.perf_counter()
    recs = reconstruct_llm(its, embed, cfg, base_delay=0.05)
    assert time.perf_counter() - t < 2.0  # without the breaker: 20 x 4 backoffs of >= 0.05 s doubling, 2 at a time
    assert [r["reconstruction"] for r in recs] == [best_neighbour(it) for it in its]
    assert all(r["method"] == "similarity" and r["fallback_reason"].startswith(UNREACHABLE) for r in recs)
    assert llm_failure(recs).startswith(UNREACHABLE) and "3 times in a row" in llm_failure(recs)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.startswith(UNREACHABLE) and "127.0.0.1" in warning


def test_server_answers_reset_the_breaker(server):
    """Error statuses are answers: many 503s in a row retry and fall back item by item, never 'unreachable'."""
    server.default = Reply(status=503, message="overloaded")
    recs = run(server, "openai", [item(), item()], llm_max_retries=2, llm_concurrency=1)
    assert len(server.requests) == 6
    assert all("503" in r["fallback_reason"] and not r["fallback_reason"].startswith(UNREACHABLE) for r in recs)


def test_llm_failure():
    ok = {"fallback_reason": None}
    assert llm_failure([ok, {"fallback_reason": "no parseable candidates"}]) is None
    assert llm_failure([]) is None
    assert "no item got an LLM answer" in llm_failure([{"fallback_reason": "openai call failed: 401"}] * 2)
    assert llm_failure([ok, {"fallback_reason": f"{UNREACHABLE}: x"}]).startswith(UNREACHABLE)


# ---------------------------------------------------------------- refinement loop (no server)

def test_refine_keeps_best_scored_candidate():
    it = item()
    prompts: list[str] = []
    answers = iter([json.dumps(["birds fly", "the cat sat on the mat", "a door"]),
                    "1. the cat sat on the mat near a door\n2. dogs bark\n- the cat sat on the mat near the door"])

    def call(req: dict) -> str:
        prompts.append(req["prompt"])
        return next(answers)

    r = refine(it["neighbours"], it["target"], embed, instruction_proposer(call, 3), rounds=2)
    assert r["reconstruction"] == TRUE and r["rounds"] == 2
    scores = dict((t, s) for t, s in r["candidates"])
    assert r["score"] == max(scores.values()) and best_neighbour(it) in scores
    assert "the cat sat on the mat" in prompts[1] and "birds fly" in prompts[1]


def test_refine_never_scores_below_best_neighbour():
    it = item()
    r = refine(it["neighbours"], it["target"], embed, instruction_proposer(lambda req: '["birds fly south", "rain"]', 2), 2)
    assert r["reconstruction"] == best_neighbour(it)
    assert r["score"] >= max(s for _, s in it["neighbours"]) - 1e-6


def test_refine_later_round_failure_keeps_earlier_candidates():
    it = item()
    answers = iter(['["the cat sat on the mat"]'])

    def call(req: dict) -> str:
        try:
            return next(answers)
        except StopIteration:
            raise LLMError("openai call failed: 503") from None

    r = refine(it["neighbours"], it["target"], embed, instruction_proposer(call, 2), rounds=3)
    assert r["rounds"] == 1 and r["reconstruction"] == "the cat sat on the mat"


# ---------------------------------------------------------------- small pieces

def test_parse_candidates():
    assert parse_candidates('Sure! ```json\n["a", "b", "a", 3]\n``` hope it helps') == ["a", "b"]
    assert parse_candidates('[1] is a note\n["x y"]') == ["x y"]
    assert parse_candidates('1. "first one"\n2) second\n- third\n* fourth\nnot this') == \
        ["first one", "second", "third", "fourth"]
    assert parse_candidates("no list here") == []
    assert parse_candidates(json.dumps([f"s{i}" for i in range(30)]), limit=4) == ["s0", "s1", "s2", "s3"]


def test_choose_backend(monkeypatch):
    assert choose_backend(None, "openai") == "similarity"
    assert choose_backend("llm", "gemini") == "gemini"
    monkeypatch.setenv("SEMANTIC_RECON_BACKEND", "claude")
    assert choose_backend(None, "gemini") == "claude"
    assert choose_backend("Local", "openai") == "local"
    with pytest.raises(UserError, match="not a decoding backend"):
        choose_backend("llama", "openai")


def test_one_backend_list():
    import llm_callers
    import semcomp.decoders as decoders

    assert llm_callers.BACKENDS is LLM_BACKENDS and decoders.LLM_BACKENDS is LLM_BACKENDS


def test_llm_error_is_a_user_error():
    assert issubclass(LLMError, UserError) and issubclass(LLMError, RuntimeError) and LLMError.exit_code == 2


def test_fusion_without_the_llm_extra_picks_by_the_judge_and_says_so(monkeypatch, caplog):
    """llm_pick_lm needs llama.cpp; `fusion` promises no install, so without it the pick is the
    judge's and one warning names the install. The `local` backend, which needs it anyway, stops."""
    from semcomp.decoders import text_decoder

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp raises ImportError
    cfg = validate({"llm_pick_lm": 0.1, "llm_edit_steps": 0})
    with caplog.at_level(logging.WARNING):
        fuse = text_decoder(cfg, "fusion", None)
    assert "pip install -r requirements-llm.txt" in caplog.text
    items = [{"neighbours": [("the cat sat", 0.9), ("a dog ran", 0.5)], "target": np.array([1.0, 0.0])}]
    out = fuse(items, lambda texts: np.array([[1.0, 0.0]] * len(texts)))
    assert out[0]["fallback_reason"] is None and out[0]["method"] == "fusion"
    with pytest.raises(UserError, match="requirements-llm.txt"):
        text_decoder(cfg, "local", None)
