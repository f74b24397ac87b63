"""The final pick by a language model: of the judge's best candidates, the one that reads best.

Edit search climbs the judge's cosine one word at a time, and the sentences at the top differ by a
word or two: some read as text, some as word salad the judge scores just as close. A word n-gram
sees three words at a time (edit.py, `llm_fluency`); a small neural model reads the whole
sentence. Scoring every candidate would cost a forward pass each (thousands a sentence), so only
the final pick asks it, over the `llm_pick_top` best. docs/results.md has what it gives.
"""
from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from .local import load_llama

CONTEXT = 256  # tokens: a candidate is one sentence


class TokenLogProb:
    """`scorer(texts) -> (n,)`: each text's mean log-probability per token under a GGUF model
    (llama.cpp in this process; the packaged SmolLM2-135M by default). Texts that share a start
    reuse its evaluated tokens: the best candidates are mostly edits of one sentence."""

    def __init__(self, model_path: str | None = None, threads: int | None = None):
        self.llama, self.path = load_llama(model_path, threads, CONTEXT, logits_all=True)
        self._lock = threading.Lock()  # one llama.cpp context: one text at a time

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        nll, count = self.nll(texts)
        return -nll / np.maximum(count, 1)

    def nll(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each text's summed negative log-probability of its tokens after the first, and their
        number (what a perplexity over many texts adds up)."""
        toks = [self.llama.tokenize(t.encode("utf-8"), add_bos=True)[:CONTEXT] for t in texts]
        nll, count = np.zeros(len(texts)), np.array([max(len(t) - 1, 0) for t in toks])
        with self._lock:
            for i in sorted(range(len(texts)), key=lambda i: toks[i]):  # neighbours in this order share the most
                nll[i] = self._one(toks[i])
        return nll, count

    def _one(self, toks: list[int]) -> float:
        if len(toks) < 2:
            return 0.0
        done = self.llama.input_ids[:self.llama.n_tokens]
        keep = 0  # tokens whose state and logits are still valid; at least one is evaluated anew
        while keep < min(len(done), len(toks) - 1) and done[keep] == toks[keep]:
            keep += 1
        self.llama.n_tokens = keep  # eval() drops the cache past this point
        self.llama.eval(toks[keep:])
        logits = np.asarray(self.llama.scores[:len(toks) - 1], dtype=np.float64)  # row i predicts token i+1
        top = logits.max(axis=1)
        log_z = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
        return float((log_z - logits[np.arange(len(toks) - 1), toks[1:]]).sum())
