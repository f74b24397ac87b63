import json
import subprocess
import sys
from pathlib import Path

import pytest

from semcomp.config import SCHEMA, ConfigError, load_config, validate

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_config_is_valid_and_every_value_in_it_is_used():
    shipped = {k: v for k, v in json.loads((ROOT / "vqvae_config.json").read_text()).items()
               if not k.startswith("_")}
    cfg = load_config(ROOT / "vqvae_config.json")  # an unknown or dead key would be refused here
    assert {k: cfg[k] for k in shipped} == shipped


RANGED = [(k, *key.check, key.types[0]) for k, key in SCHEMA.items() if isinstance(key.check, tuple)]
CHOICES = [(k, sorted(key.check)) for k, key in SCHEMA.items() if isinstance(key.check, set)]
WRONG_TYPE = {int: "12abc", float: "x", str: 5, bool: 1, list: "wikitext"}


@pytest.mark.parametrize("key, lo, hi, kind", RANGED, ids=[r[0] for r in RANGED])
def test_ranges_are_inclusive_and_enforced(key, lo, hi, kind):
    step = 1 if kind is int else 1e-6
    for bound, outside in ((lo, -step), (hi, step)):
        if bound is None:
            continue
        assert validate({key: bound})[key] == bound
        with pytest.raises(ConfigError, match="out of range"):
            validate({key: bound + outside})


@pytest.mark.parametrize("key, choices", CHOICES, ids=[c[0] for c in CHOICES])
def test_choices_are_enforced(key, choices):
    for value in choices:
        assert validate({key: value})[key] == value
    with pytest.raises(ConfigError, match="must be one of"):
        validate({key: "no-such-choice"})


@pytest.mark.parametrize("key", list(SCHEMA))
def test_wrong_types_are_refused(key):
    kind = SCHEMA[key].types[0]
    with pytest.raises(ConfigError, match=key):
        validate({key: WRONG_TYPE[kind]})
    if kind in (int, float):  # JSON true is not a number here, although bool subclasses int
        with pytest.raises(ConfigError, match="must be"):
            validate({key: True})


@pytest.mark.parametrize("override, message", [
    ("sample_size=abc", "must be int"),
    ("sample_size=-5", "out of range"),
    ("test_fraction=1.5", "out of range"),
    ("device=tpu", "must be one of"),
    ("vqvae_num_embeddings=500", "power of two"),
    ("vqvae_epoch=3", "did you mean 'vqvae_epochs'"),
    ("show_progress_bar=1", "must be bool"),
    ("nonsense", "key=value"),
])
def test_bad_values_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_overrides_and_int_to_float():
    cfg = load_config(None, ["vqvae_learning_rate=1", "data_dir=/x", "sample_size=7"])
    assert cfg["vqvae_learning_rate"] == 1.0 and isinstance(cfg["vqvae_learning_rate"], float)
    assert cfg["data_dir"] == "/x" and cfg["sample_size"] == 7


def test_unknown_key_in_file(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"sampel_size": 10}))
    with pytest.raises(ConfigError, match="did you mean 'sample_size'"):
        load_config(p)
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(p)


@pytest.mark.parametrize("script", ["pipeline.py", "decode.py", "evaluate.py"])
def test_scripts_exit_2_with_one_line_before_work(script, tmp_path):
    r = subprocess.run([sys.executable, script, "--set", "vqvae_epoch=3", "--artifacts", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "did you mean 'vqvae_epochs'" in lines[0]
    assert not any(tmp_path.iterdir())  # nothing was written


@pytest.mark.parametrize("script", ["pipeline.py", "decode.py", "evaluate.py"])
def test_help(script):
    r = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--config" in r.stdout and "--set" in r.stdout


@pytest.mark.parametrize("override", ["vqvae_learning_rate=NaN", "test_fraction=NaN", "llm_timeout=NaN",
                                      "qinco_max_seconds=1e309", "llm_temperature=-Infinity"])
def test_non_finite_numbers_are_refused(override):
    """JSON's NaN and 1e309 (infinity) passed every range check: an Adam traceback after embedding,
    'cosine nan', every LLM call failing, an OverflowError after training."""
    with pytest.raises(ConfigError, match="finite number"):
        load_config(None, [override])


def test_config_that_is_a_folder_or_not_utf8_is_one_line(tmp_path):
    bad = tmp_path / "latin1.json"
    bad.write_bytes('{"seed": 1, "_comment": "caf\xe9"}'.encode("latin-1"))
    for path, why in ((tmp_path, "not a file"), (bad, "UTF-8")):
        with pytest.raises(ConfigError, match=why):
            load_config(path)
