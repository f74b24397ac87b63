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

from .errors import ModelError
from .util import cores
from .weights import packaged_model_dir

DIM = 384
MAX_SEQ_LENGTH = 256  # sentence_bert_config.json of all-MiniLM-L6-v2; tokenizer.json itself says 128
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17


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
    # dynamo=False: the TorchScript exporter needs no onnxscript (not a project dependency), exported
    # in ~2.5 s vs ~11 s, and only its eager-attention graph gets Attention fused by ORT's optimizer;
    # the dynamo graph (eager or SDPA) ran ~10% slower in onnxruntime at the same cosine.
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
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    from onnxruntime.transformers.optimizer import optimize_model

    opt = optimize_model(str(src), model_type="bert", num_heads=12, hidden_size=DIM)
    # The quantizer needs the dtype of every tensor; ONNX's own shape inference does not know the
    # com.microsoft ops just fused in, the symbolic one does.
    model = SymbolicShapeInference.infer_shapes(opt.model, auto_merge=True)
    onnx.save(model, str(dst))


# int8 recipe (bench/onnx_embed.py measures the alternatives on 2,000 WikiText-2 sentences):
# per-tensor dynamic int8 of every weight gives mean cosine 0.961 vs torch (worst 0.896);
# per-output-channel weight scales alone lift it to 0.993 (worst 0.981). A one-node-at-a-time
# sensitivity scan then found layer 0's FFN output projection (1536->384) the largest single loss,
# so it stays fp32: mean 0.994, worst 0.985, for ~1/18 of the GEMM work kept in fp32. Keeping the
# embedding table fp32 as well added only +0.0004 mean but 35 MB of file, so it is int8.
def _fp32_nodes(path: Path) -> list[str]:
    """Names of the nodes the int8 recipe keeps in fp32; an error if the fused graph has changed."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    keep = [n.name for n in graph.node
            if n.op_type == "MatMul" and n.name.endswith("/layer.0/output/dense/MatMul")]
    if len(keep) != 1:  # else the recipe would silently quantize it and lose ~0.0015 cosine
        raise ModelError(f"unexpected fused BERT graph (fp32 nodes found: {keep}); "
                         f"onnxruntime's optimizer output changed, re-check the int8 recipe")
    return keep


def _quantize_dynamic(src: Path, dst: Path, per_channel: bool = True,
                      exclude: list[str] | None = None) -> None:
    """Dynamic int8 weights; activations are quantized per batch at run time, so no calibration."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), per_channel=per_channel, weight_type=QuantType.QInt8,
                     nodes_to_exclude=_fp32_nodes(src) if exclude is None else exclude)


class _Calibration:
    """onnxruntime CalibrationDataReader over tokenized texts, one padded batch per call."""

    def __init__(self, texts: list[str], inputs: list[str], batch_size: int = 16):
        tok = _tokenizer(packaged_model_dir(), MAX_SEQ_LENGTH)
        self.feeds = []
        for i in range(0, len(texts), batch_size):
            feed = _batch([e.ids for e in tok.encode_batch(texts[i:i + batch_size])])
            self.feeds.append({k: v for k, v in feed.items() if k in inputs})
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self.feeds)


