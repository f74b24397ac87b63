"""QINCo: residual quantisation whose codebooks are bent by small networks (`quantizer: qinco`).

Written from the descriptions in Huijben et al., "Residual Quantization with Implicit Neural
Codebooks" (ICML 2024) and Vallaeys et al., "QINCo2" (ICLR 2025); no reference code is used.

Step 0 is a plain codebook C_0. At step m >= 1 codeword C_m[i] is replaced by

    f_m(c, x_hat) = c + W_out( u + sum_blocks MLP(u) ),   u = P_c c + P_x x_hat + b

with x_hat the reconstruction so far: each region of space gets its own codebook without storing
one. W_out starts at zero, so at initialisation the model *is* the residual quantiser whose
codebooks it starts from (FAISS RQ); training can only move away from it where that pays.

Encoding is QINCo2's beam search: per beam entry, only the A codewords nearest the residual by the
plain distance go through the network, and the beam keeps the B best partial codes by the true
distance ||x - x_hat_m||^2. P_c C_m does not depend on the input, so it is tabulated once.

Training (Adam, warm-up then cosine): each batch is encoded by the current model without
gradient, its codes are decoded step by step with gradient, and the loss is the sum over steps of
||x - x_hat_m||^2, so every prefix of a code is itself a good code. Codebooks train too.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..artifacts import load_tensors, save_tensors
from ..metrics import usage
from .faiss_codec import faiss_codec

FILES = ("qinco.safetensors", "qinco.json")  # weights (safetensors, never pickle), then the constructor arguments

log = logging.getLogger("semcomp")


class Step(nn.Module):
    """f_m(c, x_hat) for one step; the scales put its inputs at unit size a component."""

    def __init__(self, dim: int, embed: int, hidden: int, blocks: int):
        super().__init__()
        self.in_c = nn.Linear(dim, embed, bias=False)
        self.in_x = nn.Linear(dim, embed)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(embed, hidden), nn.ReLU(), nn.Linear(hidden, embed))
                                    for _ in range(blocks))
        self.out = nn.Linear(embed, dim, bias=False)
        nn.init.zeros_(self.out.weight)  # "no change" at initialisation
        self.register_buffer("scale_c", torch.ones(()))
        self.register_buffer("scale_x", torch.ones(()))

    def proj_c(self, c: torch.Tensor) -> torch.Tensor:
        return self.in_c(c * self.scale_c)

    def proj_x(self, x_hat: torch.Tensor) -> torch.Tensor:
        return self.in_x(x_hat * self.scale_x)

    def hidden(self, pc: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
        """u from pc = proj_c(c) and px = proj_x(x_hat) (broadcastable)."""
        u = pc + px
        for block in self.blocks:
            u = u + block(u)
        return u

    def hidden_tab(self, pc: torch.Tensor, hc: torch.Tensor | None, px: torch.Tensor) -> torch.Tensor:
        """hidden(pc, px) for the encoder, with hc = the first block's first layer (no bias) applied to
        pc. That layer is linear, so it splits over u = pc + px: the candidates' share is tabulated
        once and the (n, B, A) candidates skip a third of the step's multiply-adds. pc and hc are
        fresh gathers, overwritten in place (these tensors are the encoder's memory traffic)."""
        u = pc.add_(px)
        if not len(self.blocks):
            return u
        (first, _, second), *rest = self.blocks
        u = second(hc.add_(first(px)).relu_()).add_(u)
        for block in rest:
            u = u + block(u)
        return u

    def forward(self, c: torch.Tensor, pc: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
        return c + self.out(self.hidden(pc, px))


class QINCoNet(nn.Module):
    def __init__(self, dim: int, num_codebooks: int, size: int, embed: int, hidden: int, blocks: int):
        super().__init__()
        self.codebooks = nn.Parameter(torch.zeros(num_codebooks, size, dim))
        self.steps = nn.ModuleList(Step(dim, embed, hidden, blocks) for _ in range(num_codebooks - 1))

    def decode_steps(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """Differentiable: codes (n, K) -> x_hat after each step, K tensors (n, d)."""
        x_hat = self.codebooks[0][codes[:, 0]]
        out = [x_hat]
        for m, step in enumerate(self.steps, start=1):
            c = self.codebooks[m][codes[:, m]]
            x_hat = x_hat + step(c, step.proj_c(c), step.proj_x(x_hat))
            out.append(x_hat)
        return out


class QINCo:
    """K codes of b bits a vector, the `semcomp.quantizers.Quantizer` protocol.

    embed_dim, hidden_dim, num_blocks: each step's network; candidates (A codewords a step through
    the network) and beam (B partial codes kept) set the encoder's search."""

    def __init__(self, input_dim: int = 384, num_codebooks: int = 8, bits_per_code: int = 9, embed_dim: int = 128,
                 hidden_dim: int = 256, num_blocks: int = 1, candidates: int = 8, beam: int = 4):
        self.shape = dict(input_dim=input_dim, num_codebooks=num_codebooks, bits_per_code=bits_per_code,
                          embed_dim=embed_dim, hidden_dim=hidden_dim, num_blocks=num_blocks,
                          candidates=candidates, beam=beam)
        self.input_dim, self.num_codebooks, self.bits_per_code = input_dim, num_codebooks, bits_per_code
        self.size = 1 << bits_per_code
        self.num_candidates, self.beam = candidates, beam
        self.net = QINCoNet(input_dim, num_codebooks, self.size, embed_dim, hidden_dim, num_blocks).eval()
        self._tabs: list[tuple[Any, ...]] | None = None

    @torch.no_grad()
    def set_codebooks(self, cb: torch.Tensor) -> None:
        self.net.codebooks.copy_(cb)
        for m, step in enumerate(self.net.steps, start=1):
            step.scale_c.fill_(1.0 / float(cb[m].pow(2).mean().sqrt().clamp_min(1e-8)))
            step.scale_x.fill_(math.sqrt(self.input_dim))  # x_hat is about unit norm
        self._tabs = None

    def _tables(self) -> list[tuple[Any, ...]]:
        """Per step, what does not depend on the input: codeword squared norms, P_c C_m, the first
        block's first layer on P_c C_m, C_m W_out and W_out^T W_out. Dropped whenever the weights change."""
        if self._tabs is None:
            with torch.no_grad():
                cb = self.net.codebooks.detach()
                self._tabs = [(cb[0].pow(2).sum(-1), None, None, None, None)]
                for m, s in enumerate(self.net.steps, start=1):
                    pc = s.proj_c(cb[m])
                    hc = F.linear(pc, s.blocks[0][0].weight) if len(s.blocks) else None
                    self._tabs.append((cb[m].pow(2).sum(-1), pc, hc,
                                       cb[m] @ s.out.weight, s.out.weight.t() @ s.out.weight))
        return self._tabs

    # ---------------------------------------------------------------- encoding
    @torch.no_grad()
    def _search(self, x: torch.Tensor, beam: int, cand: int, keep: int = 1) -> torch.Tensor:
        """Beam search: (n, d) -> (n, width, K) codes, least distortion first; the last step keeps
        max(beam, keep) of its beam x A expansions, so `keep` alternatives cost no wider beam.

        A candidate's error ||r - c - W u||^2 (r: residual, u: the step's hidden vector) expands to
        ||r - c||^2 - 2 (W^T r - W^T c) . u + u^T (W^T W) u: the pre-selection's plain distance plus
        e-dimensional terms, so only the kept candidates are mapped back to d dimensions."""
        n, d = x.shape
        cb = self.net.codebooks.detach()
        tabs = self._tables()
        cand = min(cand, self.size)
        last = self.num_codebooks - 1
        width = min(max(beam, keep) if last == 0 else beam, self.size)
        err0 = tabs[0][0][None] - 2 * x @ cb[0].t()                          # ||x - c||^2 - ||x||^2
        dist, idx = err0.topk(width, dim=1, largest=False)                   # (n, B), sorted
        dist = dist + x.pow(2).sum(1, keepdim=True)
        codes = idx[:, :, None]
        x_hat = cb[0][idx]                                                    # (n, B, d)
        for m, step in enumerate(self.net.steps, start=1):
            norms, pc_tab, hc_tab, wc_tab, gram = tabs[m]
            resid = x[:, None] - x_hat                                        # (n, B, d)
            pre = norms - 2 * resid @ cb[m].t()                               # ||r - c||^2 - ||r||^2
            pre, sel = pre.topk(cand, dim=2, largest=False)                   # (n, B, A)
            hc = hc_tab[sel] if hc_tab is not None else None
            u = step.hidden_tab(pc_tab[sel], hc, step.proj_x(x_hat)[:, :, None])  # (n, B, A, e)
            wr = resid @ step.out.weight                                      # (n, B, e)
            err = dist[:, :, None] + pre - 2 * ((wr[:, :, None] - wc_tab[sel]) * u).sum(-1) \
                + ((u @ gram) * u).sum(-1)                                    # (n, B, A)
            width = min(max(beam, keep) if m == last else beam, err.shape[1] * cand)
            dist, flat = err.reshape(n, -1).topk(width, dim=1, largest=False)  # sorted, best first
            parent = flat // cand
            pick = sel.reshape(n, -1).gather(1, flat)                         # codeword ids (n, width)
            u_pick = u.reshape(n, -1, u.shape[-1]).gather(1, flat[:, :, None].expand(-1, -1, u.shape[-1]))
            codes = torch.cat([codes.gather(1, parent[:, :, None].expand(-1, -1, m)), pick[:, :, None]], 2)
            x_hat = x_hat.gather(1, parent[:, :, None].expand(-1, -1, d)) + cb[m][pick] + step.out(u_pick)
        return codes

    def _encode(self, x: np.ndarray, keep: int, chunk: int = 1024) -> np.ndarray:
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        if not len(xt):
            return np.zeros((0, keep, self.num_codebooks), np.int64)
        # keep > beam x A alternatives need a wider beam. Rows x B x A stays near 8 x chunk, so a step's
        # (rows, B, A, hidden) tensors stay in cache: at 128 bits B4A8, 256 rows encode ~1,200/s, 1,024 ~1,050/s
        beam = max(self.beam, -(-keep // min(self.num_candidates, self.size)))
        chunk = max(64, chunk // max(1, beam * self.num_candidates // 8))
        out = [self._search(xt[i:i + chunk], beam, self.num_candidates, keep)[:, :keep]
               for i in range(0, len(xt), chunk)]
        return torch.cat(out).numpy().astype(np.int64)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """(n, d) float32 -> (n, K) int64 codes."""
        return self._encode(x, 1)[:, 0]

    def candidates(self, x: np.ndarray, n: int) -> np.ndarray:
        """(rows, n, K): the search's n lowest-distortion codes a row, best first."""
        return self._encode(x, n)

    @torch.no_grad()
    def decode(self, codes: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """(n, K) codes -> (n, d) float32, unit norm."""
        c = torch.from_numpy(np.asarray(codes, np.int64)).reshape(-1, self.num_codebooks)
        if c.numel() and (c.min() < 0 or c.max() >= self.size):
            raise ValueError(f"codes must be (n, {self.num_codebooks}) in [0, {self.size})")
        cb = self.net.codebooks.detach()
        tabs = self._tables()
        outs = []
        for i in range(0, len(c), chunk):
            cc = c[i:i + chunk]
            x_hat = cb[0][cc[:, 0]]
            for m, step in enumerate(self.net.steps, start=1):
                x_hat = x_hat + step(cb[m][cc[:, m]], tabs[m][1][cc[:, m]], step.proj_x(x_hat))
            outs.append(F.normalize(x_hat, dim=1))
        return torch.cat(outs).numpy() if outs else np.zeros((0, self.input_dim), np.float32)

    # ---------------------------------------------------------------- files
    def save(self, weights_path: str | Path, shape_path: str | Path) -> None:
        save_tensors(self.net.state_dict(), self.shape, weights_path, shape_path)

    @classmethod
    def load(cls, weights_path: str | Path, shape_path: str | Path) -> "QINCo":
        state, shape = load_tensors(weights_path, shape_path)
        model = cls(**shape)
        model.net.load_state_dict(state)
        return model


def train(x: np.ndarray, cfg: dict[str, Any], log_epoch: Callable[[dict[str, Any]], None] | None = None,
          cache_dir: str | Path | None = None, codebooks: torch.Tensor | None = None,
          ) -> tuple[QINCo, list[dict[str, Any]]]:
    """Fit on unit-norm rows x (n, d) with the config's qinco_* keys; deterministic for a seed.

    The FAISS RQ start uses a sample (qinco_init_sample rows): the codebooks are fine-tuned on every
    row afterwards, and RQ training is the slow part. qinco_max_seconds, when set, shortens the
    schedule after the first epoch to the epochs that fit rather than overrunning."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    seed = cfg["seed"]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    k, bits = cfg["vqvae_num_codebooks"], int(cfg["vqvae_num_embeddings"]).bit_length() - 1
    model = QINCo(x.shape[1], k, bits, cfg["qinco_embed_dim"], cfg["qinco_hidden_dim"], cfg["qinco_blocks"],
                  cfg["qinco_candidates"], cfg["qinco_beam"])
    if codebooks is None:
        n_init = cfg["qinco_init_sample"]
        sub = x if not n_init or n_init >= len(x) else \
            x[np.sort(np.random.default_rng(seed).choice(len(x), n_init, replace=False))]
        log.info("QINCo: %d codebooks of %d entries; FAISS RQ start on %d of %d vectors", k, 1 << bits, len(sub), len(x))
        rq = faiss_codec("rq", k, bits, sub, seed, cache_dir, cfg["vqvae_train_beam"], cfg["vqvae_init_steps"])
        codebooks = torch.from_numpy(rq.codebooks())
    model.set_codebooks(codebooks)
    t_init = time.perf_counter() - t0

    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    net = model.net
    opt = torch.optim.Adam(net.parameters(), lr=cfg["qinco_learning_rate"])
    bs, epochs = cfg["qinco_batch_size"], cfg["qinco_epochs"]
    per_epoch = math.ceil(len(xt) / bs)
    total = [epochs * per_epoch]  # shrunk by qinco_max_seconds after the first epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / (0.05 * total[0])) * 0.5 * (1 + math.cos(math.pi * min(s, total[0]) / total[0])))
    history: list[dict[str, Any]] = []
    epoch = 0
    while epoch < epochs:
        perm = torch.randperm(len(xt), generator=gen)
        loss_sum, last_sum = 0.0, 0.0
        codes_seen = []  # the codes this epoch's encoder chose: codebook use at no extra cost
        bar = tqdm(range(0, len(xt), bs), desc=f"qinco epoch {epoch + 1}/{epochs}", unit="batch",
                   disable=not cfg["show_progress_bar"], leave=False)
        for i in bar:
            idx = perm[i:i + bs]
            xb = xt[idx]
            net.eval()
            model._tabs = None  # weights changed at the last step
            codes = model._search(xb, 1, cfg["qinco_train_candidates"])[:, 0]
            codes_seen.append(codes)
            net.train()
            errs = torch.stack([(xb - o).pow(2).sum(1).mean() for o in net.decode_steps(codes)])
            loss = errs.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(xb)
            last_sum += float(errs[-1].detach()) * len(xb)
        epoch += 1
        row = {"epoch": epoch, "loss": loss_sum / len(xt), "mse": last_sum / len(xt),
               "codebooks": usage(torch.cat(codes_seen).numpy(), model.size),
               "seconds": round(time.perf_counter() - t0, 1)}
        history.append(row)
        if log_epoch:
            log_epoch(row)
        budget = cfg["qinco_max_seconds"]
        if budget is not None and epoch == 1:
            spent = time.perf_counter() - t0
            fit = 1 + int((budget - spent) / max(spent - t_init, 1e-9))
            if fit < epochs:
                log.warning("QINCo: %d of %d epochs fit in qinco_max_seconds=%s", max(1, fit), epochs, budget)
                epochs = max(1, fit)
                total[0] = epochs * per_epoch
    net.eval()
    model._tabs = None
    return model, history


load = QINCo.load
