"""QINCo (semcomp/quantizers/qinco.py) on small synthetic data, checked against FAISS RQ and brute force."""
from __future__ import annotations

import itertools
import json

import faiss
import numpy as np
import pytest
import torch

from semcomp.config import load_config
from semcomp.quantizers.faiss_codec import faiss_codec
from semcomp.quantizers.qinco import QINCo
from semcomp.quantizers.qinco import train as train_qinco

D, K, B = 32, 3, 4  # 3 codebooks of 16 entries on 32-d vectors


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    """8 clusters, each spread along its own 2-d plane: the residual after the first code lies in
    a plane that depends on that code, which fixed RQ codebooks cannot follow and QINCo can."""
    rng = np.random.default_rng(0)
    centres, planes, lab = rng.normal(size=(8, D)), rng.normal(size=(8, 2, D)), rng.integers(0, 8, 2000)
    spread = np.einsum("nk,nkd->nd", rng.normal(size=(2000, 2)), planes[lab])
    return unit(centres[lab] + 0.5 * spread + 0.05 * rng.normal(size=(2000, D)))


def cfg(**kw) -> dict:
    base = dict(quantizer="qinco", vqvae_num_codebooks=K, vqvae_num_embeddings=1 << B, qinco_embed_dim=16,
                qinco_hidden_dim=32, qinco_epochs=10, qinco_batch_size=128, qinco_learning_rate=1e-2,
                qinco_train_candidates=8, qinco_beam=1, qinco_candidates=8, qinco_init_sample=0,
                vqvae_train_beam=1, show_progress_bar=False)
    return load_config(None, [f"{k}={json.dumps(v)}" for k, v in {**base, **kw}.items()])


@pytest.fixture(scope="module")
def trained(data: np.ndarray) -> tuple[QINCo, list]:
    return train_qinco(data, cfg())


