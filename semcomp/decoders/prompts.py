"""What the language model is shown: never a vector, only sentences and their similarity scores.

Two forms. The instruction prompt asks a hosted model for a JSON list of candidates. The
completion prompt is a few-shot list that the model continues by one line: small models
(SmolLM2-135M) answered the instruction prompt with parseable JSON 3 times in 10, and continued
the list with a sentence every time (issue 21).
"""
from __future__ import annotations

import json
import re
from typing import Sequence

Scored = Sequence[tuple[str, float]]


def build_prompt(neighbours: Scored, num_candidates: int, previous: Scored = ()) -> str:
    """Instruction prompt: neighbour sentences with their similarity to the hidden sentence, and
    the model's previous scored guesses."""
    lines = [
        "A hidden sentence was compressed to a meaning vector. Below are reference sentences with "
        "their cosine similarity to the hidden sentence's meaning (1.0 = same meaning, about 0.2 "
        "or less = unrelated).",
        "",
        "Reference sentences (similarity: sentence):",
        *(f"{s:.3f}: {t}" for t, s in neighbours),
    ]
    if previous:
        lines += [
            "",
            "Your earlier guesses, scored the same way (higher is closer):",
            *(f"{s:.3f}: {t}" for t, s in previous),
            "",
            "Keep what raised the score, change what did not, and aim higher than the best guess.",
        ]
    lines += [
        "",
        f"Write {num_candidates} different candidate sentences for the hidden sentence: each one "
        "sentence, sharing the meaning the references have in common and weighting the more "
        "similar ones more. Match their style (topic words, names, numbers).",
        f"Reply with only a JSON array of {num_candidates} strings.",
    ]
    return "\n".join(lines)


COMPLETION_HEADER = "Sentences that all say nearly the same thing:\n"


def completion_prompt(neighbours: Scored, previous: Scored = ()) -> str:
    """Few-shot list prompt: the neighbours, least similar first, then the best earlier guesses,
    least similar first; the model writes the next line. Closest last, because a small model
    borrows most from the lines just before its own. The neighbours' lines stay the same from
    round to round, so llama.cpp reuses their evaluated prefix."""
    lines = [t for t, _ in sorted(neighbours, key=lambda p: p[1])]
    lines += [t for t, _ in sorted(previous, key=lambda p: p[1]) if t not in lines]
    return COMPLETION_HEADER + "".join(f"- {' '.join(t.split())}\n" for t in lines) + "-"


def first_line(text: str) -> str:
    """The sentence a completion call wrote: its first non-empty line, list marker and quotes off."""
    for line in text.splitlines():
        line = line.strip().lstrip("-*\u2022 ").strip().strip('"').strip()
        if line:
            return line[:1000]
    return ""


_BULLET = re.compile(r"^\s*(?:\d+[.):]|[-*\u2022])\s+(.+?)\s*$")


def parse_candidates(text: str, limit: int = 20) -> list[str]:
    """A JSON array of strings anywhere in text (code fences, preambles), else numbered/bulleted lines."""
    found: list[str] = []
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\[", text):
        try:
            value, _ = decoder.raw_decode(text, m.start())
        except ValueError:
            continue
        if isinstance(value, list) and any(isinstance(v, str) for v in value):
            found = [v for v in value if isinstance(v, str)]
            break
    if not found:
        found = [m.group(1) for line in text.splitlines() if (m := _BULLET.match(line))]
    out: list[str] = []
    for s in found:
        s = s.strip().strip('"').strip()
        if s and s not in out:
            out.append(s[:1000])
    return out[:limit]
