"""Corpus loading, WikiText clean-up, sentence segmentation and the dictionary/test split."""
from __future__ import annotations

import multiprocessing
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import UserError
from .util import cores, hub_online

SPLIT_FILES = {"train": "train", "validation": "valid", "test": "test"}


class DataError(UserError, RuntimeError):
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


def is_sentence(s: str, min_words: int = 4, formal: bool = True) -> bool:
    """Drop fragments: captions, list items, headings and cut-off text.

    formal=False is for text not written in sentences (lower-case chat, transcripts, a line without
    punctuation): there a piece needs no capital start or end punctuation, only enough words."""
    return (
        len(s.split()) >= min_words
        and "<unk>" not in s
        and (not formal or (bool(_GOOD_START.match(s)) and bool(_GOOD_END.search(s))))
    )


def _segment(paragraphs: list[str]) -> list[str]:
    """Every cleaned, bounded piece of each paragraph, in order (split_sentences filters them)."""
    return [s for para in paragraphs for s in _pieces(detokenize(para))]


def split_sentences(paragraphs: Iterable[str], workers: int | None = None) -> list[str]:
    """Paragraph lines -> unique, cleaned sentences in corpus order, for a training set or dictionary:
    headings, fragments and duplicates dropped (a user's document is cut by split_document instead).

    Sentences are cut into pieces of at most MAX_WORDS words (see _pieces). pysbd is pure Python and
    the slowest step besides the models (11 s for WikiText-2 validation+test), so large inputs are
    segmented by one process per core."""
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
    pieces = [s for part in parts for s in part]
    # In text not written in sentences (lower-case chat, transcripts, one unpunctuated line) few
    # pieces are sentence-shaped, and the capital/full-stop test would drop all of it.
    formal = 2 * sum(is_sentence(s, min_words=0) for s in pieces) >= len(pieces)
    return list(dict.fromkeys(s for s in pieces if is_sentence(s, formal=formal)))


# -- bounded pieces ------------------------------------------------------------------------------
# 64 words is ~83 word pieces of English (WikiText averages 1.29 a word), well under the 256 the
# embedder reads. Characters are capped too, at 8 a word (WikiText: mean 6.0 with the space, p99
# 7.9, so English meets the word bound first), for runs without spaces (a URL, a blob) that the
# word count cannot bound. A word piece holds at least one character, so a piece is at most 512
# word pieces; only text whose pieces are single characters (Chinese, runs of symbols) can pass 256,
# and then the embedder reads its first 256 (the characters are still all in the piece).
MAX_WORDS = 64
_CHARS_PER_WORD = 8
# pysbd's time grows with the square of a paragraph's length (100,000 characters: 2.8 s, 200,000:
# 10.6 s), so longer paragraphs are cut first; WikiText's longest is 2,586, so it is never cut.
_PYSBD_CHARS = 4096
_NONSPACE = re.compile(r"\S+")
# Cut points, strongest first: each match ends on the whitespace the text is cut at.
_CUTS = [re.compile(r"[.!?…][\"'’”)\]]*\s"),             # after a sentence end (and its closing quote)
         re.compile(r"(?:[,;:–—]|\s-)[\"'’”)\]]*\s"),      # after a comma, semicolon, colon or dash
         re.compile(r"\s")]                                 # any space


