"""VQ-VAE over sentence embeddings: linear-initialised encoder/decoder around a residual VQ.

The encoder and decoder are a linear map plus a zero-initialised MLP branch, so training starts
from plain residual quantisation of the embedding and learns the non-linear part on top. The
codebooks get k-means initialisation, EMA updates and dead-code restarts (the standard fixes for
codebook collapse); the loss is cosine distance, matching how the embeddings are used.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


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
    """K codebooks of N entries; 'residual' quantises what earlier levels left, 'product' splits z."""

    def __init__(self, dim: int, num_codebooks: int, num_embeddings: int, mode: str = "residual",
                 decay: float = 0.99, eps: float = 1e-5):
        super().__init__()
        self.mode, self.decay, self.eps = mode, decay, eps
        self.k, self.n = num_codebooks, num_embeddings
        self.sub = dim // num_codebooks if mode == "product" else dim
        self.register_buffer("codebooks", torch.zeros(num_codebooks, num_embeddings, self.sub))
        self.register_buffer("ema_count", torch.ones(num_codebooks, num_embeddings))
        self.register_buffer("ema_sum", torch.zeros(num_codebooks, num_embeddings, self.sub))

    def _parts(self, z: torch.Tensor) -> list[torch.Tensor]:
        return list(z.split(self.sub, dim=1)) if self.mode == "product" else [z]

    @torch.no_grad()
    def kmeans_init(self, z: torch.Tensor, seed: int) -> None:
        import faiss

        parts, resid = self._parts(z), z.clone()
        for i in range(self.k):
            target = parts[i] if self.mode == "product" else resid
            km = faiss.Kmeans(self.sub, self.n, niter=20, seed=seed + i, verbose=False,
                              max_points_per_centroid=100000)
            km.train(np.ascontiguousarray(target.cpu().numpy(), dtype=np.float32))
            cb = torch.from_numpy(km.centroids).to(z)
            self.codebooks[i] = cb
            self.ema_sum[i] = cb
            self.ema_count[i] = 1.0
            if self.mode == "residual":
                resid = resid - cb[torch.cdist(resid, cb).argmin(1)]

    def forward(self, z: torch.Tensor, update: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantise z: returns (z_q, codes (n, K)); with update=True, EMA-updates the codebooks."""
        codes, pieces = [], []
        parts = self._parts(z)
        resid = z
        for i in range(self.k):
            target = parts[i] if self.mode == "product" else resid
            cb = self.codebooks[i]
            idx = torch.cdist(target, cb).argmin(1)
            q = cb[idx]
            if update:
                self._ema(i, target.detach(), idx)
            codes.append(idx)
            pieces.append(q)
            if self.mode == "residual":
                resid = resid - q
        zq = torch.cat(pieces, 1) if self.mode == "product" else torch.stack(pieces).sum(0)
        return zq, torch.stack(codes, 1)

    @torch.no_grad()
    def _ema(self, i: int, x: torch.Tensor, idx: torch.Tensor) -> None:
        onehot = F.one_hot(idx, self.n).type(x.dtype)
        self.ema_count[i].mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.ema_sum[i].mul_(self.decay).add_(onehot.t() @ x, alpha=1 - self.decay)
        count = self.ema_count[i]
        n = count.sum()
        count = (count + self.eps) / (n + self.n * self.eps) * n  # Laplace smoothing
        self.codebooks[i] = self.ema_sum[i] / count[:, None]
        # Dead-code restart: entries that nearly stopped being chosen move onto random inputs.
        dead = self.ema_count[i] < 1e-2
        if dead.any():
            pick = x[torch.randint(0, len(x), (int(dead.sum()),), device=x.device)]
            self.codebooks[i][dead] = pick
            self.ema_sum[i][dead] = pick
            self.ema_count[i][dead] = 1.0

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        pieces = [self.codebooks[i][codes[:, i]] for i in range(self.k)]
        return torch.cat(pieces, 1) if self.mode == "product" else torch.stack(pieces).sum(0)


