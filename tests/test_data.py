
import pytest

from semcomp.config import load_config
from semcomp.data import DataError, detokenize, is_sentence, load_paragraphs, sample_split, split_sentences

from conftest import RAW


@pytest.mark.parametrize("raw, clean", [
    ("It weighs 0 @.@ 7 – 2 @.@ 2 kg ( 1 @.@ 5 lb ) .", "It weighs 0.7 – 2.2 kg (1.5 lb)."),
    ("a well @-@ known , 1 @,@ 000 @-@ strong army", "a well-known, 1,000-strong army"),
    ("He said \" yes \" , and it was n't Starr 's .", 'He said "yes", and it wasn\'t Starr\'s.'),
    ("The cost was $ 5 ; 20 % less !", "The cost was $5; 20% less!"),
])
def test_detokenize(raw, clean):
    assert detokenize(raw) == clean


def test_split_drops_headings_fragments_duplicates():
    paras = [" = Homarus gammarus = ", "",
             " It is closely related to the American lobster , H. americanus . It may grow to a length "
             "of 60 cm ( 24 in ) . It may grow to a length of 60 cm ( 24 in ) . ",
             " Short one . ", " = = Description = = "]
    out = split_sentences(paras)
    assert out == ["It is closely related to the American lobster, H. americanus.",
                   "It may grow to a length of 60 cm (24 in)."]


def test_is_sentence():
    assert is_sentence("The game began development in 2010.")
    assert not is_sentence("Three words here.")
    assert not is_sentence("lowercase start is a fragment of text.")
    assert not is_sentence("No final punctuation in this one")
    assert not is_sentence("It has an <unk> token in it.")


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


def test_sample_split_is_disjoint_and_seeded():
    sents = [f"Sentence number {i} is here." for i in range(1000)]
    d1, t1 = sample_split(sents, 500, 0.1, seed=3)
    d2, t2 = sample_split(sents, 500, 0.1, seed=3)
    assert (d1, t1) == (d2, t2) and len(t1) == 50 and len(d1) == 450
    assert not set(d1) & set(t1)
    assert sample_split(sents, 500, 0.1, seed=4) != (d1, t1)


def test_missing_local_split_and_bad_split(tmp_path):
    with pytest.raises(DataError, match="wiki.train.raw not found"):
        load_paragraphs(load_config(None, [f"data_dir={RAW}", "dataset_split=train"]))
    with pytest.raises(DataError, match="dataset_split"):
        load_paragraphs(load_config(None, [f"data_dir={RAW}", "dataset_split=dev"]))


def test_offline_without_data_dir_says_how_to_point_at_a_copy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from semcomp.embed import hub_online

    hub_online.cache_clear()
    with pytest.raises(DataError, match="data_dir=PATH"):
        load_paragraphs(load_config(None, []))
    hub_online.cache_clear()