def _bounded(text: str, max_words: int, max_chars: int) -> list[str]:
    """`text` in stripped pieces of at most max_words words and max_chars characters, in order.

    Each piece is cut at the last sentence end in its window, else the last clause punctuation (both
    only past the window's middle, so pieces stay long), else the last space, else mid-word. Linear
    in len(text): only the window is scanned, never the rest."""
    out: list[str] = []
    pos, n = 0, len(text)
    while start_m := _NONSPACE.search(text, pos):
        start = start_m.start()
        limit, words = min(n, start + max_chars), 0
        for m in _NONSPACE.finditer(text, start, limit):
            words += 1
            if words > max_words:
                limit = m.start()  # the window ends before the word over the bound
                break
        if limit == n:  # the rest fits
            out.append(text[start:].rstrip())
            break
        cut = limit  # mid-word: a run without whitespace longer than max_chars
        for i, pattern in enumerate(_CUTS):
            lo = start + (limit - start) // 2 if i < len(_CUTS) - 1 else start + 1
            ends = [m.end() - 1 for m in pattern.finditer(text, lo, limit + 1)]
            if ends:
                cut = ends[-1]
                break
        out.append(text[start:cut].rstrip())
        pos = cut
    return out


def _sentences(text: str) -> list[str]:
    """pysbd's sentences of `text`, or `text` whole where pysbd would lose or change a character."""
    if not re.search(r"[.!?…]", text):  # nothing to split at: skip pysbd's rules
        return [text]
    try:
        sents = _segmenter().segment(text)
    except Exception:  # pysbd raises on some odd inputs (ValueError on '\x1c1.)')
        return [text]
    # pysbd can drop characters ('a.?!' -> ['a.']); the pieces must keep every one.
    return sents if "".join("".join(sents).split()) == "".join(text.split()) else [text]


def _pieces(text: str, max_words: int = MAX_WORDS) -> list[str]:
    """Sentences of `text` cut to at most max_words words (and 8 characters a word) each; every
    non-whitespace character of `text` is in exactly one piece, in order."""
    return [piece for chunk in _bounded(text, _PYSBD_CHARS, _PYSBD_CHARS) for sent in _sentences(chunk)
            for piece in _bounded(sent, max_words, _CHARS_PER_WORD * max_words)]


def split_document(lines: list[str], max_words: int = MAX_WORDS) -> list[str]:
    """A user's document -> every non-blank piece, in order, repeats included, for compression.

    Each line is cut into sentences and each sentence into pieces of at most max_words words (and 8
    characters a word), so every non-whitespace character of `lines` is in exactly one piece and the
    codes of the pieces hold the whole document, in order. Nothing is cleaned or dropped: fragments
    and duplicates are dropped only when building a training set (split_sentences)."""
    if max_words < 1:
        raise ValueError(f"max_words must be at least 1, got {max_words}")
    return [piece for line in lines for piece in _pieces(line, max_words)]


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


TEXT_SUFFIXES = {".txt", ".md"}


def input_files(path: str | Path) -> list[Path]:
    """What `--input` / `--compress` PATH names: a file, or every .txt / .md file under a folder, sorted."""
    p = Path(path)
    if p.is_dir():
        files = sorted(x for x in p.rglob("*") if x.suffix in TEXT_SUFFIXES and x.is_file())
        if not files:
            raise DataError(f"no .txt or .md files under {p}")
        return files
    if p.exists() and not p.is_dir():
        return [p]  # a regular file, or one a user points at on purpose (/dev/stdin, a named pipe)
    raise DataError(f"input {p} does not exist")


def read_text_input(path: str | Path) -> list[str]:
    """A user's own text (see `input_files`); one paragraph a line."""
    files = input_files(path)
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


# -- corpus mixes: a config's `sources`, pooled, sampled and split ---------------------------------
DIVERSE_SPLITS = ("train", "dev", "test")


