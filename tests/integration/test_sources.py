"""Corpus mixes: the `sources` config, diverse-en with its per-line sources, pooling and held-out splits."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED
from semcomp.config import ConfigError, load_config
from semcomp.data import DataError, read_diverse_en, split_sources

DIVERSE = SHARED / "diverse-en"


@pytest.mark.parametrize("bad, says", [
    ('[{"name": "reddit"}]', "name one of"),
    ('[{"name": "text"}]', "needs a path"),
    ('[{"name": "wikitext", "cap": 0}]', "cap must be at least 1"),
    ('[{"name": "wikitext", "holdout": 1.5}]', "holdout must be in"),
    ('[{"name": "wikitext", "spilt": "train"}]', "unknown key 'spilt'"),
    ('{"name": "wikitext"}', "must be a list"),
])
def test_bad_sources_are_one_clear_config_error(bad, says):
    with pytest.raises(ConfigError, match=says):
        load_config(None, [f"sources={bad}"])


def test_the_general_config_loads_and_names_the_shared_data():
    cfg = load_config("configs/general.json")
    assert [s["name"] for s in cfg["sources"]] == ["diverse-en", "wikitext"]
    assert cfg["sample_size"] is None and cfg["eval_sources"][0]["split"] == "test"


def test_diverse_en_lines_carry_their_source():
    texts, labels = read_diverse_en(DIVERSE, "test")
    assert len(texts) == len(labels) == 15_038
    assert len(set(labels)) == 16 and all(lab.startswith("diverse-en/") for lab in labels)
    with pytest.raises(DataError, match="split"):
        read_diverse_en(DIVERSE, "validation")
    with pytest.raises(DataError, match="sources.tsv"):
        read_diverse_en(SHARED / "stsb", "test")


def test_pooling_caps_dedups_and_holds_out_per_source():
    a = [f"a{i}" for i in range(100)]
    b = [f"b{i}" for i in range(50)] + a[:10]  # ten repeats of source a: kept once, as a's
    parts = [({"name": "text", "path": "a", "holdout": 0.0}, a, ["A"] * 100),
             ({"name": "text", "path": "b", "cap": 30}, b, ["B"] * 60)]
    split = split_sources(parts, None, 0.2, seed=0)
    assert len(split.dictionary) + len(split.test) == 130  # 100 of a, b capped at 30 of its 50 new
    assert set(split.test_labels) == {"B"} and len(split.test) == 6  # a holds nothing out; 20 % of b
    assert not set(split.test) & set(split.dictionary)
    again = split_sources(parts, None, 0.2, seed=0)
    assert again == split  # seeded
    sampled = split_sources(parts, 40, 0.2, seed=0)
    assert len(sampled.dictionary) + len(sampled.test) == 40


def test_small_corpora_get_codebooks_they_can_fill_or_one_line(caplog):
    from semcomp.build import fit_to_data

    cfg = load_config(None, [])
    assert fit_to_data(cfg, 9000) is cfg  # 512 entries: 17 sentences an entry
    fitted = fit_to_data(cfg, 250)
    assert fitted["vqvae_num_embeddings"] == 16 and "using 8 codebooks x 4 bits" in caplog.text
    with pytest.raises(DataError, match="too few"):
        fit_to_data(cfg, 20)


def test_a_small_own_corpus_builds_a_model_sized_to_it(tmp_path, caplog):
    """60 sentences of a user's notes: no traceback, no degenerate 512-entry codebooks, no index
    training (exact search), and codes that decode back to the right neighbourhood."""
    from semcomp import Codec
    from semcomp.build import build

    topics = ["the weather", "our budget", "the new hire", "lunch plans", "the server outage", "a book"]
    notes = tmp_path / "notes.txt"
    notes.write_text("\n".join(f"Note {i}: we talked about {topics[i % 6]} again on day {i} of the month."
                               for i in range(60)), encoding="utf-8")
    cfg = load_config(None, [f"artifacts_dir={tmp_path / 'art'}", "show_progress_bar=false", "vqvae_epochs=1",
                             "embed_backend=torch"])
    m = build(cfg, str(notes))
    assert m["counts"]["dictionary"] == 54 and m["index"]["factory"] == "Flat"
    assert m["config"]["vqvae_num_embeddings"] == 4 and "fill codebooks of 4 entries" in caplog.text
    assert min(c["used"] for c in m["codebook_usage"]) >= 0.75
    codec = Codec.load(tmp_path / "art")
    texts = (tmp_path / "art" / "test.txt").read_text(encoding="utf-8").split("\n")
    found = codec.reconstruct(codec.encode(texts))
    assert np.mean([r["score"] for r in found]) > 0.5
