"""`hf` sources: Hugging Face datasets read by datasets.load_dataset, here from local folders of
parquet and jsonl files (the hub itself is not reachable from the test machine), and the general
codec's hub recipe, configs/general-hub.json."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from semcomp.config import ConfigError, load_config
from semcomp.data import DataError, read_source, split_sentences, split_sources
from semcomp.util import hub_online

ROOT = Path(__file__).resolve().parents[2]
LICENCES = ("CC BY 4.0", "CC BY-SA 3.0", "CC BY-SA 4.0", "Apache-2.0", "CC0 1.0", "public domain")

REVIEWS = [
    "I bought this kettle for my office. It boils water in two minutes and the handle stays cool.",
    "The strap broke after a week of light use. Customer service never answered my two e-mails.",
    "Great value for the price. My daughter uses it every day and loves the bright colours.",
]
DIALOGUES = [
    ["Hey, are you coming to the party tonight?", "I am not sure yet, I still have work to finish."],
    ["Could you pass me the salt, please?", "Of course, here you go."],
]


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    """datasets writes its Arrow cache under the test's folder, not ~/.cache/huggingface."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def write_parquet(folder: Path, rows: dict[str, list], splits=("train", "test")) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    for split in splits:
        pq.write_table(pa.table(rows), folder / f"{split}.parquet")
    return folder


def write_jsonl(folder: Path, rows: dict[str, list]) -> Path:
    folder.mkdir(parents=True)
    n = len(next(iter(rows.values())))
    lines = [json.dumps({k: v[i] for k, v in rows.items()}) for i in range(n)]
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def hf(path: Path | str, **spec) -> dict:
    """An hf source as the config validates it."""
    return load_config(None, [f"sources={json.dumps([{'name': 'hf', 'path': str(path), **spec}])}"])["sources"][0]


@pytest.fixture
def cfg():
    return load_config(None)


@pytest.mark.parametrize("write", [write_parquet, write_jsonl])
def test_an_hf_folder_gives_its_columns_sentences_labelled_by_name(tmp_path, cfg, write):
    folder = write(tmp_path / "reviews", {"text": REVIEWS, "turns": DIALOGUES + [[]], "stars": [5, 1, 4]})
    texts, labels = read_source(hf(folder, column="text"), cfg)
    assert texts == split_sentences(REVIEWS) and len(texts) == 6  # segmented as the wikitext source is
    assert labels == ["hf/reviews"] * 6
    turns, _ = read_source(hf(folder, column="turns"), cfg)  # a list column: each item a paragraph
    assert turns == split_sentences([t for d in DIALOGUES for t in d])


def test_an_hf_split_and_a_segmenter_are_used(tmp_path, cfg):
    folder = write_parquet(tmp_path / "reviews", {"text": REVIEWS})
    seen = []

    def segment(paragraphs):
        seen.append(list(paragraphs))
        return split_sentences(paragraphs)

    texts, _ = read_source(hf(folder, column="text", split="train+test"), cfg, segment=segment)
    assert seen == [REVIEWS + REVIEWS] and len(texts) == 6  # both splits' rows; duplicates dropped


