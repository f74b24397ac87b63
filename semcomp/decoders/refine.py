"""Embedding-guided generation: a language model proposes sentences, the local embedder judges them.

Each candidate is embedded and scored by cosine to the decoded embedding (the target); the next
round shows the model its best-scored guesses (the vec2text idea: see your guess, correct it), and
the best-scored sentence overall wins. The best dictionary neighbour is always a candidate, so by
the judge's own score the result never ends below similarity decoding.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np

from .caller import UNREACHABLE, Breaker
from .case import truecase
from .edit import WordPairs, edits, vocabulary
from .fusion import fusions
from .prompts import Scored, build_prompt, completion_prompt, first_line, parse_candidates
from .senders import LLMError, Request, describe, scrub

log = logging.getLogger(__name__)

Embed = Callable[[list[str]], np.ndarray]
LogProb = Callable[[list[str]], np.ndarray]  # texts -> each one's mean token log-probability
Call = Callable[[Request], str]
# (neighbours best first, earlier scored guesses best first, round) -> new candidate sentences
Propose = Callable[[Scored, Scored, int], list[str]]
BUDGET_SPENT = "LLM time budget spent"  # starts the fallback_reason of items the budget cut off


def instruction_proposer(call: Call, num_candidates: int) -> Propose:
    """One call a round, asking for a JSON list of `num_candidates` sentences."""
    def propose(neighbours: Scored, previous: Scored, round_: int) -> list[str]:
        prompt = build_prompt(neighbours, num_candidates, previous[: max(num_candidates, 10)])
        return parse_candidates(call({"prompt": prompt}), limit=2 * num_candidates)

    return propose


def completion_proposer(call: Call, num_candidates: int, max_tokens: int, temperature: float,
                        shown: int = 2) -> Propose:
    """`num_candidates` sampled continuations of the few-shot list a round, one line each, after the
    `shown` best earlier guesses (more made the prompt, and the lines the model wrote, longer: 4.3
    instead of 2 s a sentence, measured). The seed is the sample's number, so a rerun asks the same
    questions and the response cache answers."""
    def propose(neighbours: Scored, previous: Scored, round_: int) -> list[str]:
        prompt = completion_prompt(neighbours, previous[:shown])
        out = []
        for j in range(num_candidates):
            req = {"prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                   "seed": round_ * num_candidates + j, "stop": ["\n"]}
            if line := first_line(call(req)):
                out.append(line)
        return out

    return propose


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32).reshape(-1)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _cosines(embedded: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Each row's cosine to the unit vector `t`, whether or not the embedder normalised it."""
    e = np.asarray(embedded, dtype=np.float32).reshape(-1, len(t))
    return (e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)) @ t


