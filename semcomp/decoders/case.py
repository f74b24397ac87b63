"""Case: how a decoded sentence's words are written, which the judge cannot see.

all-MiniLM-L6-v2 lower-cases what it reads, so edit search and fusion move words between
sentences with whatever case they had there: a neighbour's first word lands mid-sentence ("and He
was"), fusion's lower-cased second clause turns a name small ("alexis Petridis"). Case costs no
cosine, so the winner is written again: each word as it is written mid-sentence in the sentences
it came from (the neighbours, the model's or the inverter's lines), else in its commonest form
mid-sentence in the dictionary; a capital where the best neighbour starts with one, and after a
sentence's end. A best neighbour with no capital at all (a lower-case chat or review) makes the
whole sentence lower case. refine.py keeps the new form only if the judge scores it no lower
(an embedder that reads case may disagree).
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Mapping, Sequence

WORD = re.compile(r"[^\W\d_]+(?:['’.\-][^\W\d_]+)*")  # letters, with inner apostrophes, dots, hyphens: U.S, don't
END = re.compile(r"[.!?]+[\"')\]]*$")  # what closes a sentence after its last word


def mid_forms(sentences: Iterable[str]) -> Counter:
    """How often each word is written each way mid-sentence (not first, nor after a '.', '!' or '?'
    inside a line): {(lower, as written): n}."""
    out: Counter = Counter()
    for s in sentences:
        words = s.split()
        out.update((m.lower(), m) for before, w in zip(words, words[1:]) if not END.search(before)
                   for m in WORD.findall(w))
    return out


def commonest(counts: Counter) -> dict[str, str]:
    """Each word's commonest form in `mid_forms` counts (ties: the first seen)."""
    return {low: form for (low, form), _ in reversed(counts.most_common())}  # the commonest written last


def _capital(word: str) -> str:
    i = next((i for i, c in enumerate(word) if c.isalpha()), None)
    return word if i is None else word[:i] + word[i].upper() + word[i + 1:]


def truecase(text: str, like: Sequence[str], forms: Mapping[str, str] | None = None) -> str:
    """`text` with each word's case from `like` (sentences best first, the first setting the style)
    mid-sentence, else from `forms` (commonest(...) of a corpus), else as it is."""
    if not text or not like:
        return text
    if not any(c.isupper() for c in like[0]):
        return text.lower()
    local = commonest(mid_forms(like))
    forms = forms or {}

    def form(m: re.Match) -> str:
        low = m.group().lower()
        return local.get(low) or forms.get(low) or m.group()

    words = [WORD.sub(form, w) for w in text.split()]
    for i, w in enumerate(words):
        if i == 0 and like[0][:1].isupper() or i > 0 and END.search(words[i - 1]):
            words[i] = _capital(w)
    return " ".join(words)
