"""Corpus loading, WikiText clean-up, sentence segmentation and the dictionary/test split."""
from __future__ import annotations

import multiprocessing
import os
import random
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

SPLIT_FILES = {"train": "train", "validation": "valid", "test": "test"}


class DataError(RuntimeError):
    """Missing or unusable input: scripts print it as one line and exit non-zero."""


# WikiText tokenisation artefacts, undone so sentences read as normal English.
_DETOK = [
    (re.compile(r" @([-,.])@ "), r"\1"),              # 1 @,@ 000 -> 1,000 ; well @-@ known
    (re.compile(r" ([.,;:!?%)\]}])"), r"\1"),          # space before closing punctuation
    (re.compile(r"([(\[{$£]) "), r"\1"),               # space after opening brackets / currency
    (re.compile(r" (n't|'s|'re|'ve|'ll|'d|'m)\b"), r"\1"),  # clitics split off by the tokenizer
    (re.compile(r"\" ([^\"]*?) \""), r'"\1"'),         # " quoted " -> "quoted"
    (re.compile(r"\s+"), " "),
]
_HEADING = re.compile(r"^\s*=+ .* =+\s*$")
_GOOD_START = re.compile(r"^[\"'(]?[A-Z0-9]")
_GOOD_END = re.compile(r"[.!?][\"')]?$")


def detokenize(text: str) -> str:
    for pattern, repl in _DETOK:
        text = pattern.sub(repl, text)
    return text.strip()


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd  # rule-based, handles abbreviations and decimals ("H. americanus", "0.7 kg")

    return pysbd.Segmenter(language="en", clean=False)


def is_sentence(s: str, min_words: int = 4) -> bool:
    """Drop fragments: captions, list items, headings and cut-off text."""
    return (
        len(s.split()) >= min_words
        and "<unk>" not in s
        and bool(_GOOD_START.match(s))
        and bool(_GOOD_END.search(s))
    )


def cores() -> int:
    """The cores this process may run on (a container or taskset may allow fewer than cpu_count())."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _segment(paragraphs: list[str]) -> list[str]:
    seg = _segmenter()
    return [s for para in paragraphs for s in (x.strip() for x in seg.segment(detokenize(para))) if is_sentence(s)]


def split_sentences(paragraphs: Iterable[str], workers: int | None = None) -> list[str]:
    """Paragraph lines -> unique, cleaned sentences in corpus order (headings dropped).

    pysbd is pure Python and the slowest step besides the models (11 s for WikiText-2 validation+test),
    so large inputs are segmented by one process per core."""
    paras = [p for p in paragraphs if p.strip() and not _HEADING.match(p)]
    workers = workers or cores()
    if workers > 1 and len(paras) >= 2000 and "fork" in multiprocessing.get_all_start_methods():
        from concurrent.futures import ProcessPoolExecutor

        step = -(-len(paras) // (4 * workers))  # a few chunks a worker evens out long paragraphs
        # fork: the children run only pysbd's pure-Python rules, never the parent's torch/OpenMP
        # threads, and unlike spawn it works from any __main__ (stdin, notebooks).
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as ex:
            parts = list(ex.map(_segment, [paras[i:i + step] for i in range(0, len(paras), step)]))
    else:
        parts = [_segment(paras)]
    return list(dict.fromkeys(s for part in parts for s in part))


def _split_names(split: str) -> list[str]:
    names = [s.strip() for s in split.split("+") if s.strip()]
    bad = [s for s in names if s not in SPLIT_FILES]
    if not names or bad:
        raise DataError(f"dataset_split {split!r}: use train, validation, test or a '+'-joined mix")
    return names


def local_split_paths(data_dir: str | Path, dataset_name: str, split: str) -> list[Path]:
    ext = "raw" if "raw" in dataset_name else "tokens"
    paths = [Path(data_dir) / f"wiki.{SPLIT_FILES[s]}.{ext}" for s in _split_names(split)]
    for p in paths:
        if not p.exists():
            have = sorted(x.name for x in Path(data_dir).glob("wiki.*")) if Path(data_dir).is_dir() else []
            raise DataError(f"{p} not found (data_dir has: {', '.join(have) or 'no wiki.* files'}); "
                            f"choose another dataset_split or data_dir")
    return paths


def read_text_input(path: str | Path) -> list[str]:
    """A user's own text: a file, or every *.txt / *.md file under a folder; one paragraph a line."""
    p = Path(path)
    if p.is_dir():
        files = sorted(x for x in p.rglob("*") if x.suffix in {".txt", ".md"} and x.is_file())
        if not files:
            raise DataError(f"no .txt or .md files under {p}")
    elif p.is_file():
        files = [p]
    else:
        raise DataError(f"input {p} does not exist")
    lines: list[str] = []
    for f in files:
        try:
            lines += f.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise DataError(f"{f} is not UTF-8 text") from None
    return lines


def load_paragraphs(cfg: dict[str, Any]) -> list[str]:
    """WikiText lines from data_dir when set, else from the Hugging Face hub."""
    if cfg["data_dir"]:
        lines: list[str] = []
        for p in local_split_paths(cfg["data_dir"], cfg["dataset_name"], cfg["dataset_split"]):
            lines += p.read_text(encoding="utf-8").splitlines()
        return lines
    _split_names(cfg["dataset_split"])
    from .embed import hub_online

    offline_hint = ("offline, point at a local copy: --set data_dir=PATH (folder with wiki.valid.raw etc.) "
                    "or use --input FILE")
    if not hub_online():  # fail in seconds, not after the datasets client's retries
        raise DataError(f"the Hugging Face hub is unreachable, so {cfg['dataset_name']} cannot be downloaded; "
                        f"{offline_hint}")
    try:
        import datasets

        ds = datasets.load_dataset("Salesforce/wikitext", cfg["dataset_name"], split=cfg["dataset_split"])
    except (ConnectionError, OSError) as e:
        raise DataError(f"could not load {cfg['dataset_name']} from the Hugging Face hub "
                        f"({type(e).__name__}); {offline_hint}") from None
    return list(ds["text"])


def sample_split(sentences: list[str], sample_size: int, test_fraction: float, seed: int,
                 ) -> tuple[list[str], list[str]]:
    """Seeded sample, then a disjoint (dictionary, held-out test) split."""
    if len(sentences) < 2:
        raise DataError(f"only {len(sentences)} usable sentences in the input; need at least 2")
    rng = random.Random(seed)
    picked = rng.sample(sentences, min(sample_size, len(sentences)))
    n_test = max(1, round(len(picked) * test_fraction)) if test_fraction > 0 else 0
    return picked[n_test:], picked[:n_test]