def refine(neighbours: Scored, target: np.ndarray, embed: Embed, propose: Propose, rounds: int,
           fuse: bool = False, edit_steps: int = 0, edit_words: int = 16, edit_beam: int = 1,
           edit_neighbours: int = 3, edit_lines: int = 0, pairs: WordPairs | None = None, fluency: float = 0.0,
           pick: LogProb | None = None, pick_weight: float = 0.0, pick_top: int = 8,
           proposals: Sequence[str] = (), exact: Embed | None = None, rescore_top: int = 0) -> dict[str, Any]:
    """Propose, embed and score, show the scores, propose again. `fuse`: the neighbours' clause
    fusions are scored first and shown to the model as its earlier guesses; with `rounds` 0 they
    are the only candidates (the `fusion` decoder: no model at all). `proposals`: sentences written
    beforehand (the inverter's samples, inverter.py), scored and shown beside the fusions.
    `edit_steps`: then that many steps of one-word edits (see edit.py) of the `edit_beam` best
    sentences not yet edited, making only word triples `pairs` holds; the search stops early once
    the best `edit_beam` have all been edited (with a beam of 1: no edit beats the best sentence).
    Fusions and edit words come from the `edit_neighbours` best neighbours; edit words also from
    the `edit_lines` best-scored lines the model or the inverter wrote, the words of the
    best-scored sentence first. `fluency`: candidates are ranked by the judge's cosine plus
    this times their fluency under `pairs` (the dictionary's n-grams), and only a candidate the
    judge scores at least as high as the best neighbour can win. `pick` (pick.py): the winner is
    then the one of the `pick_top` best (by that rank, none below the floor) with the highest rank
    plus `pick_weight` times its mean token log-probability under a language model. `exact`: an
    embedder the judge approximates (fp32 for an int8 judge); the `rescore_top` best and the best
    neighbour are scored again by it, and those lead the ranking.

    Returns {"reconstruction", "score", "candidates": [[text, score], ...] best first, "rounds"}.
    Raises LLMError when the first round fails or no round gives a candidate; a failure in a later
    round keeps the candidates scored so far.
    """
    if not neighbours:
        raise LLMError("no dictionary neighbours to show the LLM")
    neighbours = sorted(neighbours, key=lambda p: -p[1])
    t = _unit(target)
    scores: dict[str, float] = {}
    rank: dict[str, float] = {}  # what the search keeps and returns the best of: cosine (+ fluency)

    def score(texts: list[str]) -> None:
        new = list(dict.fromkeys(s for s in texts if s not in scores))
        if new:
            fluent = fluency * pairs.fluency(new) if fluency and pairs is not None else np.zeros(len(new))
            for s, v, f in zip(new, _cosines(embed(new), t), fluent):
                scores[s], rank[s] = float(v), float(v + f)

    score([neighbours[0][0]])  # re-scored with `embed`, so every candidate is on one scale
    fused = (fusions(neighbours, top=edit_neighbours) if fuse else []) + [p for p in proposals if p]
    score(fused)
    made: set[str] = set(fused)  # what the next prompt shows as earlier guesses
    from_model: set[str] = set()
    done = 0
    for r in range(rounds):
        previous = sorted(((s, v) for s, v in scores.items() if s in made), key=lambda p: -p[1])
        try:
            got = propose(neighbours, previous, r)
        except LLMError as exc:
            if not done:
                raise
            log.warning("round %d failed, keeping earlier candidates: %s", r + 1, exc)
            break
        done += 1
        score(got)
        made.update(got)
        from_model.update(got)
    if rounds and not from_model:  # fusions alone are not an answer from the model
        raise LLMError(f"no parseable candidates in {done} LLM response(s)")
    lines = sorted((s for s in set(proposals) | from_model if s in scores), key=lambda s: (-scores[s], s))[:edit_lines]
    # neighbours carry the index's cosines, lines the judge's: the same model (int8 or not), one scale
    sources = sorted(neighbours[:edit_neighbours] + [(s, scores[s]) for s in lines], key=lambda p: -p[1])
    vocab = vocabulary(sources, top=len(sources), limit=edit_words)
    edited: set[str] = set()
    for _ in range(edit_steps):
        frontier = [s for s in sorted(rank, key=lambda s: -rank[s])[:edit_beam] if s not in edited]
        if not frontier:
            break  # no edit beats the best sentences: a local optimum of the judge
        edited.update(frontier)
        score([e for s in frontier for e in edits(s, vocab, pairs)])
    rescored: set[str] = set()
    if exact is not None and rescore_top:
        # The int8 judge errs by about as much as the best candidates differ, and the search climbs
        # its errors; scoring the best few again exactly picks better (docs/llm.md, measured).
        top = list(dict.fromkeys(sorted(rank, key=lambda s: -rank[s])[:rescore_top] + [neighbours[0][0]]))
        for s, v in zip(top, _cosines(exact(top), t)):
            rank[s] += float(v) - scores[s]
            scores[s] = float(v)
        rescored = set(top)
    floor = scores[neighbours[0][0]]  # by the judge, nothing returned is worse than similarity's answer
    ranked = sorted(scores, key=lambda s: (bool(rescored) and s not in rescored, scores[s] < floor, -rank[s]))
    if pick is not None and pick_weight:
        top = [s for s in ranked[:pick_top] if scores[s] >= floor]
        read = pick(top)
        best = top[int(np.argmax([rank[s] + pick_weight * lp for s, lp in zip(top, read)]))]
        ranked.remove(best)
        ranked.insert(0, best)
    _write_case(ranked, scores, embed, t, [n for n, _ in neighbours] + [p for p in proposals if p] + sorted(from_model),
                pairs.forms if pairs is not None else None)
    return {"reconstruction": ranked[0], "score": scores[ranked[0]],
            "candidates": [[s, scores[s]] for s in ranked], "rounds": done}


def _write_case(ranked: list[str], scores: dict[str, float], embed: Embed, target: np.ndarray,
                like: list[str], forms: dict[str, str] | None) -> None:
    """The winner written in the case its words have where they came from (case.py), in place,
    if the judge scores it no lower. A sentence someone wrote (a neighbour, a model's line) stays
    as it was written."""
    best = ranked[0]
    new = truecase(best, like, forms)
    if new == best or best in like:
        return
    old_v, new_v = _cosines(embed([best, new]), target)  # one batch: int8 ONNX scales by batch
    if new_v >= old_v - 1e-6:  # the same tokens to an uncased judge; a cased one may disagree
        if new in scores:
            ranked.remove(new)
        scores[new] = scores[best] + float(new_v - old_v)
        ranked[0] = new


