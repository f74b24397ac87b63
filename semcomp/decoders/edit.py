"""Edit search: one-word edits of the best candidates, judged by the embedder, kept while they help.

The neighbours often hold the right words in the wrong sentence. Each step tries every one-word
edit of the best sentences not yet tried (a word deleted, replaced by a word of the top neighbours,
or one inserted) and keeps what the judge scores higher. An edit must make only word triples that
occur somewhere in the dictionary: without that rule the judge (SBERT) climbed to token soup
("decided to abandon abandon and seldom used"), which it scores as close as the real sentence.
A sentence's end punctuation stays at its end, so a neighbour's last word ("you.") never lands
mid-sentence. A few steps cost a few hundred embedder calls and no model; docs/generative.md has
the figures.
"""
from __future__ import annotations

import functools
import hashlib
import re
from typing import Iterable, Mapping, Sequence

import numpy as np

from .case import END, commonest, mid_forms

_WORD = re.compile(r"[\w']+")


@functools.lru_cache(maxsize=1 << 16)
def _key(word: str) -> str:
    """What a word pair is checked on: lower case, punctuation off ('Germany,' and 'germany' alike).
    Keeping a capital first letter apart ('and He was' needs a corpus that writes it so) read
    better by SmolLM2's perplexity (-6 / -11 %) but cost -0.007 cosine and WikiText chrF 19.3
    against 20.0 (docs/results.md, Fluency), so case is not kept."""
    return "".join(_WORD.findall(word.lower()))


# Word n-grams are hashed from their words' hashes (a chain of splitmix64 mixes), so the grams of
# thousands of edits are hashed in one numpy expression: edits spent most of their time hashing
# each gram's joined string (docs/inverter.md, measured). Stable across processes (Python's own
# hash is not), so the tables can be kept on disk; `WordPairs.scheme` names this hashing there.
_M1, _M2, _STEP = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


@functools.lru_cache(maxsize=1 << 18)
def _word_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")


def _hashes(keys: Sequence[str]) -> np.ndarray:
    return np.fromiter(map(_word_hash, keys), np.uint64, len(keys))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of 64-bit words that spreads every bit of its input."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _grams(h: np.ndarray) -> np.ndarray:
    """The hashes (int64, as the tables sort them) of the n-grams whose words' hashes are the rows
    of `h` (..., n); a 1-gram's is its word's."""
    g = h[..., 0]
    for t in range(1, h.shape[-1]):
        g = _mix(g * _STEP + h[..., t])
    return g.view(np.int64)


def _marked(words: Sequence[str]) -> list[str]:
    """Words keyed, between the sentence start and end marks that n-grams include."""
    return ["<s>", *map(_key, words), "</s>"]