class VQVAE(nn.Module):
    def __init__(self, input_dim: int = 384, hidden_dim: int = 1024, latent_dim: int = 384,
                 num_codebooks: int = 8, num_embeddings: int = 512, mode: str = "residual"):
        super().__init__()
        self.shape = dict(input_dim=input_dim, hidden_dim=hidden_dim, latent_dim=latent_dim,
                          num_codebooks=num_codebooks, num_embeddings=num_embeddings, mode=mode)
        self.encoder = Branch(input_dim, latent_dim, hidden_dim)
        self.vq = ResidualVQ(latent_dim, num_codebooks, num_embeddings, mode)
        self.decoder = Branch(latent_dim, input_dim, hidden_dim)

    @property
    def bits(self) -> int:
        return self.vq.k * int(math.log2(self.vq.n))

    def forward(self, x: torch.Tensor, update: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        zq, codes = self.vq(z, update=update)
        x_hat = self.decoder(z + (zq - z).detach())  # straight-through estimator
        return x_hat, codes, F.mse_loss(z, zq.detach())

    @torch.no_grad()
    def encode(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        self.eval()
        out = [self.vq(self.encoder(torch.from_numpy(np.asarray(x[i:i + batch_size], np.float32))))[1]
               for i in range(0, len(x), batch_size)]
        return torch.cat(out).numpy().astype(np.int64) if out else np.zeros((0, self.vq.k), np.int64)

    @torch.no_grad()
    def decode(self, codes: np.ndarray) -> np.ndarray:
        self.eval()
        c = torch.from_numpy(np.asarray(codes, np.int64))
        if c.numel() and (c.min() < 0 or c.max() >= self.vq.n or c.shape[1] != self.vq.k):
            raise ValueError(f"codes must be (n, {self.vq.k}) in [0, {self.vq.n})")
        return F.normalize(self.decoder(self.vq.lookup(c)), dim=1).numpy()

    def save(self, weights_path: str | Path, shape_path: str | Path) -> None:
        from safetensors.torch import save

        from .artifacts import atomic_write, write_json

        tensors = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        with atomic_write(weights_path) as f:
            f.write(save(tensors))
        write_json(shape_path, self.shape)

    @classmethod
    def load(cls, weights_path: str | Path, shape_path: str | Path) -> "VQVAE":
        from safetensors.torch import load_file

        model = cls(**json.loads(Path(shape_path).read_text()))
        model.load_state_dict(load_file(str(weights_path)))
        return model.eval()


def usage(codes: np.ndarray, num_embeddings: int) -> list[dict[str, float]]:
    """Per codebook: share of entries used and perplexity of the code distribution."""
    out = []
    for col in np.asarray(codes).T:
        p = np.bincount(col, minlength=num_embeddings) / max(len(col), 1)
        nz = p[p > 0]
        out.append({"used": float((p > 0).mean()), "perplexity": float(np.exp(-(nz * np.log(nz)).sum()))})
    return out


def train_vqvae(x: np.ndarray, cfg: dict[str, Any],
                log: Callable[[dict[str, Any]], None] | None = None) -> tuple[VQVAE, list[dict[str, Any]]]:
    """Train on unit-norm embeddings x (n, d); deterministic for a fixed cfg['seed']."""
    torch.manual_seed(cfg["seed"])
    gen = torch.Generator().manual_seed(cfg["seed"])
    model = VQVAE(x.shape[1], cfg["vqvae_hidden_dim"], cfg["vqvae_embedding_dim"],
                  cfg["vqvae_num_codebooks"], cfg["vqvae_num_embeddings"], cfg["vqvae_quantization"])
    if cfg["vqvae_embedding_dim"] != x.shape[1]:
        # Latent narrower or wider than the input: start from a random orthogonal map instead.
        nn.init.orthogonal_(model.encoder.linear.weight)
        model.decoder.linear.weight.data.copy_(model.encoder.linear.weight.data.t())
    xt = torch.from_numpy(np.asarray(x, np.float32))
    with torch.no_grad():
        model.vq.kmeans_init(model.encoder(xt), cfg["seed"])
    params = list(model.encoder.parameters()) + list(model.decoder.parameters())
    opt = torch.optim.Adam(params, lr=cfg["vqvae_learning_rate"])
    steps = cfg["vqvae_epochs"] * math.ceil(len(xt) / cfg["batch_size"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg["vqvae_learning_rate"], total_steps=steps, pct_start=0.1)
    history: list[dict[str, Any]] = []
    for epoch in range(cfg["vqvae_epochs"]):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total, count = 0.0, 0
        for i in range(0, len(xt), cfg["batch_size"]):
            xb = xt[perm[i:i + cfg["batch_size"]]]
            x_hat, _, commit = model(xb, update=True)
            loss = (1 - F.cosine_similarity(x_hat, xb)).mean() + 0.25 * commit
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(xb)
            count += len(xb)
        codes = model.encode(x)
        cos = float((model.decode(codes) * x).sum(1).mean())
        row = {"epoch": epoch + 1, "loss": total / count, "train_cosine": cos,
               "codebooks": usage(codes, cfg["vqvae_num_embeddings"])}
        history.append(row)
        if log:
            log(row)
    return model.eval(), history
