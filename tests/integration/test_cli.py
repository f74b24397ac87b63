"""The scripts' shared CLI (one-line user errors, quiet consoles, help) and decode.py end to end."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fake_llm_server import FakeLLMServer, closed_port_url

from semcomp import cli
from semcomp.artifacts import ArtifactError
from semcomp.config import ConfigError
from semcomp.errors import UsageError, UserError
from semcomp.config import BACKEND_ENV
from semcomp.decoders import UNREACHABLE, LLMError, choose_backend

ROOT = Path(__file__).resolve().parents[2]


def script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != BACKEND_ENV}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**base, **(env or {})})


def held_out(root: Path) -> int:
    from semcomp.codes import read_codes

    return len(read_codes(root / "test.scz").codes)


def main_exit(exc: BaseException, capsys) -> tuple[int, str]:
    def run() -> int:
        raise exc

    with pytest.raises(SystemExit) as e:
        cli.main(run)
    return e.value.code, capsys.readouterr().err


@pytest.fixture
def keep_logger_levels():
    levels = {n: logging.getLogger(n).level for n in cli.NOISY_LOGGERS}
    yield
    for n, level in levels.items():
        logging.getLogger(n).setLevel(level)


# ---------------------------------------------------------------- cli.main

@pytest.mark.parametrize("exc, code", [
    (UsageError("--limit must be at least 1"), 2),
    (ConfigError("unknown config key 'x'"), 2),
    (LLMError("OPENAI_API_KEY is not set:\nexport it"), 2),  # a message over two lines
    (ArtifactError("no artifacts/manifest.json"), 1),
    (UserError("something to fix"), 1),
])
def test_user_errors_are_one_line(exc, code, capsys, keep_logger_levels):
    got, err = main_exit(exc, capsys)
    assert got == code and err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_bugs_keep_their_traceback(keep_logger_levels):
    def run() -> int:
        raise ValueError("an internal bug")

    with pytest.raises(ValueError, match="an internal bug"):
        cli.main(run)


def test_usage_error_is_a_value_error():
    """Library callers that catch ValueError (bad shapes, arguments) still catch it."""
    assert issubclass(UsageError, ValueError) and issubclass(UsageError, UserError)


def test_http_request_logs_are_silenced(keep_logger_levels):
    def run() -> int:
        return 0

    with pytest.raises(SystemExit):
        cli.main(run)
    for name in ("httpx", "httpx2", "httpcore2", "openai", "anthropic", "google_genai.models"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_silences_model_loading_bars(quiet):
    """-q reaches the libraries that draw bars while loading models (they read it on import)."""
    code = ("import sys; from semcomp import cli; cli.config_from(cli.parser('x').parse_args(sys.argv[1:])); "
            "import huggingface_hub.utils as hub, tqdm; from transformers.utils import logging as tl; "
            "print(hub.are_progress_bars_disabled(), tqdm.tqdm(range(1), file=sys.stdout).disable, "
            "tl.is_progress_bar_enabled())")
    env = {k: v for k, v in os.environ.items() if k not in cli.QUIET_ENV}
    r = subprocess.run([sys.executable, "-c", code, *(["-q"] if quiet else [])], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == ("True True False" if quiet else "False False True")


# ---------------------------------------------------------------- help and backend choice

def test_parser_takes_each_scripts_example_and_epilog():
    old = cli.parser("d").format_help()  # the old call still works
    assert "semcomp/config.py" in old and "sample_size" not in old
    new = " ".join(cli.parser("d", set_example="llm_rounds=3", epilog="KEYS HERE").format_help().split())
    assert "--set llm_rounds=3" in new and new.index("KEYS HERE") < new.index("semcomp/config.py")


def test_decode_help_lists_its_keys_and_environment():
    r = script("decode.py", "--help")
    assert r.returncode == 0
    out = r.stdout
    assert "{similarity,fusion,llm,local,openai,claude,gemini}" in out and "sample_size" not in out
    for word in ("llm_backend", "llm_base_url", "llm_model", BACKEND_ENV, "OPENAI_API_KEY", "ANTHROPIC_API_KEY",
                 "GOOGLE_API_KEY", "exit codes"):
        assert word in out, word


def test_choose_backend(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert choose_backend(None, "claude") == "similarity"
    assert choose_backend("llm", "claude") == "claude"
    assert choose_backend("gemini", "claude") == "gemini"
    monkeypatch.setenv(BACKEND_ENV, "llm")
    assert choose_backend(None, "claude") == "claude"
    assert choose_backend("similarity", "claude") == "similarity"  # the flag wins over the environment
    monkeypatch.setenv(BACKEND_ENV, "llama")
    with pytest.raises(UsageError, match=BACKEND_ENV):
        choose_backend(None, "claude")


def test_reconstruct_refuses_bad_arguments_as_user_errors():
    from semcomp.codec import Codec

    codec = Codec(None, {"llm_backend": "openai"}, ".")  # both are refused before the model is touched
    with pytest.raises(UsageError, match="not a decoding backend"):
        codec.reconstruct(np.zeros((1, 4), np.int64), backend="llama")
    with pytest.raises(UsageError, match="at least 1"):
        codec.reconstruct(np.zeros((1, 4), np.int64), k=0)


# ---------------------------------------------------------------- decode.py on a real (small) run

def test_decode_codes_of_another_shape(built, tmp_path):
    from semcomp import Codec
    from semcomp.codes import code_shape, write_codes

    root, _ = built
    codec = Codec.load(root)
    k, b = code_shape(codec.model)
    other = tmp_path / "other.scz"  # well-formed, the right fingerprint, but K+1 codes of b+1 bits
    write_codes(other, np.zeros((3, k + 1), np.int64), b + 1, codec.fingerprint)
    r = script("decode.py", "--artifacts", str(root), "-q", "--codes", str(other))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert f"{k + 1} x {b + 1}" in r.stderr and f"{k} x {b}" in r.stderr


def test_decode_bad_k_is_one_line(built):
    root, _ = built
    r = script("decode.py", "--artifacts", str(root), "-q", "-k", "0")
    assert r.returncode == 2 and r.stderr.strip() == "error: -k must be at least 1"


def test_decode_limit_leaves_the_full_file_alone(built):
    root, _ = built
    full = root / "reconstructions.jsonl"
    before = full.read_bytes() if full.exists() else None
    full.write_text("the full run evaluate.py reads\n")
    try:
        r = script("decode.py", "--artifacts", str(root), "-q", "--limit", "5")
        assert r.returncode == 0, r.stderr[-2000:]
        assert full.read_text() == "the full run evaluate.py reads\n"
        partial = root / "reconstructions.partial.jsonl"
        assert len(partial.read_text().splitlines()) == 5
        assert f"partial run (5 of {held_out(root)} codes)" in r.stdout and str(partial) in r.stdout
    finally:
        (root / "reconstructions.partial.jsonl").unlink(missing_ok=True)
        if before is None:
            full.unlink()
        else:
            full.write_bytes(before)


def test_decode_unreachable_llm_stops_and_exits_3(built, tmp_path):
    """A closed port: the records are still written (similarity fallback), fast, said once, exit 3."""
    root, _ = built
    url = closed_port_url() + "/v1"
    out = tmp_path / "llm.jsonl"
    t = time.perf_counter()
    r = script("decode.py", "--artifacts", str(root), "-q", "--backend", "openai", "--set", f"llm_base_url={url}",
               "-o", str(out))
    # Without the breaker: every item 4 backoffs (0.5 s doubling, with jitter), 4 at a time: 70
    # items (the small run's held-out set) take over 2 minutes.
    assert time.perf_counter() - t < 60
    assert r.returncode == 3, r.stderr[-2000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == held_out(root) >= 50
    assert all(x["method"] == "similarity" and x["fallback_reason"].startswith(UNREACHABLE) for x in records)
    assert r.stderr.count(UNREACHABLE) == 2  # the breaker's warning and the final error line
    assert "fell back to the best neighbour" not in r.stderr


def test_decode_backend_llm_is_the_configs_llm_backend(built, tmp_path):
    root, _ = built
    with FakeLLMServer(lambda prompt: json.dumps(["A sentence from the fake model."])) as server:
        r = script("decode.py", "--artifacts", str(root), "-q", "--backend", "llm", "--limit", "2",
                   "--set", "llm_backend=claude", "--set", f"llm_base_url={server.url}", "--set", "llm_rounds=1",
                   "-o", str(tmp_path / "llm.jsonl"), env={"ANTHROPIC_API_KEY": "sk-ant-test"})
        paths = [req.path for req in server.requests]
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(paths) == 2 and all(p.endswith("/v1/messages") for p in paths)
    assert "HTTP Request" not in r.stderr + r.stdout  # no per-request log lines through the progress bar
    assert all(json.loads(line)["method"] == "llm:claude" for line in (tmp_path / "llm.jsonl").read_text().splitlines())


def test_compress_never_overwrites_the_users_text(built, tmp_path):
    """`--compress notes.txt -o notes.txt` wrote codes over the text, exit 0; now refused in one line."""
    root, _ = built
    notes = tmp_path / "notes.txt"
    notes.write_text("The meeting moved to Thursday. Please bring the slides.\n")
    other = tmp_path / "todo.txt"
    other.write_text("buy milk\n")
    for out, why in ((notes, "is the input"), (other, "not a semcomp codes file"), (tmp_path, "is a folder")):
        r = script("pipeline.py", "--artifacts", str(root), "-q", "--compress", str(notes), "-o", str(out))
        assert r.returncode == 2 and why in r.stderr and r.stderr.count("\n") == 1, r.stderr[-2000:]
    assert notes.read_text().startswith("The meeting") and other.read_text() == "buy milk\n"
    codes = tmp_path / "notes.scz"
    for extra in ((), ("--force",)):  # an earlier codes file may be replaced; --force replaces any file
        target = codes if not extra else other
        r = script("pipeline.py", "--artifacts", str(root), "-q", "--compress", str(notes), "-o", str(target), *extra)
        assert r.returncode == 0, r.stderr[-2000:]
        assert target.read_bytes()[:4] == b"SCZ\x00"
    r = script("pipeline.py", "--artifacts", str(root), "-q", "--compress", str(notes), "-o", str(codes))
    assert r.returncode == 0, r.stderr[-2000:]


def test_decode_into_a_read_only_folder_is_one_line(built, tmp_path):
    """A folder the user cannot write: one line naming it, exit 1, not a PermissionError traceback."""
    if os.geteuid() == 0:  # root writes anywhere: use a path under a file instead (ENOTDIR)
        target = tmp_path / "a-file"
        target.write_text("x")
        out = target / "out.jsonl"
    else:
        target = tmp_path / "ro"
        target.mkdir(mode=0o500)
        out = target / "out.jsonl"
    root, _ = built
    r = script("decode.py", "--artifacts", str(root), "-q", "--limit", "2", "-o", str(out))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert str(target) in r.stderr


def _damage_with_matching_manifest(root: Path, name: str) -> None:
    """Cut an artifact to half its size and update its manifest hash, so only loading it can tell."""
    from semcomp.util import sha256_file

    path = root / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"][name]["sha256"] = sha256_file(path)
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["vqvae.safetensors", "vqvae.json", "index.faiss", "dictionary.npy"])
def test_a_damaged_model_or_index_under_a_matching_manifest_is_one_line(built, tmp_path, name):
    import shutil

    root, _ = built
    shutil.copytree(root, tmp_path / "art", ignore=shutil.ignore_patterns("cache"))
    _damage_with_matching_manifest(tmp_path / "art", name)
    done = script("decode.py", "--artifacts", str(tmp_path / "art"), "-q", "--limit", "2")
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the ") and "cannot be loaded" in last and "re-run `python pipeline.py`" in last
    assert "Traceback" not in done.stderr


def test_evaluate_stsb_that_is_not_stsb_is_one_line(built, tmp_path):
    root, _ = built
    binary = tmp_path / "sts.bin"
    binary.write_bytes(bytes(range(256)) * 8)
    for path in (binary, ROOT / "README.md"):
        done = script("evaluate.py", "--artifacts", str(root), "-q", "--stsb", str(path), "--no-plots")
        assert done.returncode == 2, done.stderr[-2000:]
        assert "is not an STS-B file" in done.stderr or "STS-B pairs" in done.stderr
        assert "Traceback" not in done.stderr


def test_compress_of_an_empty_device_says_no_text(built, tmp_path):
    """/dev/null exists: it holds no text (it was reported as 'does not exist')."""
    root, _ = built
    done = script("pipeline.py", "--artifacts", str(root), "-q", "--compress", "/dev/null",
                  "-o", str(tmp_path / "x.scz"))
    assert done.returncode == 1 and "no text found in /dev/null" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "x.scz").exists()
