"""`Codec`: the trained model and its dictionary behind one small API."""
from __future__ import annotations

import contextlib
import logging
import zipfile
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import decoders, quantizers
from .artifacts import ArtifactError, atomic_write, load_manifest, verify
from .codes import write_codes
from .config import DEFAULTS, RUN_KEYS
from .data import DataError, read_text_input, split_document
from .embed import Embedder
from .errors import UsageError
from .index import dictionary_search, load_index

DICTIONARY_FILES = ["dictionary.txt", "dictionary.npy", "index.faiss"]

log = logging.getLogger(__name__)


# What a run made before the key existed did: its codes must stay the same, bit for bit.
BEFORE_KEY = {"embed_backend": "torch", "encode_candidates": 1}

Search = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def closed_loop_encode(model: quantizers.Quantizer, x: np.ndarray, n: int, search: Search, dict_emb: np.ndarray,
                       chunk: int = 1024) -> np.ndarray:
    """Codes chosen by analysis-by-synthesis against the dictionary the decoder will search.

    Many codes decode to nearly the same vector; which of them lands nearest the right sentence is
    luck unless the encoder checks. The encoder knows the original, so among the beam's n least-
    distortion codes it keeps the one whose decoded vector's top dictionary hit is closest to the
    original (ties: least distortion). Decoders need nothing new.
    """
    if n <= 1 or not len(x):
        return model.encode(x)
    out = []
    for i in range(0, len(x), chunk):                                # bounds the n-fold decode
        xi = np.asarray(x[i:i + chunk], np.float32)
        cand = model.candidates(xi, n)                               # (rows, n, K), best first
        rows, width, k = cand.shape
        hit, _ = search(model.decode(cand.reshape(-1, k)), 1)
        score = np.einsum("rnd,rd->rn", dict_emb[hit.reshape(rows, width)], xi)
        out.append(cand[np.arange(rows), score.argmax(1)])           # argmax: first of equals
    return np.concatenate(out)