def test_an_hf_cap_bounds_the_rows_read_and_split_sources_honours_cap_and_holdout(tmp_path, cfg):
    paragraphs = [f"Customer {i} wrote a long review of item {i}. They said item {i} was worth the money."
                  for i in range(3000)]
    folder = write_parquet(tmp_path / "many", {"text": paragraphs}, splits=("train",))
    spec = hf(folder, column="text", cap=100, holdout=0.2)
    texts, labels = read_source(spec, cfg)
    assert 100 <= len(texts) < 1000  # a seeded sample of rows, not all 6,000 sentences segmented
    assert set(texts) <= set(split_sentences(paragraphs))
    assert read_source(spec, cfg)[0] == texts  # seeded
    split = split_sources([(spec, texts, labels)], None, 0.1, seed=0)
    assert len(split.dictionary) + len(split.test) == 100 and len(split.test) == 20
    assert set(split.test_labels) == {"hf/many"} and not set(split.test) & set(split.dictionary)


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_a_missing_column_a_bad_split_and_a_bad_config_name_are_one_line(tmp_path, cfg):
    folder = write_parquet(tmp_path / "reviews", {"text": REVIEWS, "stars": [5, 1, 4]})
    with pytest.raises(DataError) as e:
        read_source(hf(folder, column="body"), cfg)
    assert "no column 'body'" in _one_line(e) and "it has: text, stars" in str(e.value)
    with pytest.raises(DataError) as e:
        read_source(hf(folder, column="stars"), cfg)
    assert "holds int values, not text" in _one_line(e)
    with pytest.raises(DataError) as e:
        read_source(hf(folder, column="text", split="validation"), cfg)
    assert "validation" in _one_line(e) and "'train', 'test'" in str(e.value) and "split" in str(e.value)
    with pytest.raises(DataError) as e:
        read_source(hf(folder, column="text", config="nope"), cfg)
    assert "'nope'" in _one_line(e) and "config" in str(e.value)
    with pytest.raises(DataError) as e:
        read_source(hf(tmp_path / "not" / "here", column="text"), cfg)
    assert "is not a folder" in _one_line(e)


@pytest.mark.parametrize("bad, says", [
    ('[{"name": "hf", "path": "allenai/soda"}]', "needs a path .* and a column"),
    ('[{"name": "hf", "column": "text"}]', "needs a path .* and a column"),
    ('[{"name": "hf", "path": "allenai/soda", "column": 3}]', "column must be str"),
    ('[{"name": "wikitext", "column": "text"}]', "belong to 'hf' sources only"),
    ('[{"name": "hf", "path": "a/b", "column": "text", "colum": "x"}]', "unknown key 'colum'"),
])
def test_bad_hf_source_specs_are_one_config_error(bad, says):
    with pytest.raises(ConfigError, match=says) as e:
        load_config(None, [f"sources={bad}"])
    assert "\n" not in str(e.value)


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_online.cache_clear()
    yield
    hub_online.cache_clear()  # the next caller probes again, without the variable


def test_offline_a_hub_id_is_one_line_naming_the_offline_fix(offline, cfg, tmp_path):
    assert not hub_online()
    with pytest.raises(DataError) as e:
        read_source(hf("allenai/soda", column="dialogue"), cfg)
    message = _one_line(e)
    assert "hub is unreachable" in message and "allenai/soda" in message
    assert "local folder" in message and "configs/general.json" in message
    folder = write_parquet(tmp_path / "reviews", {"text": REVIEWS})  # a local folder still loads offline
    assert len(read_source(hf(folder, column="text"), cfg)[0]) == 6


def test_the_general_hub_config_loads_and_reads_only_the_hub():
    path = ROOT / "configs" / "general-hub.json"
    cfg = load_config(path)
    general = load_config(ROOT / "configs" / "general.json")
    for key in ("sample_size", "quantizer", "vqvae_train_beam", "artifacts_dir"):
        assert cfg[key] == general[key], key
    assert cfg["quantizer"] == "qinco" and cfg["sample_size"] is None
    sources = cfg["sources"] + cfg["eval_sources"]
    assert {s["name"] for s in sources} == {"wikitext", "hf"}
    assert [s for s in sources if s["name"] == "wikitext"] == [{"name": "wikitext", "split": "validation+test",
                                                                  "holdout": 0.1}]  # no path: the hub
    hub = [s for s in sources if s["name"] == "hf"]
    assert len(hub) >= 4 and len({s["path"] for s in hub}) >= 4
    notes = "\n".join(json.loads(path.read_text(encoding="utf-8"))["_sources"])
    for s in hub:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", s["path"]) and not (ROOT / s["path"]).exists(), s
        assert s["column"] and s["cap"] and 0 < s["holdout"] < 0.1, s
        line = next(x for x in notes.splitlines() if x.startswith(s["path"] + " ") or x.startswith(s["path"] + ","))
        assert any(lic in line for lic in LICENCES), line  # each dataset is listed with its licence
        assert f"column {s['column']}" in line, line
    assert 240_000 <= sum(s["cap"] for s in hub) <= 270_000  # with WikiText-2's ~16k: about 280k
