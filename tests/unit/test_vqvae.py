"""Fast checks of semcomp.quantizers.vqvae on small synthetic data (no SBERT, no corpus)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from semcomp.config import load_config
from semcomp.metrics import usage
from semcomp.quantizers.vqvae import VQVAE
from semcomp.quantizers.vqvae import train as train_vqvae

D, K, N = 32, 3, 16


def _data(n: int = 800, seed: int = 0) -> np.ndarray:
    """Unit-norm points around 40 cluster centres: structure the codebooks can find."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, D))
    x = centres[rng.integers(0, 40, n)] + 0.3 * rng.normal(size=(n, D))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _cfg(**kw) -> dict:
    cfg = load_config(None, [f"vqvae_num_codebooks={K}", f"vqvae_num_embeddings={N}", "vqvae_hidden_dim=32",
                             f"vqvae_embedding_dim={D}", "vqvae_epochs=2", "batch_size=128"])
    cfg.update(kw)
    return cfg


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    x = _data()
    model, hist = train_vqvae(x, _cfg())
    return x, model, hist


def test_shapes_and_history(trained):
    x, model, hist = trained
    codes = model.encode(x[:50])
    assert codes.shape == (50, K) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < N
    dec = model.decode(codes)
    assert dec.shape == (50, D) and dec.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(dec, axis=1), 1.0, atol=1e-5)
    assert model.bits == K * 4
    assert [h["epoch"] for h in hist] == [1, 2]
    assert all(np.isfinite(h["loss"]) and len(h["codebooks"]) == K for h in hist)
    assert model.encode(x[:0]).shape == (0, K)


def test_reconstruction_beats_chance(trained):
    x, model, _ = trained
    cos = (model.decode(model.encode(x)) * x).sum(1).mean()
    assert cos > 0.8, cos


def test_deterministic_for_fixed_seed(trained):
    x, model, _ = trained
    again, _ = train_vqvae(x, _cfg())
    np.testing.assert_array_equal(model.encode(x), again.encode(x))
    np.testing.assert_array_equal(model.decode(model.encode(x)), again.decode(again.encode(x)))


def test_save_load_round_trip(trained, tmp_path):
    x, model, _ = trained
    model.save(tmp_path / "m.safetensors", tmp_path / "m.json")
    loaded = VQVAE.load(tmp_path / "m.safetensors", tmp_path / "m.json")
    codes = model.encode(x[:100])
    np.testing.assert_array_equal(codes, loaded.encode(x[:100]))
    np.testing.assert_array_equal(model.decode(codes), loaded.decode(codes))
    assert loaded.bits == model.bits


def test_codebook_usage(trained):
    x, model, hist = trained
    used = [u["used"] for u in usage(model.encode(x), N)]
    assert min(used) >= 0.8, used  # no collapse (14 of 16 entries here since FAISS trains on every beam residual)
    assert all(1.0 <= c["perplexity"] <= N for c in hist[-1]["codebooks"])
    u = usage(np.array([[0, 1], [0, 1], [1, 1]]), 4)
    assert u[0]["used"] == 0.5 and u[1]["used"] == 0.25 and u[1]["perplexity"] == pytest.approx(1.0)


def test_beam_search_no_worse_than_greedy(trained):
    x, model, _ = trained
    z = torch.from_numpy(x)
    err = lambda c: ((z - model.vq.lookup(c)) ** 2).sum(1)  # noqa: E731
    greedy, beam = err(model.vq.encode(z, beam=1)), err(model.vq.encode(z, beam=8))
    assert beam.mean() <= greedy.mean() + 1e-6


def test_bad_codes_rejected(trained):
    _, model, _ = trained
    with pytest.raises(ValueError):
        model.decode(np.full((2, K), N))


def test_kmeans_init_trains():
    x = _data(400)
    model, _ = train_vqvae(x, _cfg(vqvae_init="kmeans"))
    codes = model.encode(x)
    assert codes.shape == (400, model.num_codebooks)
    assert (model.decode(codes) * x).sum(1).mean() > 0.5


@pytest.mark.parametrize("kind", ["pq", "opq", "rq"])
def test_every_quantizer_ranks_candidates_by_distortion(kind):
    """The registry's FAISS kinds give closed-loop encoding a ranked list like the VQ-VAE's beam."""
    from semcomp import quantizers

    x = _data(3000)
    model, _ = quantizers.train(kind, x, _cfg(vqvae_num_codebooks=4, vqvae_num_embeddings=16, vqvae_train_beam=8))
    cand = model.candidates(x[:40], 5)
    assert cand.shape == (40, 5, 4) and len({tuple(r) for r in cand[0]}) == 5
    np.testing.assert_array_equal(cand[:, 0], model.encode(x[:40]))
    # distortion before normalisation: the quantity each kind minimises
    raw = {"rq": lambda c: model.index.rq.decode(_pack(c)), "pq": lambda c: model.index.pq.decode(_pack(c))}
    if kind in raw:
        err = np.stack([((raw[kind](cand[:, j]) - x[:40]) ** 2).sum(1) for j in range(5)], 1)
        assert (err[:, 1:] >= err[:, :-1] - 1e-5).all()


def _pack(codes: np.ndarray) -> np.ndarray:
    """(n, K) 4-bit codes -> FAISS's packed bytes (least significant bit first)."""
    bits = ((codes[:, :, None] >> np.arange(4)) & 1).astype(np.uint8).reshape(len(codes), -1)
    return np.packbits(bits, axis=1, bitorder="little")


def test_candidates_sorted_by_distortion_and_led_by_the_plain_code(trained):
    x, model, _ = trained
    cand = model.candidates(x[:40], 6)
    assert cand.shape == (40, 6, K)
    np.testing.assert_array_equal(cand[:, 0], model.encode(x[:40]))  # same beam: max(8, 6)
    z = torch.from_numpy(x[:40])
    err = torch.stack([((z - model.vq.lookup(torch.from_numpy(cand[:, j]))) ** 2).sum(1) for j in range(6)], 1)
    assert (err[:, 1:] >= err[:, :-1] - 1e-5).all()
    assert len({tuple(r) for r in cand[0]}) == 6  # distinct codes


def test_closed_loop_picks_the_candidate_whose_hit_is_closest_to_the_original():
    from semcomp.codec import closed_loop_encode

    class Toy:  # three candidate codes that decode onto three dictionary directions
        def candidates(self, x, n):
            return np.tile(np.arange(3)[None, :n, None], (len(x), 1, 1))

        def encode(self, x):
            return np.zeros((len(x), 1), np.int64)

        def decode(self, codes):
            return np.eye(3, dtype=np.float32)[codes[:, 0]]

    dictionary = np.eye(3, dtype=np.float32)

    def search(q, k):
        return np.argmax(q @ dictionary.T, 1)[:, None], None

    x = np.array([[0.2, 0.1, 0.97], [0.9, 0.3, 0.1], [0.5, 0.5, 0.1]], np.float32)
    got = closed_loop_encode(Toy(), x, 3, search, dictionary)
    np.testing.assert_array_equal(got[:, 0], [2, 0, 0])  # ties go to the least-distortion candidate
    np.testing.assert_array_equal(closed_loop_encode(Toy(), x, 1, search, dictionary), Toy().encode(x))
