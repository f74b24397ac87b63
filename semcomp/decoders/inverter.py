"""Inversion: a small language model writes sentences from a decoded embedding.

vec2text's first step at this machine's size: a GPT-2-shaped decoder trained from scratch on
(decoded embedding, sentence) pairs, the embedding entering as `prefix` learned vectors in front of
the sentence (ClipCap's prefix). Trained on what the codes keep of each sentence's meaning, not on
the exact embedding, it learns the sentences a decoded embedding comes from, and writes ones the
dictionary does not hold. Its samples are candidates like any other: refine.py judges them with the
embedder beside the neighbours and their fusions, so they can add to the search, never lower it.

Self-contained (torch, transformers, tokenizers; no semcomp import), so that bench/inverter.py can
train it on a GPU machine that has none of semcomp's other needs.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FILES = ("inverter.json", "inverter.safetensors", "tokenizer.json")
EOS = "</s>"  # token 0: ends a sentence, pads a batch
SHAPE = {"dim": 384, "vocab": 8192, "layers": 6, "width": 512, "heads": 8, "prefix": 8, "max_tokens": 64,
         "dropout": 0.1}


def train_tokenizer(sentences: Sequence[str], vocab: int) -> Any:
    """Byte-level BPE over the training sentences: case and punctuation kept (chrF reads both), and a
    vocabulary a tenth of GPT-2's, so the output layer is cheap on a CPU."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(sentences, trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return tok


def tokenize(tok: Any, sentences: Sequence[str], max_tokens: int) -> list[np.ndarray]:
    """Each sentence's token ids, EOS last; cut at `max_tokens` (then without EOS)."""
    return [np.asarray((e.ids + [0])[:max_tokens], np.int32) for e in tok.encode_batch(list(sentences))]