def refine_all(items: Sequence[dict[str, Any]], embed: Embed, propose: Propose, *, rounds: int, neighbours: int,
               label: str, fuse: bool = False, edit_steps: int = 0, edit_words: int = 16, edit_beam: int = 1,
               edit_neighbours: int = 3, edit_lines: int = 0, pairs: WordPairs | None = None,
               fluency: float = 0.0, pick: LogProb | None = None, pick_weight: float = 0.0, pick_top: int = 8,
               exact: Embed | None = None, rescore_top: int = 0, breaker: Breaker | None = None,
               concurrency: int = 1, time_budget: float | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """`refine` each item {"neighbours": [(text, score), ...], "target": (d,)} (and optionally
    "proposals", with the "seconds" they took to write), `concurrency` at a time. An item whose
    calls fail keeps its best neighbour (method "similarity", fallback_reason set) and the batch
    goes on; once the breaker opens, or `time_budget` seconds have passed, the
    items left fall back without calls. `seconds` is each item's own wall time."""
    lock = threading.Lock()
    deadline = time.monotonic() + time_budget if time_budget else None

    def safe_embed(texts: list[str]) -> np.ndarray:
        # SBERT/ONNX runtimes are not all thread-safe, and it is CPU-bound anyway: one at a time.
        with lock:
            return embed(texts)

    def safe_exact(texts: list[str]) -> np.ndarray:
        with lock:
            return exact(texts)

    def one(item: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        nbrs = sorted(((str(t), float(s)) for t, s in item["neighbours"]), key=lambda p: -p[1])[:neighbours]
        try:
            if breaker is not None:
                breaker.check()  # once open: no embedding, no call, no warning per item
            if deadline is not None and time.monotonic() > deadline:
                raise LLMError(f"{BUDGET_SPENT} ({time_budget:g} s, llm_time_budget)")
            r = refine(nbrs, item["target"], safe_embed, propose, rounds, fuse=fuse, edit_steps=edit_steps,
                       edit_words=edit_words, edit_beam=edit_beam, edit_neighbours=edit_neighbours, edit_lines=edit_lines,
                       pairs=pairs, fluency=fluency, pick=pick, pick_weight=pick_weight, pick_top=pick_top,
                       proposals=item.get("proposals", ()), exact=safe_exact if exact is not None else None,
                       rescore_top=rescore_top)
            return {"reconstruction": r["reconstruction"], "score": r["score"], "method": label,
                    "candidates": r["candidates"], "fallback_reason": None, "rounds": r["rounds"],
                    "seconds": round(time.perf_counter() - t0 + item.get("seconds", 0.0), 3)}
        except Exception as exc:  # noqa: BLE001 - one bad item must not end the batch
            reason = scrub(str(exc)) if isinstance(exc, LLMError) else describe(exc)
            if not reason.startswith((UNREACHABLE, BUDGET_SPENT)):  # those are said once, for all items
                log.warning("LLM reconstruction fell back to the best neighbour: %s", reason)
            best = nbrs[0] if nbrs else ("", 0.0)
            return {"reconstruction": best[0], "score": best[1], "method": "similarity",
                    "candidates": [list(best)] if nbrs else [], "fallback_reason": reason, "rounds": 0,
                    "seconds": round(time.perf_counter() - t0, 3)}

    # One at a time runs in this thread: llama.cpp's OpenMP threads ran 2.3x slower when called
    # from a worker thread (measured, 2 cores).
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="llm") if concurrency > 1 \
            else contextlib.nullcontext() as pool:
        results = pool.map(one, items) if pool else map(one, items)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(items), desc=label, unit="sent")
        out = list(results)
    if deadline is not None and any((r["fallback_reason"] or "").startswith(BUDGET_SPENT) for r in out):
        log.warning("%s: the remaining items keep their similarity result", out[-1]["fallback_reason"])
    return out


def llm_failure(records: Sequence[dict[str, Any]]) -> str | None:
    """Why the LLM part of a run failed, or None: the server proved unreachable, or no item got an
    LLM answer at all. Items that fell back one by one (an unparseable answer) are not a failure."""
    reasons = [r.get("fallback_reason") for r in records]
    cut = next((x for x in reasons if x and x.startswith(UNREACHABLE)), None)
    if cut:
        return cut
    if reasons and all(reasons):
        return f"no item got an LLM answer (first: {reasons[0]})"
    return None