def _tokens(sentences: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every sentence's keyed words with start and end marks, hashed into one flat array; for each
    token, the index its sentence starts at and the sentence's number."""
    keys = [_marked(s.split()) for s in sentences]
    lens = np.fromiter(map(len, keys), np.int64, len(keys))
    return (_hashes([k for ks in keys for k in ks]), np.repeat(np.cumsum(lens) - lens, lens),
            np.repeat(np.arange(len(keys)), lens))


class WordPairs:
    """The word n-grams of a corpus (orders 1 to n, sentence start and end marks included) as
    sorted 64-bit hashes with their counts: what edits may make (`allow`: every new n-gram seen)
    and how much a sentence reads like the corpus (`fluency`); and how it writes each word
    (`forms`). 75 MB on disk for the general codec's 285k sentences (128k words, 1.4M pairs, 3.1M
    triples), so `Codec.word_pairs` builds it once and keeps it in the cache."""

    scheme = 2  # the gram hashing (above); tables kept under another scheme are built again

    def __init__(self, sentences: Iterable[str] = (), n: int = 3,
                 tables: Sequence[tuple[np.ndarray, np.ndarray]] | None = None, forms: Mapping[str, str] | None = None):
        sentences = list(sentences) if tables is None or forms is None else []
        # how the corpus writes each word mid-sentence (case.py): the case the judge cannot see
        self.forms = dict(forms) if forms is not None else commonest(mid_forms(sentences))
        if tables is None:
            flat, first, _ = _tokens(sentences)
            tables = []
            for k in range(1, n + 1):
                at = np.arange(max(len(flat) - k + 1, 0))
                whole = first[at] == first[at + k - 1]  # grams inside one sentence
                windows = np.lib.stride_tricks.sliding_window_view(flat, k)[whole] if len(at) else np.zeros((0, k), np.uint64)
                tables.append(np.unique(_grams(windows), return_counts=True))
        self.tables = [(np.asarray(h, np.int64), np.asarray(c, np.int64)) for h, c in tables]
        self.n = len(self.tables)
        self.table = self.tables[-1][0]  # the n-grams edits must keep to
        self.total = int(self.tables[0][1].sum())  # tokens, marks included

    def count(self, k: int, hashes: np.ndarray) -> np.ndarray:
        """How often each k-gram (by hash) occurs in the corpus."""
        h, c = self.tables[k - 1]
        if not len(h):
            return np.zeros(len(hashes), np.int64)
        i = np.searchsorted(h, hashes).clip(max=len(h) - 1)
        return np.where(h[i] == hashes, c[i], 0)

    def known(self, grams: np.ndarray) -> np.ndarray:
        """Whether each n-gram (by hash, any shape) occurs in the corpus. Each distinct gram is looked
        up once, in order: the table is larger than the CPU's caches (half the lookup time, measured)."""
        if not len(self.table):
            return np.zeros(grams.shape, bool)
        distinct, back = np.unique(grams.ravel(), return_inverse=True)
        return (self.count(self.n, distinct) > 0)[back].reshape(grams.shape)

    def allows(self, words: Sequence[str], at: int) -> bool:
        """Whether every n-gram of `words` (sentence start/end marks included) that covers
        position `at` occurs in the corpus."""
        return bool(self.allow([(words, (at,))])[0])

    def allow(self, edited: Sequence[tuple[Sequence[str], Sequence[int]]]) -> np.ndarray:
        """`allows` for many (words, positions) at once, every position checked."""
        out = []
        for words, at in edited:
            h, n = _hashes(_marked(words)), self.n
            starts = sorted({s for a in at for s in range(max(0, a + 2 - n), min(a + 1, len(h) - n) + 1)})
            grams = _grams(h[np.add.outer(starts, np.arange(n))]) if starts else np.zeros(0, np.int64)
            out.append(bool(len(self.table)) and bool(self.known(grams).all()))
        return np.asarray(out, bool)

    def fluency(self, sentences: Sequence[str], backoff: float = 0.4) -> np.ndarray:
        """Mean log score of each sentence's words and end mark under the corpus's n-grams, with
        stupid backoff (Brants et al., 2007): count(context + word) / count(context) at the longest
        context seen, times `backoff` for each order backed off; a word never seen scores as half a
        count of order 1. Not a probability: a ranking of how much a sentence reads like the corpus."""
        if not sentences:
            return np.zeros(0)
        flat, first, owner = _tokens(sentences)
        p = np.flatnonzero(np.arange(len(flat)) > first)  # every token but a start mark, after its context
        top = np.minimum(self.n, p - first[p] + 1)  # the longest gram ending at p inside its sentence
        score = backoff ** (top - 1) * 0.5 / max(self.total, 1)  # a word never seen
        done = np.zeros(len(p), bool)
        for k in range(self.n, 0, -1):
            window = flat[np.maximum(p[:, None] - k + 1 + np.arange(k), 0)]
            c = np.where(k <= top, self.count(k, _grams(window)), 0)
            seen = np.maximum(self.count(k - 1, _grams(window[:, :-1])), 1) if k > 1 else self.total
            use = ~done & (c > 0)
            score = np.where(use, backoff ** (top - k) * c / seen, score)
            done |= use
        who = owner[p]
        return np.bincount(who, np.log(score), len(sentences)) / np.bincount(who, minlength=len(sentences))


def _end(word: str) -> tuple[str, str]:
    """A word and the sentence-end punctuation after it: 'you."' -> ('you', '."')."""
    m = END.search(word)
    return (word[:m.start()], m.group()) if m and m.start() else (word, "")


def vocabulary(neighbours: Sequence[tuple[str, float]], top: int = 3, limit: int = 16) -> list[str]:
    """Words of the `top` best neighbours (best first, each once, case kept, end punctuation off),
    at most `limit`; words of one or two letters are left out (they rarely carry the meaning the
    judge scores)."""
    words = [_end(w)[0] for t, _ in neighbours[:top] for w in t.split()]
    words = [w for w in words if len(w.strip(",;:\"'()")) > 2]
    return list(dict.fromkeys(words))[:limit]


def edits(sentence: str, vocab: Sequence[str], pairs: WordPairs | None = None) -> list[str]:
    """One-word edits of `sentence`: each word deleted, each word replaced by a vocabulary word, a
    vocabulary word inserted before each word; the sentence's end punctuation stays last. With
    `pairs`, only edits whose new word n-grams occur in its corpus. None makes a word twice in a row."""
    words = sentence.split()
    if not words:
        return []
    words[-1], tail = _end(words[-1])
    vocab = list(dict.fromkeys(_end(v)[0] for v in vocab))
    nw, nv = len(words), len(vocab)
    # Every edit is checked as arrays of indices into one pool of hashed keys (the sentence's with
    # its marks, then the vocabulary's) and written out only when kept: building and checking each
    # edit in Python took a third of the decoding time (profiled; docs/inverter.md).
    keys = [*_marked(words), *map(_key, vocab)]
    pool, blank = _hashes(keys), np.array([not k for k in keys])
    # in the order they are written out: at each position the deletion, then each word inserted and swapped in
    i = np.repeat(np.arange(nw + 1), 1 + 2 * nv)
    op = np.tile(np.arange(-1, 2 * nv), nw + 1)  # -1 deletes word i; 2k inserts vocab[k] before it; 2k + 1 swaps it in
    # a swap that only changes case is no edit (a last True column keeps the lookup inside with no vocabulary)
    recased = np.array([[v.lower() == w.lower() for v in vocab] + [True] for w in [*words, ""]], bool)
    swap = op % 2 == 1
    valid = np.where(op < 0, i < nw, ~swap | ((i < nw) & ~recased[i, np.maximum(op, 0) // 2]))
    i, op = i[valid], op[valid]
    word = nw + 2 + np.maximum(op, 0) // 2  # the pool index of the word put in
    shift = np.where(op < 0, 1, np.where(op % 2 == 1, 0, -1))  # where the old words after the edit sit in the pool
    length = nw + 2 - shift  # of the edited key list, marks included

    def at(j: np.ndarray) -> np.ndarray:
        """The pool index of position j (rows: edits) of each edited key list; the new word sits at
        i + 1 (the marks first)."""
        e = (slice(None),) + (None,) * (j.ndim - 1)
        return np.where(j <= i[e], j, np.where((j == i[e] + 1) & (op[e] >= 0), word[e], j + shift[e])).clip(0, len(pool) - 1)

    # a word twice in a row beside the edit: pairs (q, q + 1) of words, q from i - 1 (deletions) to i + 1
    q = i[:, None] + np.arange(-1, 2)
    a, b = at(q), at(q + 1)
    doubled = ((q >= 1) & (q + 1 <= length[:, None] - 2) & ((q >= i[:, None]) | (op[:, None] < 0))
               & ~blank[a] & (pool[a] == pool[b])).any(axis=1)
    keep = (length > 2) & ~doubled
    if pairs is not None:
        n = pairs.n
        # every n-gram over the new word, or over the join a deletion makes (positions i and i + 1)
        s = i[:, None] + 2 - n - (op[:, None] < 0) + np.arange(n + 1)
        need = (s >= 0) & (s <= length[:, None] - n) & ((op[:, None] < 0) | (np.arange(n + 1) < n))
        seen = np.ones(need.shape, bool)
        seen[need] = pairs.known(_grams(pool[at(s[:, :, None] + np.arange(n))[need]]))
        keep &= seen.all(axis=1) & bool(len(pairs.table))
    out = (" ".join(_written(words, int(x), int(o), vocab)) + tail for x, o in zip(i[keep], op[keep]))
    return [e for e in dict.fromkeys(out) if e and e != sentence]


def _written(words: list[str], i: int, op: int, vocab: Sequence[str]) -> list[str]:
    """The words of one edit at position `i`: op -1 deletes word i; 2k inserts vocab[k] before it;
    2k + 1 puts vocab[k] in its place."""
    if op < 0:
        return words[:i] + words[i + 1:]
    return words[:i] + [vocab[op // 2]] + words[i + op % 2:]