class Inverter(nn.Module):
    """`shape` (SHAPE's keys; "codec": the build it was trained for) -> the model, untrained.
    `tokenizer` is set by `train` and `load`."""

    def __init__(self, shape: dict[str, Any]):
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        self.tokenizer: Any = None
        self.shape = {**SHAPE, **shape}
        s = self.shape
        self.lm = GPT2LMHeadModel(GPT2Config(
            vocab_size=s["vocab"], n_positions=s["prefix"] + s["max_tokens"], n_embd=s["width"], n_layer=s["layers"],
            n_head=s["heads"], resid_pdrop=s["dropout"], embd_pdrop=s["dropout"], attn_pdrop=s["dropout"],
            bos_token_id=0, eos_token_id=0))
        self.prefix = nn.Sequential(nn.Linear(s["dim"], 2 * s["width"]), nn.GELU(),
                                    nn.Linear(2 * s["width"], s["prefix"] * s["width"]))

    def _prefix(self, emb: torch.Tensor) -> torch.Tensor:
        return self.prefix(emb).view(len(emb), self.shape["prefix"], self.shape["width"])

    def loss(self, emb: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy of the sentences `ids` (B, T; padded after `lengths`) given
        their embeddings (B, dim). Right padding needs no attention mask: causal attention never lets
        a real token see the pads after it."""
        p = self.shape["prefix"]
        x = torch.cat([self._prefix(emb), self.lm.transformer.wte(ids)], 1)
        logits = self.lm(inputs_embeds=x).logits[:, p - 1:-1]  # the prefix's last position says token 0
        real = torch.arange(ids.shape[1], device=ids.device)[None] < lengths[:, None]
        return F.cross_entropy(logits[real].float(), ids[real])

    @torch.no_grad()
    def sample(self, emb: np.ndarray, num: int, temperature: float = 1.0, top_p: float = 0.95,
               seed: int = 0) -> list[list[str]]:
        """`num` sentences for each row of `emb` (n, dim), sampled with nucleus `top_p`; a temperature of
        0 is greedy. One batch of n * num sequences, the attention keys and values cached; a sequence
        leaves the batch when it ends (half the time of running all to the longest, measured)."""
        self.eval()
        w = next(self.parameters())
        e = torch.as_tensor(np.asarray(emb, np.float32), device=w.device, dtype=w.dtype).repeat_interleave(num, 0)
        gen = torch.Generator(device=w.device).manual_seed(seed)
        p, steps = self.shape["prefix"], self.shape["max_tokens"]
        ids = torch.zeros(len(e), steps, dtype=torch.long, device=w.device)
        live = torch.arange(len(e), device=w.device)  # the rows of `ids` still being written
        out = self.lm(inputs_embeds=self._prefix(e), use_cache=True)
        for t in range(steps):
            logits = out.logits[:, -1].float()
            nxt = logits.argmax(-1) if temperature <= 0 else _nucleus(logits / temperature, top_p, gen)
            ids[live, t] = nxt
            going = (nxt != 0).nonzero().squeeze(1)
            if not len(going):
                break
            # The cache is passed and read by position: transformers 5 renamed it (past_key_values -> cache).
            cache = out[1]
            if len(going) < len(live):
                cache.reorder_cache(going)
                live, nxt = live[going], nxt[going]
            out = self.lm(nxt[:, None], cache, use_cache=True,
                          position_ids=torch.full((len(live), 1), p + t, device=w.device))
        rows = ids.tolist()
        texts = [self.tokenizer.decode(r[: r.index(0)] if 0 in r else r).strip() for r in rows]
        return [texts[i * num:(i + 1) * num] for i in range(len(emb))]

    def save(self, folder: str | Path) -> None:
        """The shape, the weights (float16: half the download, no loss a sample shows) and the tokenizer,
        written beside `folder` and then renamed in: a crash or Ctrl-C leaves no file half-written."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        try:
            (stage / FILES[0]).write_text(json.dumps(self.shape, indent=1))
            save_file({k: v.detach().to("cpu", torch.float16).contiguous() for k, v in self.state_dict().items()
                       if not k.endswith(".attn.bias")}, str(stage / FILES[1]))
            self.tokenizer.save(str(stage / FILES[2]))
            for name in FILES[1:] + FILES[:1]:  # the shape, which names the build, last
                os.replace(stage / name, folder / name)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    @classmethod
    def load(cls, folder: str | Path) -> "Inverter":
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        folder = Path(folder)
        model = cls(json.loads((folder / FILES[0]).read_text()))
        state = {k: v.float() for k, v in load_file(str(folder / FILES[1])).items()}
        model.load_state_dict(state, strict=False)  # GPT-2's causal-mask buffers are rebuilt, not stored
        model.tokenizer = Tokenizer.from_file(str(folder / FILES[2]))
        return model.eval()


def write(model: Any, target: np.ndarray, num: int, temperature: float, rounds: int = 1, step: float = 0.5,
          judge: Callable[[list[str]], np.ndarray] | None = None, seed: int = 0) -> list[list[str]]:
    """`num` sentences a round for each row of `target` (n, dim), `rounds` rounds. Each round after the
    first aims past the best sentence so far, by `judge`'s embedding of it: the aim moves by `step`
    times (target - that embedding), so the next samples make up what the best one missed. vec2text
    corrects with a second trained model; this is the same feedback through the one model."""
    out = model.sample(target, num, temperature, seed=seed)
    aim = t = _rows_unit(np.asarray(target, np.float32))
    best, best_v = np.zeros_like(t), np.full(len(t), -np.inf, np.float32)
    for r in range(1, rounds):
        new = [ws[-num:] for ws in out]  # only the last round's sentences are not yet judged
        e = _rows_unit(np.asarray(judge([s for ws in new for s in ws]), np.float32).reshape(len(t), num, -1))
        v = np.einsum("nkd,nd->nk", e, t)
        k = v.argmax(1)
        better = v[np.arange(len(t)), k] > best_v
        best[better], best_v[better] = e[better, k[better]], v[better, k[better]]
        aim = _rows_unit(aim + step * (t - best))
        # another seed a round: the same draws from a nearby aim would write the same sentences
        out = [ws + more for ws, more in zip(out, model.sample(aim, num, temperature, seed=seed + r * 1_000_003))]
    return out


@torch.no_grad()
def guide(model: Any, target: np.ndarray, judge: Callable[[list[str]], np.ndarray], beam: int = 4, expand: int = 8,
          keep: int = 8, max_tokens: int = 48) -> list[list[str]]:
    """ZSInvert's guided beam search with the inverter as its language model: for each row of `target`
    (n, dim), `beam` partial sentences a step, each grown by the inverter's `expand` likeliest next
    tokens, and the `beam` extensions `judge` embeds closest to the target go on. A partial sentence
    after which the inverter could end (the end token among its `expand`) is finished at its score.
    Returns the `keep` best finished a row, best first. Costs about beam x expand judge calls a token."""
    model.eval()
    t = _rows_unit(np.asarray(target, np.float32))
    tok, p = model.tokenizer, model.shape["prefix"]
    w = next(model.parameters())
    e = torch.as_tensor(np.asarray(target, np.float32), device=w.device, dtype=w.dtype)  # as `sample` reads it
    out = model.lm(inputs_embeds=model._prefix(e), use_cache=True)
    owner = np.arange(len(t))  # the target of each live row
    seqs: list[list[int]] = [[] for _ in t]
    texts = [""] * len(t)  # each live row's tokens as text, decoded once, when it was a candidate
    row_score = np.full(len(t), -np.inf)
    finished: list[dict[str, float]] = [{} for _ in t]
    for step in range(max_tokens):
        top = out.logits[:, -1].float().topk(expand, -1).indices.cpu().numpy()
        for r in np.nonzero((top == 0).any(1))[0]:
            if seqs[r]:
                finished[owner[r]][texts[r].strip()] = row_score[r]
        cand = [(r, int(k)) for r in range(len(seqs)) for k in top[r] if k != 0]
        first: dict[tuple[int, str], tuple[int, int]] = {}  # (target, text) -> the (row, token) that made it
        for (r, k), x in zip(cand, tok.decode_batch([seqs[r] + [k] for r, k in cand])):
            first.setdefault((int(owner[r]), x), (r, k))
        keys = list(first)
        scores = np.einsum("nd,nd->n", _rows_unit(np.asarray(judge([x for _, x in keys]), np.float32)),
                           t[[o for o, _ in keys]])
        by_target: dict[int, list[tuple[float, int, int, str]]] = {}
        for (o, x), v in zip(keys, scores):
            by_target.setdefault(o, []).append((float(v), *first[(o, x)], x))
        kept = [(o, v, r, k, x) for o, xs in by_target.items()
                for v, r, k, x in sorted(xs, key=lambda z: -z[0])[:beam]]
        if not kept:
            break
        parents = [r for _, _, r, _, _ in kept]
        nxt = torch.as_tensor([k for _, _, _, k, _ in kept], device=w.device)
        cache = out[1]  # read by position, as in `sample`
        cache.reorder_cache(torch.as_tensor(parents, device=w.device))
        owner, row_score = np.asarray([o for o, *_ in kept]), np.asarray([v for _, v, *_ in kept])
        seqs, texts = [seqs[r] + [k] for _, _, r, k, _ in kept], [x for *_, x in kept]
        out = model.lm(nxt[:, None], cache, use_cache=True,
                       position_ids=torch.full((len(kept), 1), p + step, device=w.device))
    for r in range(len(seqs)):  # still going at the limit: a candidate too
        finished[owner[r]].setdefault(texts[r].strip(), row_score[r])
    return [[x for x, _ in sorted(f.items(), key=lambda z: -z[1])[:keep]] for f in finished]


def _rows_unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _nucleus(logits: torch.Tensor, top_p: float, gen: torch.Generator) -> torch.Tensor:
    """One token a row from the smallest set of tokens holding `top_p` of the probability."""
    probs, order = torch.softmax(logits, -1).sort(-1, descending=True)
    probs = probs.masked_fill(probs.cumsum(-1) - probs > top_p, 0)
    pick = torch.multinomial(probs, 1, generator=gen)
    return order.gather(-1, pick).squeeze(-1)


def _batches(lengths: np.ndarray, tokens: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Rows grouped by length (little padding), about `tokens` tokens a batch, batches shuffled."""
    order = np.argsort(lengths + rng.random(len(lengths)), kind="stable")
    out, start = [], 0
    while start < len(order):
        size = max(1, tokens // int(lengths[order[min(start + 63, len(order) - 1)]]))
        out.append(order[start:start + size])
        start += size
    return [out[i] for i in rng.permutation(len(out))]


def train(emb: np.ndarray, ids: Sequence[np.ndarray], tokenizer: Any, shape: dict[str, Any] | None = None, *,
          seconds: float, max_steps: int | None = None, device: str = "cpu", tokens: int = 16384,
          lr: float = 1e-3, val: int = 2000, warmup: int = 200, bf16: bool = True, seed: int = 0,
          init: Inverter | None = None, log: Callable[[dict[str, Any]], None] = print) -> Inverter:
    """Train on `emb` (n, dim) and their sentences' token ids for `seconds` of wall time (or
    `max_steps`, whichever ends first), the learning rate warming up and then following a cosine over
    that budget (a budget, not an epoch count, is what a GPU lease or a user's patience fixes). The
    last `val` rows are held out; the weights with the lowest held-out loss are kept. `bf16`: matrix
    products in bfloat16 under autocast, weights and loss in float32; on a CPU with AVX-512 BF16 that
    trained 1.7-2.4 times as many tokens a second as float32 (docs/inverter.md); without it, turn it off.
    `init`: go on from this model (trained in place; its shape, `shape` ignored) on a new schedule over
    `seconds`: a CPU's hours can come in several runs."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if init is None:
        init = Inverter({**(shape or {}), "dim": emb.shape[1], "vocab": tokenizer.get_vocab_size()})
    model = init.to(device).train()
    model.tokenizer = tokenizer
    lengths = np.asarray([len(x) for x in ids])
    pad = np.zeros((len(ids), int(lengths.max())), np.int64)
    for i, x in enumerate(ids):
        pad[i, :len(x)] = x
    x_all = torch.as_tensor(np.asarray(emb, np.float32), device=device)
    pad_t, len_t = torch.as_tensor(pad, device=device), torch.as_tensor(lengths, device=device)
    fit, held = np.arange(len(ids) - val), np.arange(len(ids) - val, len(ids))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95), fused=device.startswith("cuda"))
    amp = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16)

    def batch_loss(rows: np.ndarray) -> torch.Tensor:
        r = torch.as_tensor(rows, device=device)
        n = int(lengths[rows].max())
        with amp:
            return model.loss(x_all[r], pad_t[r, :n], len_t[r])

    def held_loss() -> float:
        model.eval()
        with torch.no_grad():
            parts = [(batch_loss(b).item(), len(b)) for b in np.array_split(held, max(1, len(held) // 256)) if len(b)]
        model.train()
        return sum(v * k for v, k in parts) / max(1, sum(k for _, k in parts))

    t0, step, epoch, best, best_state = time.perf_counter(), 0, 0, math.inf, None
    while True:
        epoch += 1
        for rows in _batches(lengths[fit], tokens, rng):
            frac = max((time.perf_counter() - t0) / seconds, step / max_steps if max_steps else 0.0)
            if frac >= 1:
                break
            scale = min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
            for g in opt.param_groups:
                g["lr"] = lr * scale
            loss = batch_loss(fit[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % 500 == 0:
                log({"step": step, "epoch": epoch, "loss": round(loss.item(), 4), "lr": round(lr * scale, 6),
                     "seconds": round(time.perf_counter() - t0, 1)})
        else:
            v = held_loss()
            log({"epoch": epoch, "step": step, "held_out_loss": round(v, 4), "seconds": round(time.perf_counter() - t0, 1)})
            if v < best:
                best, best_state = v, {k: t.detach().clone() for k, t in model.state_dict().items()}
            continue
        break
    v = held_loss()
    log({"epoch": epoch, "step": step, "held_out_loss": round(v, 4), "final": True,
         "seconds": round(time.perf_counter() - t0, 1)})
    if best_state is not None and best < v:
        model.load_state_dict(best_state)
    return model.eval()
