"""VQ-VAE over sentence embeddings: residual VQ with beam-search encoding and a learned decoder.

What the sweep (bench/VQVAE_SWEEP.md) showed, and so what the defaults are:
* Encoder = a fixed linear map (identity for the default 384-d latent) + residual VQ, encoded by a
  beam search over the K levels (beam 8, as FAISS RQ): greedy level-by-level choice lost 0.007 held-out cosine.
* Codebooks come from FAISS's residual-quantiser trainer (progressive-dimension k-means on the
  beam's residuals). On 9,000 sentences it generalises clearly better than greedy residual k-means
  (+0.05 held-out cosine at 72 bits). The sweep's other variants (joint least-squares codebook
  refits, codebook fine-tuning by gradient, a similarity-matrix loss, product mode) overfit 9,000
  points and were removed from the library; bench/VQVAE_SWEEP.md keeps what they gave.
* Decoder: its own copy of the codebooks, then y = A s + MLP(s) on the summed code vectors with
  A = the encoder's transpose and the MLP zero-initialised, so training starts exactly at the
  linear solution and only learns a correction; codes are fixed while it trains (an epoch is one
  small MLP pass). Loss: cosine distance. On held-out data the learned correction has been
  neutral so far: the gain over FAISS's RQ comes from the training above, not the MLP.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..artifacts import load_tensors, save_tensors
from ..metrics import usage
from .faiss_codec import faiss_codec

FILES = ("vqvae.safetensors", "vqvae.json")  # weights (safetensors, never pickle), then the constructor arguments


class Branch(nn.Module):
    """y = A x + MLP(x): A starts as identity (or a slice of it), the MLP starts at zero."""

    def __init__(self, d_in: int, d_out: int, hidden: int):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(d_out, d_in))
            self.linear.bias.zero_()
        self.mlp = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.mlp(x)


class ResidualVQ(nn.Module):
    """K codebooks of N entries; a vector's code picks one entry per level, and they are summed."""

    def __init__(self, dim: int, num_codebooks: int, num_embeddings: int):
        super().__init__()
        self.k, self.n, self.sub = num_codebooks, num_embeddings, dim
        self.register_buffer("codebooks", torch.zeros(num_codebooks, num_embeddings, dim))

    @torch.no_grad()
    def kmeans_init(self, z: torch.Tensor, seed: int) -> None:
        import faiss

        resid = z.clone()
        for i in range(self.k):
            km = faiss.Kmeans(self.sub, self.n, niter=20, seed=seed + i, verbose=False,
                              max_points_per_centroid=100000)
            km.train(np.ascontiguousarray(resid.cpu().numpy(), dtype=np.float32))
            self.codebooks[i] = torch.from_numpy(km.centroids).to(z)
            resid = resid - self.codebooks[i][torch.cdist(resid, self.codebooks[i]).argmin(1)]

    @torch.no_grad()
    def faiss_rq_init(self, z: torch.Tensor, beam: int, seed: int, dim_steps: int = 5,
                      cache_dir: str | Path | None = None) -> None:
        """Codebooks from FAISS's residual quantiser (progressive-dimension k-means on the beam's
        residuals): it generalises better than greedy level-by-level k-means on small sets. Cached with
        evaluate's baselines, which reuse it when their settings match (vqvae_init_steps=10)."""
        rq = faiss_codec("rq", self.k, int(math.log2(self.n)), z.cpu().numpy(), seed, cache_dir, beam, dim_steps)
        self.codebooks.copy_(torch.from_numpy(rq.codebooks()))

    @torch.no_grad()
    def encode(self, z: torch.Tensor, beam: int = 8, chunk: int = 1024, keep: int = 0) -> torch.Tensor:
        """Codes (n, K); with keep > 0 the beam's `keep` best (n, keep, K), least distortion first.
        A beam search on ||z - sum_k C_k[c_k]||^2."""
        cb = self.codebooks
        # ||z - sum_j c_j||^2 expands into <z, c> terms, codebook norms and codebook-codebook inner
        # products; precomputing the last two makes each beam step a gather instead of a matmul.
        norms = (cb * cb).sum(-1)                                   # (K, N)
        cross = torch.einsum("jad,kbd->jkab", cb, cb)               # (K, K, N, N)
        beam = max(beam, keep)
        if not len(z):
            return torch.zeros((0, keep, self.k) if keep else (0, self.k), dtype=torch.long)
        out = torch.cat([self._beam(z[i:i + chunk], beam, norms, cross) for i in range(0, len(z), chunk)])
        return out[:, :keep] if keep else out[:, 0]

    def _beam(self, z: torch.Tensor, beam: int, norms: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
        n = len(z)
        zc = torch.einsum("nd,kmd->knm", z, self.codebooks)          # (K, n, N)
        dist = (z * z).sum(1, keepdim=True)                          # (n, 1): beam of one, empty code
        codes = torch.zeros(n, 1, 0, dtype=torch.long)
        for k in range(self.k):
            cand = dist[:, :, None] - 2 * zc[k][:, None, :] + norms[k]  # (n, B, N)
            for j in range(k):
                cand = cand + 2 * cross[j, k][codes[:, :, j]]
            b = min(beam, cand.shape[1] * self.n)
            dist, flat = cand.reshape(n, -1).topk(b, dim=1, largest=False, sorted=True)
            parent, entry = flat // self.n, flat % self.n
            codes = torch.cat([torch.gather(codes, 1, parent[:, :, None].expand(-1, -1, k)), entry[:, :, None]], 2)
        return codes  # (n, beam, K), sorted by distortion

    def lookup(self, codes: torch.Tensor, codebooks: torch.Tensor | None = None) -> torch.Tensor:
        cb = self.codebooks if codebooks is None else codebooks
        out = cb[0][codes[:, 0]]
        for i in range(1, self.k):  # summed as it goes: stacking K (n, d) tensors first took 7 GB at 285k
            out = out + cb[i][codes[:, i]]
        return out

class VQVAE(nn.Module):
    def __init__(self, input_dim: int = 384, hidden_dim: int = 1024, latent_dim: int = 384,
                 num_codebooks: int = 8, num_embeddings: int = 512, mode: str = "residual", beam: int = 8):
        super().__init__()
        if mode != "residual":  # `mode` stays in the saved shape so older model files load
            raise ValueError(f"only residual quantisation is supported, got mode {mode!r}")
        self.shape = dict(input_dim=input_dim, hidden_dim=hidden_dim, latent_dim=latent_dim,
                          num_codebooks=num_codebooks, num_embeddings=num_embeddings, mode=mode, beam=beam)
        self.encoder = nn.Linear(input_dim, latent_dim, bias=False)
        with torch.no_grad():
            self.encoder.weight.copy_(torch.eye(latent_dim, input_dim))
        self.vq = ResidualVQ(latent_dim, num_codebooks, num_embeddings)
        # The decoder reads its own copy of the codebooks, so fine-tuning them for the decoded
        # output never moves the encoder's nearest-neighbour geometry.
        self.dec_codebooks = nn.Parameter(torch.zeros_like(self.vq.codebooks))
        self.decoder = Branch(latent_dim, input_dim, hidden_dim)

    @property
    def input_dim(self) -> int:
        return self.shape["input_dim"]

    @property
    def num_codebooks(self) -> int:
        return self.vq.k

    @property
    def bits_per_code(self) -> int:
        return int(math.log2(self.vq.n))

    @property
    def bits(self) -> int:
        return self.vq.k * int(math.log2(self.vq.n))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Differentiable decode, not normalised."""
        return self.decoder(self.vq.lookup(codes, self.dec_codebooks))

    @torch.no_grad()
    def encode(self, x: np.ndarray) -> np.ndarray:
        self.eval()
        z = self.encoder(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        return self.vq.encode(z, self.shape["beam"]).numpy().astype(np.int64)

    @torch.no_grad()
    def candidates(self, x: np.ndarray, n: int) -> np.ndarray:
        """The beam's n lowest-distortion codes for each row, (rows, n, K), best first."""
        self.eval()
        z = self.encoder(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        return self.vq.encode(z, self.shape["beam"], keep=n).numpy().astype(np.int64)

    @torch.no_grad()
    def decode(self, codes: np.ndarray, chunk: int = 65536) -> np.ndarray:
        self.eval()
        c = torch.from_numpy(np.asarray(codes, np.int64)).reshape(-1, self.vq.k)
        if c.numel() and (c.min() < 0 or c.max() >= self.vq.n):
            raise ValueError(f"codes must be (n, {self.vq.k}) in [0, {self.vq.n})")
        return torch.cat([F.normalize(self.decode_codes(c[i:i + chunk]), dim=1) for i in range(0, len(c), chunk)]
                         or [torch.zeros(0, self.input_dim)]).numpy()

    def save(self, weights_path: str | Path, shape_path: str | Path) -> None:
        save_tensors(self.state_dict(), self.shape, weights_path, shape_path)

    @classmethod
    def load(cls, weights_path: str | Path, shape_path: str | Path) -> "VQVAE":
        state, shape = load_tensors(weights_path, shape_path)
        model = cls(**shape)
        model.load_state_dict(state)
        return model.eval()


def train(x: np.ndarray, cfg: dict[str, Any], log: Callable[[dict[str, Any]], None] | None = None,
          cache_dir: str | Path | None = None) -> tuple[VQVAE, list[dict[str, Any]]]:
    """Train on unit-norm embeddings x (n, d); deterministic for a fixed cfg['seed']. `cache_dir`:
    where FAISS quantisers are cached (the RQ start is one)."""
    seed = cfg["seed"]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    k, n = cfg["vqvae_num_codebooks"], cfg["vqvae_num_embeddings"]
    beam = cfg["vqvae_beam"]
    model = VQVAE(x.shape[1], cfg["vqvae_hidden_dim"], cfg["vqvae_embedding_dim"], k, n, beam=beam)
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    if cfg["vqvae_embedding_dim"] != x.shape[1]:
        # Other latent size: project on the top principal directions (an orthonormal map).
        _, _, vt = torch.linalg.svd(xt - xt.mean(0), full_matrices=False)
        w = torch.zeros(cfg["vqvae_embedding_dim"], x.shape[1])
        m = min(len(vt), len(w))
        w[:m] = vt[:m]
        model.encoder.weight.data.copy_(w)
    with torch.no_grad():
        model.decoder.linear.weight.copy_(model.encoder.weight.t())
        # the default encoder is the identity: skip a copy of every training vector (0.44 GB at 285k)
        z = xt if torch.equal(model.encoder.weight, torch.eye(*model.encoder.weight.shape)) else model.encoder(xt)
        import logging

        logging.getLogger("semcomp").info("training %d codebooks of %d entries on %d vectors", k, n, len(xt))
        if cfg["vqvae_init"] == "faiss_rq":
            model.vq.faiss_rq_init(z, cfg["vqvae_train_beam"], seed, cfg["vqvae_init_steps"], cache_dir)
        else:
            model.vq.kmeans_init(z, seed)
        codes = model.vq.encode(z, beam)
        model.dec_codebooks.copy_(model.vq.codebooks)
    cb_usage = usage(codes.numpy(), n)

    params = list(model.decoder.parameters())
    epochs, bs, lr = cfg["vqvae_epochs"], cfg["batch_size"], cfg["vqvae_learning_rate"]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = max(1, epochs * math.ceil(len(xt) / bs))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    history: list[dict[str, Any]] = []
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total, count = 0.0, 0
        for i in range(0, len(xt), bs):
            idx = perm[i:i + bs]
            xb = xt[idx]
            x_hat = model.decode_codes(codes[idx])
            loss = (1 - F.cosine_similarity(x_hat, xb)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(xb)
            count += len(xb)
        with torch.no_grad():  # in chunks: the decoder's hidden layer alone is 1.2 GB at 285k rows
            cos = sum(float(F.cosine_similarity(model.decode_codes(codes[i:i + 65536]), xt[i:i + 65536]).sum())
                      for i in range(0, len(xt), 65536)) / len(xt)
        row = {"epoch": epoch + 1, "loss": total / count, "train_cosine": cos, "codebooks": cb_usage}
        history.append(row)
        if log:
            log(row)
    return model.eval(), history


load = VQVAE.load
