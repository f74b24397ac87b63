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


def _doubled(keys: Sequence[str], at: Sequence[int]) -> bool:
    """Whether a word next to a position in `at` is the same word again ('and and', 'the The'): the
    judge's cosine barely notices one, a reader always does. `keys`: the words keyed, between the
    start and end marks (word i is keys[i + 1])."""
    return any(0 <= i < len(keys) - 3 and keys[i + 1] and keys[i + 1] == keys[i + 2]
               for a in at for i in (a - 1, a))  # only the pairs beside the edit: this runs for every edit


def _digest(gram: Sequence[str]) -> int:
    """A stable 64-bit hash (Python's own is per process), so a table can be kept on disk."""
    return int.from_bytes(hashlib.blake2b("\x1f".join(gram).encode("utf-8"), digest_size=8).digest(),
                          "little", signed=True)


# An edit search asks for the same few thousand grams again and again (each edit of a sentence
# shares all but one word with the others). Cached, and looked up in one batch (`allow`), the
# filtered edits of a 25-word sentence with 48 words took 17 ms instead of 75 (measured).
_hash = functools.lru_cache(maxsize=1 << 18)(_digest)


class WordPairs:
    """The word n-grams of a corpus (orders 1 to n, sentence start and end marks included) as
    sorted 64-bit hashes with their counts: what edits may make (`allow`: every new n-gram seen)
    and how much a sentence reads like the corpus (`fluency`); and how it writes each word
    (`forms`). 75 MB on disk for the general codec's 285k sentences (128k words, 1.4M pairs, 3.1M
    triples), so `Codec.word_pairs` builds it once and keeps it in the cache."""

    def __init__(self, sentences: Iterable[str] = (), n: int = 3,
                 tables: Sequence[tuple[np.ndarray, np.ndarray]] | None = None, forms: Mapping[str, str] | None = None):
        sentences = list(sentences) if tables is None or forms is None else []
        # how the corpus writes each word mid-sentence (case.py): the case the judge cannot see
        self.forms = dict(forms) if forms is not None else commonest(mid_forms(sentences))
        if tables is None:
            grams: list[list[int]] = [[] for _ in range(n)]
            for s in sentences:
                words = ["<s>", *(_key(w) for w in s.split()), "</s>"]
                for k in range(1, n + 1):
                    grams[k - 1] += [_digest(words[i:i + k]) for i in range(len(words) - k + 1)]
            tables = [np.unique(np.asarray(g, np.int64), return_counts=True) for g in grams]
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

    def allows(self, words: Sequence[str], at: int) -> bool:
        """Whether every n-gram of `words` (sentence start/end marks included) that covers
        position `at` occurs in the corpus."""
        return bool(self.allow([(words, (at,))])[0])

    def allow(self, edited: Sequence[tuple[Sequence[str], Sequence[int]]]) -> np.ndarray:
        """`allows` for many (words, positions) at once, every position checked: one table lookup
        for all their grams."""
        return self.allow_keys([(["<s>", *map(_key, words), "</s>"], at) for words, at in edited])

    def allow_keys(self, edited: Sequence[tuple[Sequence[str], Sequence[int]]]) -> np.ndarray:
        """`allow` for words already keyed (`_key`), start and end marks included: `edits` keys a
        sentence once, not once for each of its thousands of edits."""
        n, grams, owner = self.n, [], []
        for j, (keys, at) in enumerate(edited):
            starts = {s for a in at for s in range(max(0, a + 2 - n), min(a + 1, len(keys) - n) + 1)}
            grams += [_hash(tuple(keys[s:s + n])) for s in starts]
            owner += [j] * len(starts)
        ok = np.ones(len(edited), bool) if len(self.table) else np.zeros(len(edited), bool)
        if grams and len(self.table):
            h = np.asarray(grams, np.int64)
            ok[np.asarray(owner)[~(self.count(n, h) > 0)]] = False
        return ok

    def fluency(self, sentences: Sequence[str], backoff: float = 0.4) -> np.ndarray:
        """Mean log score of each sentence's words and end mark under the corpus's n-grams, with
        stupid backoff (Brants et al., 2007): count(context + word) / count(context) at the longest
        context seen, times `backoff` for each order backed off; a word never seen scores as half a
        count of order 1. Not a probability: a ranking of how much a sentence reads like the corpus."""
        n, owner, top = self.n, [], []
        gram: list[list[int]] = [[] for _ in range(n)]  # gram[k-1][p]: the k-gram ending at position p
        ctx: list[list[int]] = [[] for _ in range(n)]  # ctx[k-1][p]: its first k-1 words
        for j, s in enumerate(sentences):
            keys = ["<s>", *(_key(w) for w in s.split()), "</s>"]
            for i in range(1, len(keys)):
                owner.append(j)
                top.append(min(n, i + 1))
                for k in range(1, n + 1):
                    g = tuple(keys[i - k + 1:i + 1]) if k <= i + 1 else ()
                    gram[k - 1].append(_hash(g) if g else 0)
                    ctx[k - 1].append(_hash(g[:-1]) if k > 1 and g else 0)
        if not owner:
            return np.zeros(len(sentences))
        top_k = np.asarray(top)
        score = backoff ** (top_k - 1) * 0.5 / max(self.total, 1)  # a word never seen
        done = np.zeros(len(owner), bool)
        for k in range(n, 0, -1):
            c = np.where(k <= top_k, self.count(k, np.asarray(gram[k - 1], np.int64)), 0)
            seen = np.maximum(self.count(k - 1, np.asarray(ctx[k - 1], np.int64)), 1) if k > 1 else self.total
            use = ~done & (c > 0)
            score = np.where(use, backoff ** (top_k - k) * c / seen, score)
            done |= use
        who = np.asarray(owner)
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
    `pairs`, only edits whose new word triples occur in its corpus. None makes a word twice in a row."""
    words = sentence.split()
    if not words:
        return []
    words[-1], tail = _end(words[-1])
    vocab = list(dict.fromkeys(_end(v)[0] for v in vocab))
    # Edits are checked on keys (sliced from the sentence's, keyed once) and written out only when
    # kept: a third of the decoding time went to building and keying every edit's words (profiled).
    keys, vkeys = ["<s>", *map(_key, words), "</s>"], [_key(v) for v in vocab]
    made: list[tuple[list[str], tuple[int, ...], int, int]] = []  # (new keys, positions made new, at, word)
    for i in range(len(words) + 1):
        if i < len(words):
            # a deletion joins words i-1 and i+1: the n-grams around the join (position i-1 and i)
            made.append((keys[:i + 1] + keys[i + 2:], (i - 1, i), i, -1))
        for k, v in enumerate(vocab):
            made.append((keys[:i + 1] + [vkeys[k]] + keys[i + 1:], (i,), i, 2 * k))
            if i < len(words) and v.lower() != words[i].lower():  # not a change of case
                made.append((keys[:i + 1] + [vkeys[k]] + keys[i + 2:], (i,), i, 2 * k + 1))
    made = [m for m in made if len(m[0]) > 2 and not _doubled(m[0], m[1])]
    keep = pairs.allow_keys([m[:2] for m in made]) if pairs is not None else [True] * len(made)
    out = (" ".join(_written(words, i, op, vocab)) + tail for (_, _, i, op), k in zip(made, keep) if k)
    return [s for s in dict.fromkeys(out) if s and s != sentence]


def _written(words: list[str], i: int, op: int, vocab: Sequence[str]) -> list[str]:
    """The words of one edit at position `i`: op -1 deletes word i; 2k inserts vocab[k] before it;
    2k + 1 puts vocab[k] in its place."""
    if op < 0:
        return words[:i] + words[i + 1:]
    return words[:i] + [vocab[op // 2]] + words[i + op % 2:]
