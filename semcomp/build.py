"""The pipeline: corpus -> sentences -> embeddings -> VQ-VAE -> codes + dictionary index + manifest."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import platform
import shutil
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from . import quantizers
from .artifacts import BASELINES, FORMAT_VERSION, MANIFEST, atomic_write, exclusive, read_json, staged_run, write_json
from .codes import row_bytes, write_codes
from .config import INDEX_KEYS, MODEL_KEYS, bits_per_code
from .data import DataError, Split, read_source, split_sentences, split_sources
from .codec import closed_loop_encode
from .embed import Embedder
from .index import build_index, check_factory, choose_factory, dictionary_search, load_index, save_index, tune_effort
from .util import sha256_file

log = logging.getLogger("semcomp")
PACKAGES = ["torch", "sentence-transformers", "transformers", "faiss-cpu", "numpy", "safetensors", "pysbd"]


class Timer(dict):
    """Per-stage wall times in seconds."""

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t = time.perf_counter()
        yield
        self[stage] = round(self.get(stage, 0.0) + time.perf_counter() - t, 3)


def _digest(emb: np.ndarray, cfg: dict[str, Any], keys: tuple[str, ...]) -> str:
    """Cache key: the training vectors and every config key that shapes what is trained on them."""
    h = hashlib.sha256(np.ascontiguousarray(emb).tobytes())
    h.update(json.dumps({k: v for k, v in sorted(cfg.items()) if k in keys}).encode())
    return h.hexdigest()[:24]


def trained_model(cfg: dict[str, Any], emb: np.ndarray, cache: Path,
                  log_epoch: Callable[[dict[str, Any]], None] | None = None) -> tuple[Any, list[dict[str, Any]], Path]:
    """The config's quantiser trained on emb, and the cache folder holding it: loaded when this
    exact training (vectors and MODEL_KEYS) ran before, since training is deterministic for a seed
    and retraining would only reproduce an equal model."""
    folder = cache / f"model-{_digest(emb, cfg, MODEL_KEYS)}"
    if (folder / "history.json").exists():
        return quantizers.load(cfg["quantizer"], folder), read_json(folder / "history.json"), folder
    model, history = quantizers.train(cfg["quantizer"], emb, cfg, log=log_epoch, cache_dir=cache / BASELINES)
    quantizers.save(cfg["quantizer"], model, folder)
    write_json(folder / "history.json", history)  # last: marks the cached model complete
    return model, history, folder


SEGMENTER_VERSION = "2"  # bump when split_sentences changes what it returns: cached splits go stale


def cached_sentences(paragraphs: list[str], cache_dir: Path) -> list[str]:
    """Segmentation is the slowest non-model step, so its result is kept per corpus content."""
    key = hashlib.sha256(("\n".join(paragraphs) + SEGMENTER_VERSION).encode("utf-8")).hexdigest()[:24]
    path = cache_dir / f"sentences-{key}.json"
    if path.exists():
        return read_json(path)
    sentences = split_sentences(paragraphs)
    write_json(path, sentences)
    return sentences


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def _write_lines(path: Path, lines: list[str]) -> None:
    with atomic_write(path, "w") as f:
        f.write("\n".join(lines))


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_write(path) as f:
        np.save(f, arr)


MIN_POINTS_PER_ENTRY = 8  # below this many training sentences per codebook entry, codes go unused
PCA_POINTS = 2 * 384      # FAISS's residual trainer needs more points than dimensions (its PCA)


def fit_to_data(cfg: dict[str, Any], n: int) -> dict[str, Any]:
    """Shrink the codebooks to what n training sentences can fill, or refuse: a 512-entry codebook
    trained on 250 sentences used 4 % of its entries."""
    want = cfg["vqvae_num_embeddings"]
    if n < PCA_POINTS and cfg["vqvae_init"] == "faiss_rq":
        # FAISS's progressive-dimension k-means runs a PCA that needs more points than dimensions
        log.warning("%d training sentences are too few for FAISS's residual trainer (%d+): codebooks "
                    "from greedy residual k-means instead", n, PCA_POINTS)
        cfg = {**cfg, "vqvae_init": "kmeans"}
    if n >= MIN_POINTS_PER_ENTRY * want:
        return cfg
    bits = (n // MIN_POINTS_PER_ENTRY).bit_length() - 1
    if bits < 2:
        raise DataError(f"{n} training sentences are too few: need at least {4 * MIN_POINTS_PER_ENTRY}")
    log.warning("%d training sentences fill codebooks of %d entries, not %d: using %d codebooks x %d bits "
                "(train on %d+ sentences for the configured %d bits)", n, 1 << bits, want,
                cfg["vqvae_num_codebooks"], bits, MIN_POINTS_PER_ENTRY * want, bits_per_code(cfg))
    return {**cfg, "vqvae_num_embeddings": 1 << bits}


def read_sources(cfg: dict[str, Any], input_path: str | None, cache: Path) -> Split:
    """The corpus mix (or the user's --input alone), sampled and split into dictionary and test."""
    sources = [{"name": "text", "path": input_path}] if input_path else cfg["sources"]
    parts = []
    for spec in sources:
        texts, labels = read_source(spec, cfg, segment=lambda paras: cached_sentences(paras, cache))
        log.info("source %s%s: %d sentences", spec["name"], f" ({spec['path']})" if spec.get("path") else "",
                 len(texts))
        parts.append((spec, texts, labels))
    total = sum(len(t) for _, t, _ in parts)
    if cfg["sample_size"] is not None and total < cfg["sample_size"]:
        log.warning("only %d usable sentences in the sources (sample_size %d): using all of them",
                    total, cfg["sample_size"])
    return split_sources(parts, cfg["sample_size"], cfg["test_fraction"], cfg["seed"])


def build(cfg: dict[str, Any], input_path: str | None = None, engine: str = "local") -> dict[str, Any]:
    """Run the whole pipeline; returns the manifest written to artifacts/manifest.json.
    engine "ray": the sentences are embedded into the cache by a Ray actor pool first."""
    check_factory(cfg["index_factory"], cfg["pq_M"])  # before the folder is made: nothing left behind
    with exclusive(cfg["artifacts_dir"]):
        return _build(cfg, input_path, engine)


def _build(cfg: dict[str, Any], input_path: str | None, engine: str) -> dict[str, Any]:
    root = Path(cfg["artifacts_dir"])
    cache = root / "cache"
    timer = Timer()
    embedder = Embedder(cfg["sbert_model"], cfg["device"], cache, cfg["embed_batch_size"],
                        backend=cfg["embed_backend"])
    embedder.prepare()  # a first run's ONNX export overlaps segmentation
    with timer("segment"):
        split = read_sources(cfg, input_path, cache)
    dict_s, test_s = split.dictionary, split.test
    log.info("%d sentences: %d dictionary, %d held out", len(dict_s) + len(test_s), len(dict_s), len(test_s))

    with timer("embed"):
        if engine == "ray":
            from .engine_ray import embed_to_cache

            embed_to_cache(dict_s + test_s, embedder, cfg, show_progress_bar=cfg["show_progress_bar"])
        emb = embedder.encode(dict_s + test_s, show_progress_bar=cfg["show_progress_bar"])
    factory = cfg["index_factory"]
    if factory == "auto":
        factory = choose_factory(len(dict_s), cfg["pq_M"])
    # The manifest records what 'auto' chose, and any codebook size fitted to the data.
    cfg = fit_to_data({**cfg, "embed_backend": embedder.backend, "index_factory": factory}, len(dict_s))
    dict_e, test_e = emb[: len(dict_s)], emb[len(dict_s):]
    del emb

    def epoch_log(row: dict[str, Any]) -> None:
        if cfg["show_progress_bar"]:
            used = min(c["used"] for c in row["codebooks"])
            log.info("epoch %3d  loss %.4f  min codebook use %.0f%%", row["epoch"], row["loss"], 100 * used)

    bits = bits_per_code(cfg)
    k = cfg["vqvae_num_codebooks"]
    files = quantizers.FILES[cfg["quantizer"]]
    # A re-run on the same sentences and settings reuses the trained model and index.
    index_file = cache / f"index-{_digest(dict_e, cfg, INDEX_KEYS)}.faiss"
    with timer("train"):
        model, history, model_dir = trained_model(cfg, dict_e, cache, epoch_log)

    with staged_run(root) as stage:
        with timer("index"):
            if index_file.exists():
                index = load_index(index_file)
            else:
                index = build_index(dict_e, factory.format(pq_M=cfg["pq_M"]), cfg["index_opq_iterations"])
                save_index(index, index_file)
            shutil.copyfile(index_file, stage / "index.faiss")
            # effort (nprobe, efSearch) for recall@10 >= 0.95 on what the decoder searches with: decoded vectors
            queries = test_e if len(test_e) else dict_e[:1000]
            effort, index_recall = tune_effort(index, dict_e, model.decode(model.encode(queries[:1000])),
                                               cfg["search_k"])
        with timer("encode"):
            for name in files:
                shutil.copyfile(model_dir / name, stage / name)
            fingerprint = bytes.fromhex(sha256_file(stage / files[0])[:16])
            test_codes = closed_loop_encode(model, test_e, cfg["encode_candidates"],
                                            dictionary_search(index, dict_e, cfg["search_k"], cfg["search_effort"] or effort), dict_e)
            write_codes(stage / "test.scz", test_codes, bits, fingerprint)
            decoded = model.decode(test_codes)
        with timer("write"):
            _write_lines(stage / "dictionary.txt", dict_s)
            _write_lines(stage / "test.txt", test_s)
            _write_lines(stage / "test.sources.txt", split.test_labels)
            _save_npy(stage / "dictionary.npy", dict_e)
            _save_npy(stage / "test.npy", test_e)
            write_json(stage / "history.json", history)
            files = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                     for p in sorted(stage.iterdir())}
        manifest = {
            "format_version": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "fingerprint": fingerprint.hex(),
            "config": cfg,
            "input": input_path,
            "versions": versions(),
            "counts": {"dictionary": len(dict_s), "test": len(test_s),
                       "test_by_source": dict(Counter(split.test_labels))},
            "bits_per_sentence": k * bits,
            "bytes_per_sentence": row_bytes(k, bits),
            "test_decoded_cosine": float((decoded * test_e).sum(1).mean()) if len(test_e) else None,
            "codebook_usage": history[-1]["codebooks"],  # the training set's codes, after training
            "index": {"factory": factory, "effort": effort, "search_k": cfg["search_k"],
                      "recall_at_10": round(index_recall, 4)},
            "seconds": dict(timer),
            "files": files,
        }
        manifest["seconds"]["total"] = round(sum(timer.values()), 3)
        write_json(stage / MANIFEST, manifest)
    return manifest
