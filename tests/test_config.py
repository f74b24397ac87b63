import json
import subprocess
import sys
from pathlib import Path

import pytest

from semcomp.config import SCHEMA, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_is_valid_and_keeps_original_keys():
    cfg = load_config(ROOT / "vqvae_config.json")
    original = ["device", "dataset_split", "sample_size", "batch_size", "test_fraction", "pq_M",
                "vqvae_hidden_dim", "vqvae_embedding_dim", "vqvae_num_embeddings", "vqvae_learning_rate",
                "vqvae_epochs", "embedding_dimension"]
    assert set(original) <= set(json.loads((ROOT / "vqvae_config.json").read_text()))
    assert set(cfg) == set(SCHEMA)


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
