"""Optional ONNX Runtime backend for all-MiniLM-L6-v2, exported offline from the packaged weights.

sentence-transformers' own `backend="onnx"` needs optimum, whose releases pin transformers 4.x, so
the graph is exported here with plain `torch.onnx.export` and run with onnxruntime. `OnnxEncoder`
reproduces the sentence-transformers pipeline (BERT tokenizer, truncation at max_seq_length, mean
pooling over the attention mask, L2 normalisation), so its vectors are interchangeable with
`Embedder`'s up to the numerics of the chosen graph (fp32: cosine 1.000; int8: see export_onnx).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from .embed import ModelError, packaged_model_dir

DIM = 384
MAX_SEQ_LENGTH = 256  # sentence_bert_config.json of all-MiniLM-L6-v2; tokenizer.json itself says 128
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17


def _cores() -> int:
    # The cores this process may run on (a container or taskset may allow fewer than cpu_count()).
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def _temp_dir(near: Path) -> Iterator[Path]:
    # Beside the target, so the final os.replace is a same-filesystem rename.
    tmp = Path(tempfile.mkdtemp(dir=near, prefix=".onnx-export-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _export_torch(model_dir: Path, path: Path) -> None:
    """The BertModel as ONNX: (input_ids, attention_mask, token_type_ids) -> last_hidden_state."""
    import torch
    from transformers import AutoModel

    # Eager attention exports as the plain MatMul/Softmax pattern that onnxruntime's BERT optimizer
    # fuses into one Attention op; the SDPA path exports as a graph it cannot fuse.
    bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()

    class Wrapper(torch.nn.Module):
        # Keyword arguments, so positional order in the traced call cannot silently swap the mask
        # and the token types.
        def __init__(self, m: torch.nn.Module):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state

    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    axes = {"batch": 0, "seq": 1}
    dynamic = {n: {i: a for a, i in axes.items()} for n in (*INPUT_NAMES, "last_hidden_state")}
    # dynamo=False: the TorchScript exporter needs no onnxscript (not a project dependency), exports
    # in ~3 s instead of ~11 s, and its graph is the one the BERT optimizer fuses (see bench).
    with torch.no_grad(), _quiet_export():
        torch.onnx.export(Wrapper(bert), (ids, mask, torch.zeros_like(ids)), str(path),
                          input_names=list(INPUT_NAMES), output_names=["last_hidden_state"],
                          dynamic_axes=dynamic, opset_version=OPSET, do_constant_folding=True,
                          dynamo=False)


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    # The tracer warns about Python branches on shapes in transformers' mask code; for an encoder
    # with a full-length mask those branches are constant, which the fp32 parity test checks.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _optimize(src: Path, dst: Path) -> None:
    """Fuse embeddings+LayerNorm, attention, bias+GELU and skip+LayerNorm into ORT's BERT ops."""
    from onnxruntime.transformers.optimizer import optimize_model

    opt = optimize_model(str(src), model_type="bert", num_heads=12, hidden_size=DIM)
    opt.save_model_to_file(str(dst))


class OnnxEncoder:
    """`encode(list[str]) -> (n, 384) float32` with onnxruntime, as SentenceTransformer.encode does it."""

    def __init__(self, onnx_path: str | Path, tokenizer_dir: str | Path | None = None,
                 threads: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise ModelError(f"{onnx_path} not found; build it with semcomp.onnx_embed.export_onnx "
                             f"or python bench/onnx_embed.py")
        tok_dir = Path(tokenizer_dir) if tokenizer_dir is not None else packaged_model_dir()
        self.max_seq_length = MAX_SEQ_LENGTH
        cfg = tok_dir / "sentence_bert_config.json"
        if cfg.exists():
            self.max_seq_length = int(json.loads(cfg.read_text()).get("max_seq_length", MAX_SEQ_LENGTH))
        self.tokenizer = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
        # tokenizer.json ships fixed padding to 128 and truncation at 128: padding is done here per
        # batch instead, and truncation follows sentence-transformers' max_seq_length.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)

        opts = ort.SessionOptions()
        # One batch at a time: all cores go to the GEMMs inside it, none to a second op pool.
        opts.intra_op_num_threads = threads or _cores()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        # The fused graph may drop token_type_ids (always zero for one-segment input); feed what it takes.
        self.inputs = [i.name for i in self.session.get_inputs()]

    def encode(self, texts: list[str], batch_size: int = 32, show_progress_bar: bool = False,
               normalize_embeddings: bool = True) -> np.ndarray:
        out = np.zeros((len(texts), DIM), np.float32)
        if not texts:
            return out
        encs = self.tokenizer.encode_batch(list(texts))
        # Longest first, as sentence-transformers does, so each batch pads only to similar lengths.
        order = np.argsort([-len(e.ids) for e in encs], kind="stable")
        starts = range(0, len(texts), batch_size)
        if show_progress_bar:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="Batches")
        for start in starts:
            idx = order[start:start + batch_size]
            width = len(encs[idx[0]].ids)
            ids = np.zeros((len(idx), width), np.int64)
            mask = np.zeros((len(idx), width), np.int64)
            for row, i in enumerate(idx):
                n = len(encs[i].ids)
                ids[row, :n] = encs[i].ids
                mask[row, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, {k: feed[k] for k in self.inputs})[0]
            # Mean pooling over real tokens: sentence-transformers' Pooling(mode='mean').
            m = mask[..., None].astype(np.float32)
            vecs = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
            out[idx] = vecs
        if normalize_embeddings:
            # torch.nn.functional.normalize's eps, as sentence-transformers' Normalize module uses.
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out
