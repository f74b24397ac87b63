"""Decoders end to end on a real (small) run: the fusion decoder beside similarity."""
from __future__ import annotations


def test_fusion_backend_end_to_end(built):
    from semcomp import Codec
    from semcomp.codes import read_codes

    root, _ = built
    codec = Codec.load(root)
    codes = read_codes(root / "test.scz").codes[:20]
    sim, fused = codec.reconstruct(codes, k=3), codec.reconstruct(codes, backend="fusion", k=3)
    assert all(f["method"] == "fusion" and f["fallback_reason"] is None for f in fused)
    # by the judge's own score nothing ends below the best neighbour, which refine scores alone
    # (the int8 graph quantises per batch, so alone is how its score is reproduced)
    judged = [float(codec.judge([s["reconstruction"]])[0] @ d) for s, d in zip(sim, codec.decode(codes))]
    assert all(f["score"] >= j - 1e-5 for f, j in zip(fused, judged))
    assert [f["neighbours"] for f in fused] == [s["neighbours"] for s in sim]
    assert any(f["reconstruction"] != s["reconstruction"] for f, s in zip(fused, sim))


def test_edit_steps_after_fusion_only_climb_and_keep_to_dictionary_triples(built):
    from semcomp import Codec
    from semcomp.codes import read_codes

    root, _ = built
    codec = Codec.load(root)
    codes = read_codes(root / "test.scz").codes[:20]
    codec.cfg["llm_edit_steps"] = 0
    fused = codec.reconstruct(codes, backend="fusion", k=3)
    codec.cfg["llm_edit_steps"] = 4
    chunks = sorted((root / "cache").rglob("*.keys.npy"))
    edited = codec.reconstruct(codes, backend="fusion", k=3)
    assert all(e["score"] >= f["score"] - 1e-6 for e, f in zip(edited, fused))
    changed = [(e, f) for e, f in zip(edited, fused) if e["reconstruction"] != f["reconstruction"]]
    assert changed and all(e["score"] > f["score"] for e, f in changed)  # an edit is kept only when it scores higher
    assert sorted((root / "cache").rglob("*.keys.npy")) == chunks  # the judged candidates are not cached
