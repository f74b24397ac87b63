"""One flat JSON config shared by every script, validated before any work starts."""
from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

# key -> (default, type(s), check or None, meaning). The first twelve keys are the original
# design's; the rest are what a real run needs. `None` defaults mean "not set".
SCHEMA: dict[str, tuple[Any, tuple[type, ...], Any, str]] = {
    "device": ("auto", (str,), {"auto", "cpu", "cuda"}, "torch device; auto picks cuda when present"),
    "dataset_split": ("validation+test", (str,), None, "corpus split(s), '+'-joined as in HF datasets"),
    "sample_size": (10000, (int,), (2, None), "sentences sampled from the corpus"),
    "batch_size": (256, (int,), (1, None), "VQ-VAE training minibatch size"),
    "test_fraction": (0.1, (float,), (0.0, 1.0), "share of sampled sentences held out (never in the dictionary)"),
    "pq_M": (16, (int,), (1, None), "sub-quantisers of the dictionary's FAISS OPQ+PQ index"),
    "vqvae_hidden_dim": (1024, (int,), (1, None), "width of the encoder/decoder hidden layer"),
    "vqvae_embedding_dim": (384, (int,), (1, None), "latent dimension the codebooks quantise"),
    "vqvae_num_embeddings": (512, (int,), (2, 1 << 16), "entries per codebook (a power of two: log2 bits per code)"),
    "vqvae_learning_rate": (1e-3, (float,), (0.0, 1.0), "Adam learning rate"),
    "vqvae_epochs": (5, (int,), (1, None), "training epochs"),
    "embedding_dimension": (384, (int,), (1, None), "SBERT embedding size (384 for all-MiniLM-L6-v2)"),
    "vqvae_num_codebooks": (8, (int,), (1, 64), "codes per sentence"),
    "vqvae_quantization": ("residual", (str,), {"residual", "product"}, "how the codebooks combine"),
    "quantizer": ("vqvae", (str,), {"vqvae", "rq", "opq", "pq"}, "vqvae, or a FAISS quantiser (rq, opq = OPQ+PQ, pq) at the same bits"),
    "vqvae_beam": (8, (int,), (1, 64), "beam width of residual encoding (1: greedy)"),
    "vqvae_train_beam": (8, (int,), (1, 64), "beam width used while training the residual codebooks"),
    "vqvae_init_steps": (5, (int,), (1, 100), "progressive-dimension steps of FAISS's residual k-means (its default 10 doubles training for no measured gain)"),
    "vqvae_init": ("faiss_rq", (str,), {"faiss_rq", "kmeans"}, "codebook init: FAISS residual quantiser training or greedy k-means"),
    "dataset_name": ("wikitext-2-raw-v1", (str,), {"wikitext-2-raw-v1", "wikitext-2-v1", "wikitext-103-raw-v1", "wikitext-103-v1"}, "WikiText configuration"),
    "data_dir": (None, (str,), None, "local folder with wiki.{train,valid,test}.{raw,tokens}; null: Hugging Face hub"),
    "sbert_model": ("sentence-transformers/all-MiniLM-L6-v2", (str,), None, "sentence-transformers model"),
    "embed_batch_size": (64, (int,), (1, None), "sentences per SBERT forward pass"),
    "seed": (0, (int,), (0, None), "seed for sampling, initialisation and training"),
    "artifacts_dir": ("artifacts", (str,), None, "where every script reads and writes"),
    "index_factory": ("OPQ{pq_M},PQ{pq_M}", (str,), None, "FAISS index_factory string; {pq_M} is filled in"),
    "index_opq_iterations": (10, (int,), (1, 100), "OPQ rotation updates while training the index"),
    "encode_candidates": (16, (int,), (1, 256), "closed-loop encoding: of the beam's N best codes keep the one that decodes to the dictionary sentence closest to the original (1: plain)"),
    "search_nprobe": (16, (int,), (1, 1 << 20), "inverted lists visited per query when index_factory has IVF"),
    "search_k": (32, (int,), (1, 10000), "dictionary candidates re-ranked by exact cosine"),
    "show_progress_bar": (True, (bool,), None, "progress bars on long work"),
    "embed_backend": ("auto", (str,), {"auto", "torch", "onnx", "onnx-int8"}, "SBERT runtime; auto: onnx-int8 for the packaged model on CPU (3-4x faster, cosine 0.994 to torch), else torch"),
    "llm_backend": ("openai", (str,), {"openai", "claude", "gemini"}, "LLM for decode --backend llm (env SEMANTIC_RECON_BACKEND)"),
    "llm_model": (None, (str,), None, "model name; null: the backend's documented default"),
    "llm_base_url": (None, (str,), None, "API base URL (OpenAI-compatible servers: Ollama, vLLM, llama.cpp)"),
    "llm_rounds": (2, (int,), (1, 20), "embedding-guided refinement rounds"),
    "llm_candidates": (5, (int,), (1, 20), "candidate sentences asked for per round"),
    "llm_neighbours": (5, (int,), (1, 50), "dictionary neighbours shown to the LLM"),
    "llm_timeout": (30.0, (float,), (0.1, 600.0), "seconds per LLM call"),
    "llm_max_retries": (4, (int,), (0, 20), "retries on 429/5xx/timeouts, with exponential backoff"),
    "llm_concurrency": (4, (int,), (1, 64), "LLM calls in flight at once"),
}


class ConfigError(ValueError):
    """Bad config: scripts print it as one line and exit with code 2."""


def _check(key: str, value: Any) -> Any:
    default, types, check, _ = SCHEMA[key]
    if value is None and default is None:
        return None
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise ConfigError(f"config key '{key}' must be {types[0].__name__}, got {type(value).__name__} {value!r}")
    if isinstance(check, set) and value not in check:
        raise ConfigError(f"config key '{key}' must be one of {sorted(check)}, got {value!r}")
    if isinstance(check, tuple):
        lo, hi = check
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"config key '{key}' = {value!r} is out of range [{lo}, {hi if hi is not None else 'inf'}]")
    return value


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
    out = {k: d for k, (d, *_) in SCHEMA.items()}
    for key, value in cfg.items():
        if key.startswith("_"):  # "_comment"-style keys document the file
            continue
        if key not in SCHEMA:
            raise _unknown(key)
        out[key] = _check(key, value)
    n = out["vqvae_num_embeddings"]
    if n & (n - 1):
        raise ConfigError(f"config key 'vqvae_num_embeddings' must be a power of two, got {n}")
    if out["vqvae_quantization"] == "product" and out["vqvae_embedding_dim"] % out["vqvae_num_codebooks"]:
        raise ConfigError("product quantization needs vqvae_embedding_dim divisible by vqvae_num_codebooks")
    if out["embedding_dimension"] % out["pq_M"]:
        raise ConfigError(f"embedding_dimension {out['embedding_dimension']} is not divisible by pq_M {out['pq_M']}")
    return out


def load_config(path: str | Path | None = "vqvae_config.json", overrides: list[str] | None = None) -> dict[str, Any]:
    """Defaults, then the JSON file (if any), then `key=value` overrides; validated as a whole."""
    cfg: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} not found (pass --config PATH)")
        try:
            cfg = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {p} is not valid JSON: {e}") from None
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