def _quantize_static(src: Path, dst: Path, texts: list[str]) -> None:
    """Static int8 (QDQ, MinMax activation ranges from `texts`), FFN output projections in fp32.

    Measured worse than the dynamic recipe (mean cosine 0.990, worst 0.97, and slower): one fixed
    activation scale per tensor cannot cover BERT's outlier activations, and quantizing the FFN
    outputs as well drops the mean to 0.93 whatever the calibration method (MinMax, Percentile,
    Entropy). Kept so the trade-off can be re-measured.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(src), load_external_data=False)
    ffn_out = [n.name for n in model.graph.node
               if n.name.endswith("/output/dense/MatMul") and "/attention/" not in n.name]
    inputs = [i.name for i in model.graph.input]
    quantize_static(str(src), str(dst), _Calibration(texts, inputs), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["MatMul"], per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=ffn_out,
                    extra_options={"MatMulConstBOnly": True})


def export_onnx(out_path: str | Path, quantize: bool = False,
                calibration_texts: list[str] | None = None) -> Path:
    """Build model.onnx (fp32) or model-int8.onnx from the packaged weights; return its path.

    `out_path` is the file to write, or a folder to write model.onnx / model-int8.onnx into.
    quantize=True uses the dynamic int8 recipe above; with `calibration_texts` as well, the static
    recipe instead (see _quantize_static: measured worse, opt-in only). The file appears whole or
    not at all: everything is built in a temp folder beside it, then os.replace'd into place.
    """
    out = Path(out_path)
    if out.suffix != ".onnx":
        out = out / ("model-int8.onnx" if quantize else "model.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    model_dir = packaged_model_dir()
    with _temp_dir(out.parent) as tmp:
        raw, fused, final = tmp / "raw.onnx", tmp / "fused.onnx", tmp / "final.onnx"
        _export_torch(model_dir, raw)
        if quantize and calibration_texts:
            # Static QDQ on the unfused graph: the calibrator must see plain MatMul inputs.
            _quantize_static(raw, final, list(calibration_texts))
        else:
            _optimize(raw, fused)
            if quantize:
                _quantize_dynamic(fused, final)
            else:
                fused.rename(final)
        os.replace(final, out)
    return out


def _tokenizer(tok_dir: Path, max_seq_length: int):  # -> tokenizers.Tokenizer
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    # tokenizer.json ships fixed padding to 128 and truncation at 128: padding is done per batch
    # instead (_batch), and truncation follows sentence-transformers' max_seq_length.
    tok.no_padding()
    tok.enable_truncation(max_length=max_seq_length)
    return tok


def _batch(ids: list[list[int]]) -> dict[str, np.ndarray]:
    """Right-pad to the longest in the batch with [PAD]=0, as the HF tokenizer's padding=True does."""
    width = max(len(x) for x in ids)
    input_ids = np.zeros((len(ids), width), np.int64)
    mask = np.zeros((len(ids), width), np.int64)
    for row, x in enumerate(ids):
        input_ids[row, :len(x)] = x
        mask[row, :len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}


class OnnxEncoder:
    """`encode(list[str]) -> (n, 384) float32` with onnxruntime, as SentenceTransformer.encode does it."""

    def __init__(self, onnx_path: str | Path, tokenizer_dir: str | Path | None = None,
                 threads: int | None = None):
        import onnxruntime as ort

        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise ModelError(f"{onnx_path} not found; build it with semcomp.onnx_embed.export_onnx "
                             f"or python bench/onnx_embed.py")
        tok_dir = Path(tokenizer_dir) if tokenizer_dir is not None else packaged_model_dir()
        self.max_seq_length = MAX_SEQ_LENGTH
        cfg = tok_dir / "sentence_bert_config.json"
        if cfg.exists():
            self.max_seq_length = int(json.loads(cfg.read_text()).get("max_seq_length", MAX_SEQ_LENGTH))
        self.tokenizer = _tokenizer(tok_dir, self.max_seq_length)

        opts = ort.SessionOptions()
        # One batch at a time: all cores go to the GEMMs inside it, none to a second op pool.
        opts.intra_op_num_threads = threads or cores()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        # Feed only what the graph declares (a re-export may prune token_type_ids, always 0 here).
        self.inputs = [i.name for i in self.session.get_inputs()]

    def encode(self, texts: list[str], batch_size: int = 32, show_progress_bar: bool = False,
               normalize_embeddings: bool = True) -> np.ndarray:
        out = np.zeros((len(texts), DIM), np.float32)
        if not texts:
            return out
        encs = self.tokenizer.encode_batch(list(texts))
        # Longest first, so each batch pads only to similar lengths (sentence-transformers sorts by
        # characters; the token count is the padding cost itself).
        order = np.argsort([-len(e.ids) for e in encs], kind="stable")
        starts = range(0, len(texts), batch_size)
        if show_progress_bar:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="Batches")
        for start in starts:
            idx = order[start:start + batch_size]
            feed = _batch([encs[i].ids for i in idx])
            hidden = self.session.run(None, {k: feed[k] for k in self.inputs})[0]
            # Mean pooling over real tokens: sentence-transformers' Pooling(mode='mean').
            m = feed["attention_mask"][..., None].astype(np.float32)
            vecs = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
            out[idx] = vecs
        if normalize_embeddings:
            # torch.nn.functional.normalize's eps, as sentence-transformers' Normalize module uses.
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


if __name__ == "__main__":  # the child process semcomp.embed runs the export in
    import argparse

    ap = argparse.ArgumentParser(description="Export all-MiniLM-L6-v2 to ONNX from the packaged weights.")
    ap.add_argument("path", help="the .onnx file to write")
    ap.add_argument("--int8", action="store_true", help="dynamic int8 recipe")
    a = ap.parse_args()
    export_onnx(a.path, quantize=a.int8)
