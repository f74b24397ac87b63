"""The real WikiText-2 files in ../shared: read as English, segmented alike by one process or several."""
from __future__ import annotations

from conftest import RAW

from semcomp.config import load_config
from semcomp.data import load_paragraphs, split_sentences


def test_real_wikitext_sentences_read_as_english():
    cfg = load_config(None, [f"data_dir={RAW}", "dataset_split=validation"])
    lines = load_paragraphs(cfg)[:200]
    sents = split_sentences(lines)
    assert len(sents) > 100
    text = " ".join(sents)
    for artefact in (" @-@ ", " @,@ ", " @.@ ", " ,", " .", "( ", " )"):
        assert artefact not in text


def test_parallel_segmentation_matches_serial():
    lines = load_paragraphs(load_config(None, [f"data_dir={RAW}", "dataset_split=validation"]))[:3000]
    serial = split_sentences(lines, workers=1)
    assert len(serial) > 1000 and split_sentences(lines, workers=2) == serial  # same order, same dedupe
