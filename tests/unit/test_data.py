import random
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from semcomp.config import load_config
from semcomp.data import (MAX_WORDS, DataError, detokenize, is_sentence, load_paragraphs, sample_split,
                          split_document, split_sentences)



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
    # informal text (chat, transcripts): no capital or full stop needed, still enough words
    assert is_sentence("lowercase start and no final punctuation", formal=False)
    assert not is_sentence("ok see you", formal=False)
    assert not is_sentence("it has an <unk> token in it", formal=False)


CHAT = ["hey are you around later", "yeah i think so what time works for you", "lol", "maybe 7 at the usual place",
        "ok sounds good, see you there", "wait which place the one near the station?", "yes that one"]


def test_lower_case_chat_is_not_dropped():
    # Old behaviour: 0 usable sentences (no capitals, almost no full stops). Lines under 4 words
    # are still dropped for a training set.
    assert split_sentences(CHAT) == [line for line in CHAT if len(line.split()) >= 4]


def _unpunctuated_line(chars: int) -> str:
    rng = random.Random(0)
    words = "so then we went to the market and i said we should get some of the bread they had".split()
    out, n = [], 0
    while n < chars:
        out.append(rng.choice(words))
        n += len(out[-1]) + 1
    return " ".join(out)


def test_one_megabyte_unpunctuated_line_is_kept_in_bounded_pieces():
    line = _unpunctuated_line(1_000_000)
    t = time.perf_counter()
    doc = split_document([line])
    doc_s = time.perf_counter() - t
    t = time.perf_counter()
    sents = split_sentences([line])
    sents_s = time.perf_counter() - t
    assert "".join("".join(doc).split()) == "".join(line.split())  # every character, in order
    assert max(len(p.split()) for p in doc) <= MAX_WORDS and len(doc) >= len(line.split()) / MAX_WORDS
    # a training set from it: bounded pieces, duplicates dropped, but not nothing
    assert sents and all(4 <= len(s.split()) <= MAX_WORDS for s in sents)
    # linear: pysbd alone would take minutes on one 1 MB line (its time grows with the square)
    assert doc_s < 10 and sents_s < 10, (doc_s, sents_s)


def test_long_punctuated_line_is_split_into_its_sentences_fast():
    rng = random.Random(1)
    words = "the river rose over the old stone bridge while the town slept".split()
    sents = [" ".join(rng.choice(words) for _ in range(rng.randint(6, 20))).capitalize() + "."
             for _ in range(3000)]  # 202,568 characters on one line
    t = time.perf_counter()
    doc = split_document([" ".join(sents)])
    seconds = time.perf_counter() - t
    assert doc == sents
    assert seconds < 5, seconds  # cut before pysbd: 0.8 s; pysbd on the whole line took 10.4 s


def test_long_sentence_is_cut_at_clause_punctuation():
    clause = "the committee met again in the spring to review the plans"  # 11 words
    sentence = "In the end, " + ", ".join([clause] * 10) + "."           # 113 words
    pieces = split_document([sentence])
    assert len(pieces) == 2 and all(len(p.split()) <= MAX_WORDS for p in pieces)
    assert pieces[0].endswith(",") and " ".join(pieces) == sentence
    assert split_document(["word " * 200], max_words=50) == [("word " * 50).strip()] * 4
    assert split_document(["x" * 1000], max_words=10) == ["x" * 80] * 12 + ["x" * 40]  # 8 characters a word


def test_split_document_keeps_every_line_in_order_with_repeats():
    lines = ["Hi Sarah,", "", "Ok.", "Ok.", "Thanks for the notes. They helped a lot! See you Monday.",
             "Best,", "  Sam  "]
    assert split_document(lines) == ["Hi Sarah,", "Ok.", "Ok.", "Thanks for the notes.", "They helped a lot!",
                                     "See you Monday.", "Best,", "Sam"]


TEXT = st.lists(st.sampled_from(list("ab C.!?,;:'\"()-—…12%$\t\n") + [
    " ", "  ", "Mr.", "e.g.", "U.S.", "\u00a0", "\u2003", "\x1c", "\u200b", "é", "中", "lobster", "The"]),
    max_size=400).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXT, max_size=6), st.integers(1, 12))
@example(["-(a\xa0.?!"], 64)      # pysbd drops the '?!'
@example(["\x1c1.)"], 64)          # pysbd raises ValueError
@example(["a" * 100 + " b"], 1)    # a run longer than the character bound
def test_split_document_keeps_every_character_once_in_bounded_pieces(lines, max_words):
    pieces = split_document(lines, max_words)
    assert "".join("".join(pieces).split()) == "".join("".join(lines).split())
    for p in pieces:
        assert p and p == p.strip() and len(p.split()) <= max_words and len(p) <= 8 * max_words


def test_wikitext_files_read_as_english_sentences(tiny_wikitext):
    """The committed tiny corpus in WikiText's format: headings dropped, tokenisation undone."""
    sents = split_sentences(load_paragraphs(load_config(None, [f"data_dir={tiny_wikitext}", "dataset_split=validation+test"])))
    assert len(sents) == 48 and sents[0].startswith("The Harbour Lighthouse is a stone tower")
    text = " ".join(sents)
    assert "69 ft" in text and "thirty-one years" in text and "£2.4 million" in text
    for artefact in (" @-@ ", " @,@ ", " @.@ ", " ,", " .", "( ", " )", "= "):
        assert artefact not in text


def test_sample_split_is_disjoint_and_seeded():
    sents = [f"Sentence number {i} is here." for i in range(1000)]
    d1, t1 = sample_split(sents, 500, 0.1, seed=3)
    d2, t2 = sample_split(sents, 500, 0.1, seed=3)
    assert (d1, t1) == (d2, t2) and len(t1) == 50 and len(d1) == 450
    assert not set(d1) & set(t1)
    assert sample_split(sents, 500, 0.1, seed=4) != (d1, t1)


def test_missing_local_split_and_bad_split(tiny_wikitext):
    with pytest.raises(DataError, match="wiki.train.raw not found"):
        load_paragraphs(load_config(None, [f"data_dir={tiny_wikitext}", "dataset_split=train"]))
    with pytest.raises(DataError, match="dataset_split"):
        load_paragraphs(load_config(None, [f"data_dir={tiny_wikitext}", "dataset_split=dev"]))


def test_offline_without_data_dir_says_how_to_point_at_a_copy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from semcomp.util import hub_online

    hub_online.cache_clear()
    with pytest.raises(DataError, match="data_dir=PATH"):
        load_paragraphs(load_config(None, []))
    hub_online.cache_clear()
