"""Decoders end to end on a real (small) run: the fusion decoder beside similarity."""
from __future__ import annotations

import numpy as np


def test_fusion_backend_end_to_end(built):
    from semcomp import Codec
    from semcomp.codes import read_codes

    root, _ = built
    codec = Codec.load(root)
    codes = read_codes(root / "test.scz").codes[:20]
    sim, fused = codec.reconstruct(codes, k=3), codec.reconstruct(codes, backend="fusion", k=3)
    assert all(f["method"] == "fusion" and f["fallback_reason"] is None for f in fused)
    # by the judge's own score nothing ends below the best neighbour; with the int8 graph the last
    # word is the fp32 graph's (llm_rescore), which, unlike int8, does not depend on the batch
    assert codec.embedder.backend == "onnx-int8" and codec.exact_judge is not None
    judged = [float(codec.exact_judge([s["reconstruction"]])[0] @ d) for s, d in zip(sim, codec.decode(codes))]
    assert all(f["score"] >= j - 1e-5 for f, j in zip(fused, judged))
    kept = [float(codec.exact_judge([f["reconstruction"]])[0] @ d) for f, d in zip(fused, codec.decode(codes))]
    assert np.allclose([f["score"] for f in fused], kept, atol=1e-4)  # the score returned is the exact one
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


def test_an_inverter_trained_on_the_run_adds_judged_candidates_and_a_stale_one_is_refused(built):
    import shutil

    import numpy as np
    import pytest

    from semcomp import Codec
    from semcomp.codes import read_codes
    from semcomp.decoders import inverter
    from semcomp.errors import ModelError

    root, _ = built
    codec = Codec.load(root)
    codes = read_codes(root / "test.scz").codes[:10]
    codec.cfg["inverter_samples"] = 4
    with pytest.raises(ModelError, match="bench/inverter.py"):  # before any work
        codec.reconstruct(codes, backend="fusion", k=3)
    texts, emb, _ = codec.dictionary
    tok = inverter.train_tokenizer(texts, 512)
    net = inverter.train(codec.decode(codec.model.encode(emb)), inverter.tokenize(tok, texts, 48), tok,
                         {"layers": 1, "width": 64, "heads": 2, "prefix": 2, "codec": codec.manifest["fingerprint"]},
                         seconds=60, max_steps=30, tokens=4096, val=32, warmup=5, log=lambda row: None)
    try:
        net.save(root / "inverter")
        fused = Codec.load(root).reconstruct(codes, backend="fusion", k=3)
        codec = Codec.load(root)
        codec.cfg["inverter_samples"] = 4
        with_inv = codec.reconstruct(codes, backend="fusion", k=3)
        assert all(r["fallback_reason"] is None and r["seconds"] > 0 for r in with_inv)
        written = codec.inverter.sample(codec.decode(codes), 4, 0.8, seed=0)  # what targets() asked for
        judged = [{c for c, _ in w["candidates"]} for w in with_inv]
        assert sum(s in j for ws, j in zip(written, judged) for s in ws if s) >= len(codes)  # the samples were judged
        assert all(any(c not in {x for x, _ in f["candidates"]} for c in j) for f, j in zip(fused, judged))
        codec.cfg["inverter_rounds"] = 2  # a second round, aimed by the judge, is judged too
        aimed = codec.reconstruct(codes, backend="fusion", k=3)
        both = inverter.write(codec.inverter, codec.decode(codes), 4, 0.8, 2, codec.cfg["inverter_step"], codec.judge)
        judged = [{c for c, _ in a["candidates"]} for a in aimed]
        assert sum(s in j for ws, j in zip(both, judged) for s in ws[4:] if s) >= len(codes)
        net.shape["codec"] = "0" * 16
        net.save(root / "inverter")
        codec = Codec.load(root)
        codec.cfg["inverter_samples"] = 4
        with pytest.raises(ModelError, match="another build"):
            codec.reconstruct(codes, backend="fusion", k=3)
    finally:
        shutil.rmtree(root / "inverter", ignore_errors=True)


def test_word_forms_are_cached_beside_the_ngrams_and_an_older_cache_is_built_again(built):
    """The dictionary's word forms (case.py) travel in the n-gram cache; a cache written before
    they were kept, or before grams were hashed from their words' hashes, is built again, not read
    without them or with hashes no lookup would find (the triples are changed here to tell)."""
    import numpy as np

    from semcomp import Codec

    root, _ = built
    for old in (root / "cache").glob("ngrams-*.npz"):
        old.unlink()
    built_now = Codec.load(root).word_pairs
    (path,) = (root / "cache").glob("ngrams-*.npz")
    assert built_now.forms and any(f != low for low, f in built_now.forms.items())  # names keep their capitals
    read = Codec.load(root).word_pairs
    assert read.forms == built_now.forms and all((a == b).all() for t, u in zip(read.tables, built_now.tables)
                                                  for a, b in zip(t, u))
    for left_out in ("forms", "scheme"):  # as earlier releases wrote it: no word forms; string-hashed grams
        with np.load(path) as z:
            np.savez(path, **{k: (z[k] + 1 if k == "h3" else z[k]) for k in z.files if k != left_out})
        again = Codec.load(root).word_pairs
        assert again.forms == built_now.forms and (again.tables[2][0] == built_now.tables[2][0]).all()
        with np.load(path) as z:
            assert {"forms", "scheme"} <= set(z.files)