def read_diverse_en(folder: str | Path, split: str) -> tuple[list[str], list[str]]:
    """diverse-en lines (one cleaned sentence each, no segmentation needed) and each line's source,
    from sources.tsv, as 'diverse-en/<source_name>'."""
    import csv

    folder = Path(folder)
    names = [s.strip() for s in split.split("+") if s.strip()]
    if not names or any(s not in DIVERSE_SPLITS for s in names):
        raise DataError(f"diverse-en split {split!r}: use train, dev, test or a '+'-joined mix")
    if not (folder / "sources.tsv").exists():
        raise DataError(f"{folder} is not the diverse-en folder (no sources.tsv); set the source's path")
    sources: dict[str, list[str]] = {s: [] for s in names}
    with open(folder / "sources.tsv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):  # rows are in line order within each split
            if row["split"] in sources:
                sources[row["split"]].append("diverse-en/" + row["source_name"])
    texts: list[str] = []
    labels: list[str] = []
    for s in names:
        lines = (folder / f"{s}.txt").read_text(encoding="utf-8").split("\n")
        lines = lines[:-1] if lines and not lines[-1] else lines
        if len(lines) != len(sources[s]):
            raise DataError(f"{folder}/{s}.txt has {len(lines)} lines but sources.tsv names {len(sources[s])}")
        texts += lines
        labels += sources[s]
    return texts, labels


# -- Hugging Face datasets: {"name": "hf", "path": ..., "column": ..., "config": ..., "split": ...} --
HF_FIRST_ROWS = 2000  # at most this many rows segmented first under a cap; later reads are sized from their yield
HF_CAP_MARGIN = 0.1   # read 10 % past the cap: split_sources drops what another source holds, then caps
_HF_FILES = "a local folder of .parquet/.jsonl/.csv files"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def hf_label(path: str) -> str:
    """An hf source's sentences' label: 'hf/' and its path's last part ('allenai/soda' -> 'hf/soda')."""
    return "hf/" + path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def load_hf(path: str, config: str | None, split: str):
    """`datasets.load_dataset(path, config, split=split)`, its failures as one-line DataErrors. `path` is a
    hub dataset id (owner/name) or a local folder of data files, which the same call reads offline."""
    folder = Path(path).expanduser()
    if folder.is_dir():
        path = str(folder)
    elif path.startswith(("/", ".", "~")) or path.count("/") > 1 or "\\" in path:
        raise DataError(f"hf source path {path} is not a folder: give a hub dataset id (owner/name) or {_HF_FILES}")
    elif not hub_online():  # fail in seconds, not after the datasets client's retries
        raise DataError(f"the Hugging Face hub is unreachable, so {path} cannot be downloaded; offline, set the "
                        f"source's path to {_HF_FILES} (a copy of the dataset), or build the general codec "
                        f"from the local diverse-en copy: --config configs/general.json")
    import datasets

    try:
        return datasets.load_dataset(path, config, split=split)
    except ValueError as e:  # an unknown split or config name: datasets names the ones there are
        key = "split" if "split" in str(e).lower() else "config"
        raise DataError(f"hf source {path}: {_first_line(e)}; set the source's {key}") from None
    except RuntimeError as e:
        if "scripts are no longer supported" not in str(e):
            raise
        raise DataError(f"{path} is a script-only dataset, which datasets {datasets.__version__} no longer runs; "
                        f"use a copy stored as parquet/json/csv files (on the hub, or {_HF_FILES})") from None
    except (OSError, datasets.exceptions.DatasetsError) as e:  # not found, gated, unreachable, unreadable
        raise DataError(f"could not load {path} ({type(e).__name__}: {_first_line(e)})") from None


def _hf_paragraphs(values: Iterable[Any], path: str, column: str) -> list[str]:
    """A text column's values as paragraphs: a string is one, a list of strings (a dialogue's turns,
    an abstract's sentences) one an item; missing values are skipped."""
    out: list[str] = []
    for value in values:
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, str):
                out.append(item)
            elif item is not None:
                raise DataError(f"{path}: column {column!r} holds {type(item).__name__} values, not text; "
                                f"set the source's column to a text column")
    return out