def sq_err(model: QINCo, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Squared error of the unnormalised reconstruction (what training and the search minimise)."""
    with torch.no_grad():
        x_hat = model.net.decode_steps(torch.from_numpy(codes))[-1].numpy()
    return ((x - x_hat) ** 2).sum(1)


def test_starts_exactly_as_faiss_rq(data: np.ndarray) -> None:
    """Zero-initialised output layers: decode = FAISS RQ's decode of the same codes."""
    rq = faiss.ResidualQuantizer(D, K, B)
    rq.max_beam_size = 1
    rq.train(data)
    model = QINCo(D, K, B, embed_dim=16, hidden_dim=32, candidates=1 << B, beam=8)
    model.set_codebooks(torch.from_numpy(faiss.vector_to_array(rq.codebooks)).view(K, 1 << B, D))
    codes = np.random.default_rng(1).integers(0, 1 << B, (500, K))
    bits = ((codes[:, :, None] >> np.arange(B)) & 1).reshape(len(codes), -1).astype(np.uint8)
    packed = np.packbits(bits, axis=1, bitorder="little")  # FAISS packs codes least significant bit first
    np.testing.assert_allclose(model.decode(codes), unit(rq.decode(packed)), rtol=0, atol=1e-6)
    assert faiss_codec("rq", K, B, data, 0, None, 1, 10).codebooks().shape == (K, 1 << B, D)


def test_full_search_is_exhaustive(data: np.ndarray, trained: tuple[QINCo, list]) -> None:
    """With every codeword a candidate and a beam as wide as the code space, the search finds the
    brute-force minimum of the true (network-bent) error over all 16^3 codes."""
    model, _ = trained
    x = data[:40]
    every = np.array(list(itertools.product(range(1 << B), repeat=K)))
    best = np.stack([sq_err(model, np.repeat(row[None], len(every), 0), every).min() for row in x])
    wide = QINCo(**{**model.shape, "candidates": 1 << B, "beam": (1 << B) ** 2})
    wide.net.load_state_dict(model.net.state_dict())
    np.testing.assert_allclose(sq_err(model, x, wide.encode(x)), best, rtol=1e-4, atol=1e-5)
    assert (sq_err(model, x, model.encode(x)) >= best - 1e-5).all()  # the default search is not better


@pytest.mark.parametrize("blocks", [0, 2])
def test_search_exact_at_any_depth(data: np.ndarray, blocks: int) -> None:
    """The encoder's tabulated first layer (Step.hidden_tab) against the plain network, with random
    bent codebooks: the full search still finds the brute-force minimum with 0 or 2 blocks."""
    torch.manual_seed(blocks)
    model = QINCo(D, K, B, embed_dim=16, hidden_dim=32, num_blocks=blocks, candidates=1 << B, beam=(1 << B) ** 2)
    model.set_codebooks(0.3 * torch.randn(K, 1 << B, D))
    with torch.no_grad():
        for p in model.net.steps.parameters():
            p.add_(0.2 * torch.randn_like(p))  # the zero output layer would hide the networks
    x = data[:20]
    every = np.array(list(itertools.product(range(1 << B), repeat=K)))
    best = np.stack([sq_err(model, np.repeat(row[None], len(every), 0), every).min() for row in x])
    np.testing.assert_allclose(sq_err(model, x, model.encode(x)), best, rtol=1e-4, atol=1e-5)


def test_training_beats_its_rq_start(data: np.ndarray, trained: tuple[QINCo, list]) -> None:
    model, hist = trained
    start = QINCo(**model.shape)
    # what training starts from (same seed and settings)
    start.set_codebooks(torch.from_numpy(faiss_codec("rq", K, B, data, 0, None, 1, 5).codebooks()))
    assert hist[-1]["loss"] < hist[0]["loss"]
    before = sq_err(start, data, start.encode(data)).mean()
    after = sq_err(model, data, model.encode(data)).mean()
    assert after < 0.8 * before, (before, after)  # 0.049 -> 0.031 when written
    assert {"epoch", "loss", "mse", "codebooks", "seconds"} <= set(hist[-1])
    out = model.decode(model.encode(data[:10]))
    assert out.dtype == np.float32 and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


def test_deterministic_for_a_seed(data: np.ndarray, trained: tuple[QINCo, list]) -> None:
    again, _ = train_qinco(data, cfg())
    for (name, a), b in zip(trained[0].net.state_dict().items(), again.net.state_dict().values()):
        assert torch.equal(a, b), name


def test_time_limit_drops_epochs(data: np.ndarray) -> None:
    _, hist = train_qinco(data, cfg(qinco_epochs=50, qinco_max_seconds=1.0))
    assert 1 <= len(hist) < 50


def test_save_load_round_trip(tmp_path, data: np.ndarray, trained: tuple[QINCo, list]) -> None:
    model, _ = trained
    model.save(tmp_path / "q.safetensors", tmp_path / "q.json")
    back = QINCo.load(tmp_path / "q.safetensors", tmp_path / "q.json")
    assert (back.num_codebooks, back.bits_per_code, back.input_dim) == (K, B, D)
    codes = model.encode(data[:200])
    np.testing.assert_array_equal(back.encode(data[:200]), codes)
    np.testing.assert_array_equal(back.decode(codes), model.decode(codes))


@pytest.mark.parametrize("beam,n", [(1, 5), (4, 5), (1, 12)])
def test_candidates_best_first_and_distinct(data: np.ndarray, trained: tuple[QINCo, list], beam: int, n: int) -> None:
    model, _ = trained
    model.beam = beam
    try:
        x = data[:200]
        np.testing.assert_array_equal(model.candidates(x, 1)[:, 0], model.encode(x))
        cands = model.candidates(x, n)  # n = 12 > beam x A = 8: the beam widens
        assert cands.shape == (200, n, K)
        err = np.stack([sq_err(model, x, cands[:, j]) for j in range(n)], 1)
        assert (np.diff(err, axis=1) >= -1e-5).all()
        assert all(len({tuple(c) for c in row}) == n for row in cands)
    finally:
        model.beam = 1


def test_bad_codes_rejected(trained: tuple[QINCo, list]) -> None:
    with pytest.raises(ValueError):
        trained[0].decode(np.full((2, K), 1 << B))
