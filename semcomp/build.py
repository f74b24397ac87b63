"""The pipeline: corpus -> sentences -> embeddings -> VQ-VAE -> codes + dictionary index + manifest."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import platform
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .artifacts import FORMAT_VERSION, MANIFEST, atomic_write, read_json, staged_run, write_json
from .codes import row_bytes, write_codes
from .config import bits_per_code
from .data import load_paragraphs, read_text_input, sample_split, split_sentences
from .embed import Embedder, sha256_file

log = logging.getLogger("semcomp")
PACKAGES = ["torch", "sentence-transformers", "transformers", "faiss-cpu", "numpy", "safetensors", "pysbd"]


class Timer(dict):
    """Per-stage wall times in seconds."""

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t = time.perf_counter()
        yield
        self[stage] = round(self.get(stage, 0.0) + time.perf_counter() - t, 3)


MODEL_KEYS = ("quantizer", "seed", "batch_size", "vqvae_")
INDEX_KEYS = ("index_factory", "pq_M", "index_opq_iterations")


def _digest(emb: np.ndarray, cfg: dict[str, Any], prefixes: tuple[str, ...]) -> str:
    """Cache key: the training vectors and every config key that shapes what is trained on them."""
    h = hashlib.sha256(np.ascontiguousarray(emb).tobytes())
    h.update(json.dumps({k: v for k, v in sorted(cfg.items()) if k.startswith(prefixes)}).encode())
    return h.hexdigest()[:24]


def cached_sentences(paragraphs: list[str], cache_dir: Path) -> list[str]:
    """Segmentation is the slowest non-model step, so its result is kept per corpus content."""
    key = hashlib.sha256("\n".join(paragraphs).encode("utf-8")).hexdigest()[:24]
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


def build(cfg: dict[str, Any], input_path: str | None = None) -> dict[str, Any]:
    """Run the whole pipeline; returns the manifest written to artifacts/manifest.json."""
    from .baselines import FaissCodec
    from .codec import Codec, closed_loop_encode, model_files
    from .index import build_index, dictionary_search, load_index, save_index
    from .vqvae import train_vqvae, usage

    root = Path(cfg["artifacts_dir"])
    cache = root / "cache"
    timer = Timer()
    with timer("load"):
        paragraphs = read_text_input(input_path) if input_path else load_paragraphs(cfg)
    with timer("segment"):
        sentences = cached_sentences(paragraphs, cache)
    if len(sentences) < cfg["sample_size"]:
        log.warning("only %d usable sentences in the corpus (sample_size %d): using all of them",
                    len(sentences), cfg["sample_size"])
    dict_s, test_s = sample_split(sentences, cfg["sample_size"], cfg["test_fraction"], cfg["seed"])
    log.info("%d sentences: %d dictionary, %d held out", len(dict_s) + len(test_s), len(dict_s), len(test_s))

    with timer("embed"):
        embedder = Embedder(cfg["sbert_model"], cfg["device"], cache, cfg["embed_batch_size"],
                            backend=cfg["embed_backend"])
        emb = embedder.encode(dict_s + test_s, show_progress_bar=cfg["show_progress_bar"])
    cfg = {**cfg, "embed_backend": embedder.backend}  # the manifest records what 'auto' chose
    dict_e, test_e = emb[: len(dict_s)], emb[len(dict_s):]

    def epoch_log(row: dict[str, Any]) -> None:
        if cfg["show_progress_bar"]:
            used = min(c["used"] for c in row["codebooks"])
            log.info("epoch %3d  loss %.4f  min codebook use %.0f%%", row["epoch"], row["loss"], 100 * used)

    bits = bits_per_code(cfg)
    k = cfg["vqvae_num_codebooks"]
    files = model_files(cfg["quantizer"])
    # A re-run on the same sentences and settings reuses the trained model and index: training
    # is deterministic for a fixed seed, so retraining would only reproduce the same files.
    model_dir = cache / f"model-{_digest(dict_e, cfg, MODEL_KEYS)}"
    index_file = cache / f"index-{_digest(dict_e, cfg, INDEX_KEYS)}.faiss"
    with timer("train"):
        if (model_dir / "history.json").exists():
            model = Codec.load_model(cfg["quantizer"], model_dir)
            history = read_json(model_dir / "history.json")
        else:
            if cfg["quantizer"] == "vqvae":
                model, history = train_vqvae(dict_e, cfg, log=epoch_log)
            else:  # a FAISS quantiser of the same K x b shape: nothing to log per epoch
                model = FaissCodec.train(cfg["quantizer"], k, bits, dict_e)
                history = [{"epoch": 0, "loss": None, "codebooks": usage(model.encode(dict_e), 1 << bits)}]
            model.save(model_dir / files[0], model_dir / files[1])
            write_json(model_dir / "history.json", history)  # last: marks the cached model complete

    with staged_run(root) as stage:
        with timer("index"):
            if not index_file.exists():
                index = build_index(dict_e, cfg["index_factory"].format(pq_M=cfg["pq_M"]),
                                    cfg["index_opq_iterations"])
                save_index(index, index_file)
            index = load_index(index_file)
            shutil.copyfile(index_file, stage / "index.faiss")
        with timer("encode"):
            for name in files:
                shutil.copyfile(model_dir / name, stage / name)
            fingerprint = bytes.fromhex(sha256_file(stage / files[0])[:16])
            test_codes = closed_loop_encode(model, test_e, cfg["encode_candidates"],
                                            dictionary_search(index, dict_e, cfg), dict_e)
            write_codes(stage / "test.scz", test_codes, bits, fingerprint)
            decoded = model.decode(test_codes)
        with timer("write"):
            _write_lines(stage / "dictionary.txt", dict_s)
            _write_lines(stage / "test.txt", test_s)
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
            "counts": {"sentences_in_corpus": len(sentences), "dictionary": len(dict_s), "test": len(test_s)},
            "bits_per_sentence": k * bits,
            "bytes_per_sentence": row_bytes(k, bits),
            "test_decoded_cosine": float((decoded * test_e).sum(1).mean()) if len(test_e) else None,
            "codebook_usage": history[-1]["codebooks"],  # the training set's codes, after training
            "seconds": dict(timer),
            "files": files,
        }
        manifest["seconds"]["total"] = round(sum(timer.values()), 3)
        write_json(stage / MANIFEST, manifest)
    return manifest


def compress(codec: Any, input_path: str, output: str, show_progress_bar: bool = True) -> dict[str, Any]:
    """A user's text -> sentences -> codes file made by `codec`'s model."""
    sentences = split_sentences(read_text_input(input_path))
    if not sentences:
        from .data import DataError

        raise DataError(f"no sentences found in {input_path}")
    codes = codec.encode(codec.embed(sentences, show_progress_bar=show_progress_bar))
    size = write_codes(output, codes, codec.bits_per_code, codec.fingerprint)
    utf8 = sum(len(s.encode("utf-8")) for s in sentences)
    return {"sentences": len(sentences), "bytes": size, "utf8_bytes": utf8}