class Codec:
    """codec = Codec.load("artifacts"); codes = codec.encode(texts); emb = codec.decode(codes)."""

    def __init__(self, model: quantizers.Quantizer, cfg: dict[str, Any], artifacts_dir: str | Path,
                 manifest: dict[str, Any] | None = None):
        self.model, self.cfg, self.dir, self.manifest = model, cfg, Path(artifacts_dir), manifest or {}

    @classmethod
    def load(cls, artifacts_dir: str | Path = "artifacts", cfg: dict[str, Any] | None = None) -> "Codec":
        """Load a trained codec; `cfg` overrides run-time keys (device, search_k, llm_*), not the model."""
        manifest = load_manifest(artifacts_dir)
        quantizer = manifest["config"].get("quantizer", "vqvae")
        verify(artifacts_dir, manifest, list(quantizers.FILES[quantizer]))
        try:
            model = quantizers.load(quantizer, artifacts_dir)
        except Exception as e:  # damage the sha256 check cannot see: a manifest edited to match
            raise ArtifactError(f"the {quantizer} model in {artifacts_dir} cannot be loaded ({type(e).__name__}): "
                                f"re-run `python pipeline.py`") from None
        # Keys newer than the run take their defaults, but for what runs made before a key existed did.
        merged = {**DEFAULTS, **BEFORE_KEY, **manifest["config"]}
        if cfg:  # the model's own shape, data and embedding model come from the run that trained it
            merged.update({k: v for k, v in cfg.items() if k in RUN_KEYS
                           and not (k == "embed_backend" and v == "auto")})  # auto: the run's own
        return cls(model, merged, Path(artifacts_dir), manifest)

    @property
    def fingerprint(self) -> bytes:
        return bytes.fromhex(self.manifest["fingerprint"])

    @property
    def bits_per_code(self) -> int:
        return self.model.bits_per_code

    @cached_property
    def embedder(self) -> Embedder:
        return Embedder(self.cfg["sbert_model"], self.cfg["device"], self.dir / "cache",
                        self.cfg["embed_batch_size"], backend=self.cfg["embed_backend"])

    def embed(self, texts: Sequence[str], show_progress_bar: bool = False, cache: bool = True) -> np.ndarray:
        """float32 (n, 384), unit norm. cache=False: past the on-disk cache (for what is not kept)."""
        return self.embedder.encode(list(texts), show_progress_bar=show_progress_bar, cache=cache)

    def judge(self, texts: Sequence[str]) -> np.ndarray:
        """The decoders' judge: `embed` past the cache, which would otherwise gain a chunk for every
        few candidates a decoder scores and throws away."""
        return self.embed(texts, cache=False)

    @cached_property
    def exact_judge(self) -> Callable[[Sequence[str]], np.ndarray] | None:
        """The fp32 graph the int8 judge approximates, for the best few candidates (llm_rescore);
        None when the judge is exact already or llm_rescore is 0."""
        if not self.cfg["llm_rescore"] or self.embedder.backend != "onnx-int8":
            return None
        fp32 = Embedder(self.cfg["sbert_model"], self.cfg["device"], None, self.cfg["embed_batch_size"], backend="onnx")
        fp32.prepare()  # the export (once, about 10 s) runs while the inverter writes
        return lambda texts: fp32.encode(list(texts))

    def encode(self, texts_or_embeddings: str | Sequence[str] | np.ndarray, closed_loop: bool = True) -> np.ndarray:
        """Integer codes (n, num_codebooks) from texts or from their embeddings; a single str is one
        sentence, (1, num_codebooks).

        closed_loop: pick codes against this codec's dictionary (see `closed_loop_encode`);
        False gives the quantiser's own least-distortion codes."""
        x = texts_or_embeddings
        if isinstance(x, str):  # a str is a Sequence[str] of its characters: one code each, not wanted
            x = [x]
        if not isinstance(x, np.ndarray):
            x = list(x)
            if not all(isinstance(t, str) for t in x):
                raise UsageError("encode takes a list of str or an (n, d) array of embeddings")
            x = self.embed(x)
        if x.ndim != 2 or x.shape[1] != self.model.input_dim:
            raise UsageError(f"embeddings must be (n, {self.model.input_dim}), got {x.shape}")
        if not np.isfinite(x).all():  # NaN rows encoded silently to arbitrary codes
            raise UsageError("embeddings hold NaN or infinite values")
        if not closed_loop:
            return self.model.encode(x)
        return closed_loop_encode(self.model, x, self.cfg["encode_candidates"], self.search,
                                  self.dictionary[1])

    def compress_file(self, input_path: str | Path, output: str | Path,
                      show_progress_bar: bool = False) -> dict[str, int]:
        """A user's text file (or folder of .txt/.md) -> a codes file: one code per piece of
        `split_document`, every piece in order, repeats and fragments included, so the codes file
        holds the whole document ('Hi Sarah,' and a repeated 'Ok.' too)."""
        pieces = split_document(read_text_input(input_path))
        if not pieces:
            raise DataError(f"no text found in {input_path}")
        codes = self.encode(self.embed(pieces, show_progress_bar=show_progress_bar))
        size = write_codes(output, codes, self.bits_per_code, self.fingerprint)
        return {"sentences": len(pieces), "bytes": size, "utf8_bytes": sum(len(s.encode("utf-8")) for s in pieces)}

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """float32 (n, 384), unit norm: the decoded embeddings."""
        codes = np.asarray(codes)
        k, size = self.model.num_codebooks, 1 << self.model.bits_per_code
        if codes.ndim != 2 or codes.shape[1] != k:
            raise UsageError(f"codes must be (n, {k}), got {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer):  # floats were truncated silently
            raise UsageError(f"codes must be integers, got {codes.dtype}")
        if codes.size and (codes.min() < 0 or codes.max() >= size):
            raise UsageError(f"codes must be in [0, {size}), got {codes.min()}..{codes.max()}")
        return self.model.decode(codes)

    # -- the dictionary, loaded on first use ---------------------------------------------------
    @cached_property
    def dictionary(self) -> tuple[list[str], np.ndarray, Any]:
        verify(self.dir, self.manifest, DICTIONARY_FILES)
        try:
            texts = (self.dir / "dictionary.txt").read_text(encoding="utf-8").split("\n")
            emb = np.load(self.dir / "dictionary.npy", mmap_mode="r")  # paged in as searches touch it
            index = load_index(self.dir / "index.faiss")
        except (ValueError, RuntimeError) as e:  # as for the model: damage under a matching manifest
            raise ArtifactError(f"the dictionary in {self.dir} cannot be loaded ({type(e).__name__}): "
                                f"re-run `python pipeline.py`") from None
        if len(texts) != len(emb) or index.ntotal != len(emb):
            raise ArtifactError("dictionary.txt, dictionary.npy and index.faiss disagree: re-run `python pipeline.py`")
        return texts, emb, index

    @cached_property
    def inverter(self) -> Any:
        """The model that writes sentences from decoded embeddings (decoders/inverter.py), trained
        by bench/inverter.py into ARTIFACTS/inverter."""
        return decoders.load_inverter(self.dir / "inverter", self.manifest.get("fingerprint"))

    @cached_property
    def word_pairs(self) -> decoders.WordPairs:
        """The dictionary's word n-grams and their counts: what edit search may make and how
        fluent a candidate reads (decoders/edit.py); kept in the cache under the dictionary's sha256
        (a read-only folder builds it each time)."""
        path = self.dir / "cache" / f"ngrams-{self.manifest['files']['dictionary.txt']['sha256'][:24]}.npz"
        try:
            with np.load(path) as z:
                # a cache written before word forms were kept, or with another hashing, is built again
                if "forms" in z.files and "scheme" in z.files and int(z["scheme"][0]) == decoders.WordPairs.scheme:
                    forms = dict(line.split("\t") for line in z["forms"].tobytes().decode("utf-8").split("\n") if line)
                    orders = sum(name.startswith("h") for name in z.files)
                    tables = [(z[f"h{k}"], z[f"c{k}"]) for k in range(1, orders + 1)]
                    return decoders.WordPairs(tables=tables, forms=forms)
        except FileNotFoundError:
            pass
        except (OSError, EOFError, ValueError, KeyError, UnicodeDecodeError, zipfile.BadZipFile) as e:
            # derived data: build it again
            log.warning("word n-gram cache %s is damaged (%s): building it again", path.name, type(e).__name__)
        pairs = decoders.WordPairs(self.dictionary[0])
        forms = "\n".join(f"{low}\t{form}" for low, form in pairs.forms.items()).encode("utf-8")
        with contextlib.suppress(OSError):
            with atomic_write(path) as f:
                np.savez(f, forms=np.frombuffer(forms, np.uint8), scheme=np.array([pairs.scheme]),
                         **{f"{x}{k}": a for k, t in enumerate(pairs.tables, 1) for x, a in zip("hc", t)})
        return pairs

    def search(self, emb: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Top-k dictionary ids and exact cosines for each query embedding."""
        _, dict_emb, index = self.dictionary
        tuned = self.manifest.get("index", {})
        effort = self.cfg["search_effort"] or tuned.get("effort", tuned.get("nprobe"))  # nprobe: older runs
        return dictionary_search(index, dict_emb, self.cfg["search_k"], effort)(emb, k)

    def reconstruct(self, codes: np.ndarray, backend: str | None = "similarity", k: int = 5,
                    originals: Sequence[str] | None = None, ids: Sequence[Any] | None = None,
                    progress: bool = False) -> list[dict[str, Any]]:
        """Codes -> text records: id, original, reconstruction, method, score, neighbours.

        `backend`: "similarity" (nearest dictionary sentence), "fusion" (its clauses recombined),
        "llm" (the config's llm_backend), "local" (llama.cpp in this process) or a hosted LLM (see
        semcomp.decoders); None: env
        SEMANTIC_RECON_BACKEND, else similarity. `score` is always the cosine between the
        reconstruction's embedding and the decoded embedding, so every backend is comparable.
        """
        backend = decoders.choose_backend(backend, self.cfg["llm_backend"])
        if k < 1:  # 0 or less would leave records without a reconstruction
            raise UsageError(f"k (neighbours kept per record) must be at least 1, got {k}")
        # Built first, so a missing key or model fails before any work.
        run = decoders.text_decoder(self.cfg, backend, self.dir / "llm_cache") if backend != "similarity" else None
        inverter = self.inverter if run and (self.cfg["inverter_samples"] or self.cfg["inverter_beam"]) else None
        decoded = self.decode(codes)
        hit_ids, hit_scores = self.search(decoded, max(k, self.cfg["llm_neighbours"]) if run else k)
        records = decoders.similarity_records(hit_ids, hit_scores, self.dictionary[0], originals, ids)
        if run:
            pairs = self.word_pairs  # edits keep to its triples; the winner takes its words' case (case.py)
            exact = self.exact_judge  # first here: its export runs while the inverter writes
            items = decoders.targets(decoded, records, inverter, self.cfg["inverter_samples"],
                                     self.cfg["inverter_temperature"], progress=progress,
                                     rounds=self.cfg["inverter_rounds"], step=self.cfg["inverter_step"], judge=self.judge,
                                     beam=self.cfg["inverter_beam"])
            for rec, res in zip(records, run(items, self.judge, progress, pairs, exact)):
                rec.update(res)
        for rec in records:
            rec["neighbours"] = [list(n) for n in rec["neighbours"][:k]]
        return records