def read_hf(spec: dict[str, Any], cfg: dict[str, Any],
            segment: Callable[[list[str]], list[str]] = split_sentences) -> tuple[list[str], list[str]]:
    """An hf source's sentences: its text column's values, cut by `segment`, labelled hf/<name>.

    With a cap, rows are read in a seeded random order only until cap + 10 % sentences are found
    (split_sources then samples the cap), so a million-row dataset is not segmented whole."""
    path, column = spec["path"], spec["column"]
    split = spec.get("split") or "train"
    ds = load_hf(path, spec.get("config"), split)
    if column not in ds.column_names:
        raise DataError(f"{path} ({split}) has no column {column!r} (it has: {', '.join(ds.column_names)}); "
                        f"set the source's column")
    ds = ds.select_columns([column])
    cap = spec.get("cap")
    if cap is None:
        sentences = segment(_hf_paragraphs(ds[column], path, column))
    else:
        want = cap + int(cap * HF_CAP_MARGIN) + 1
        order = random.Random(f"{cfg['seed']}/{path}/{split}").sample(range(len(ds)), len(ds))
        found: dict[str, None] = {}  # an ordered set
        done, step = 0, min(HF_FIRST_ROWS, want)
        while done < len(order) and len(found) < want:
            rows = order[done:done + step]
            done += len(rows)
            found.update(dict.fromkeys(segment(_hf_paragraphs(ds[rows][column], path, column))))
            per_row = len(found) / done
            step = max(100, int((want - len(found)) / per_row * 1.2) + 1) if per_row else 4 * step
        sentences = list(found)
    return sentences, [hf_label(path)] * len(sentences)


def read_source(spec: dict[str, Any], cfg: dict[str, Any],
                segment: Callable[[list[str]], list[str]] = split_sentences) -> tuple[list[str], list[str]]:
    """One entry of `sources`: its sentences and a label for each (for per-domain scores)."""
    name = spec["name"]
    if name == "hf":
        return read_hf(spec, cfg, segment)
    if name == "diverse-en":
        return read_diverse_en(spec.get("path") or "../shared/data/diverse-en", spec.get("split") or "train")
    if name == "text":
        sentences = segment(read_text_input(spec["path"]))
        return sentences, ["text"] * len(sentences)
    local = {**cfg, "data_dir": spec.get("path", cfg["data_dir"]),
             "dataset_split": spec.get("split") or cfg["dataset_split"]}
    sentences = segment(load_paragraphs(local))
    return sentences, ["wikitext"] * len(sentences)


@dataclass
class Split:
    dictionary: list[str]  # trained on and searched by the similarity decoder
    test: list[str]        # held out: never in the dictionary
    test_labels: list[str]


def split_sources(parts: list[tuple[dict[str, Any], list[str], list[str]]], sample_size: int | None,
                  test_fraction: float, seed: int) -> Split:
    """Pool the sources (each capped, duplicates across sources dropped), take a seeded sample of
    `sample_size` (None: all), and hold out each source's `holdout` share (default test_fraction)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    pool: list[tuple[str, str, int]] = []  # (sentence, label, source index)
    for i, (spec, texts, labels) in enumerate(parts):
        rows = [(t, lab, i) for t, lab in zip(texts, labels) if t not in seen]
        seen.update(t for t, _, _ in rows)
        if spec.get("cap") is not None and spec["cap"] < len(rows):
            rows = rng.sample(rows, spec["cap"])
        pool += rows
    if len(pool) < 2:
        raise DataError(f"only {len(pool)} usable sentences in the input; need at least 2")
    if sample_size is not None and sample_size < len(pool):
        pool = rng.sample(pool, sample_size)
    out = Split([], [], [])
    for i, (spec, _, _) in enumerate(parts):
        rows = [r for r in pool if r[2] == i]
        frac = spec.get("holdout")
        frac = test_fraction if frac is None else frac
        n_test = max(1, round(len(rows) * frac)) if frac > 0 and len(rows) > 1 else 0
        out.test += [t for t, _, _ in rows[:n_test]]
        out.test_labels += [lab for _, lab, _ in rows[:n_test]]
        out.dictionary += [t for t, _, _ in rows[n_test:]]
    return out
