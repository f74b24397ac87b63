import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semcomp.artifacts import ArtifactError
from semcomp.codes import HEADER, code_shape, pack, read_codes, row_bytes, unpack, write_codes


@st.composite
def code_arrays(draw):
    bits = draw(st.integers(1, 16))
    k = draw(st.integers(1, 20))
    n = draw(st.integers(0, 30))
    flat = draw(st.lists(st.integers(0, (1 << bits) - 1), min_size=n * k, max_size=n * k))
    return np.array(flat, dtype=np.int64).reshape(n, k), bits


@settings(max_examples=200, deadline=None)
@given(code_arrays())
def test_pack_roundtrip_and_exact_size(arr_bits):
    codes, bits = arr_bits
    packed = pack(codes, bits)
    assert packed.shape == (codes.shape[0], row_bytes(codes.shape[1], bits))
    assert packed.shape[1] == -(-codes.shape[1] * bits // 8)  # ceil(K*b/8)
    np.testing.assert_array_equal(unpack(packed, codes.shape[1], bits), codes)


@settings(max_examples=50, deadline=None)
@given(code_arrays(), st.binary(min_size=8, max_size=8))
def test_file_roundtrip(tmp_path_factory, arr_bits, fp):
    codes, bits = arr_bits
    path = tmp_path_factory.mktemp("c") / "x.scz"
    size = write_codes(path, codes, bits, fp)
    assert size == path.stat().st_size == HEADER.size + codes.shape[0] * row_bytes(codes.shape[1], bits)
    back = read_codes(path, expect_fingerprint=fp)
    np.testing.assert_array_equal(back.codes, codes)
    assert back.bits == bits and back.fingerprint == fp


def test_72_bits_is_9_bytes():
    codes = np.full((3, 8), 511)
    assert pack(codes, 9).shape == (3, 9)


def test_out_of_range_codes_refused():
    with pytest.raises(ValueError):
        pack(np.array([[256]]), 8)


def test_foreign_truncated_and_wrong_model(tmp_path):
    path = tmp_path / "a.scz"
    write_codes(path, np.arange(16).reshape(2, 8), 9, b"AAAAAAAA")
    with pytest.raises(ArtifactError, match="different model"):
        read_codes(path, expect_fingerprint=b"BBBBBBBB")
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ArtifactError, match="truncated"):
        read_codes(path)
    (tmp_path / "b.scz").write_bytes(b"hello world, not codes")
    with pytest.raises(ArtifactError, match="not a semcomp codes file"):
        read_codes(tmp_path / "b.scz")


def test_shape_mismatch_names_both_shapes(tmp_path):
    """A well-formed file whose K x b is not the model's: one line naming both, not a reshape error."""
    path = tmp_path / "a.scz"
    write_codes(path, np.arange(8).reshape(2, 4), 4, b"AAAAAAAA")
    with pytest.raises(ArtifactError) as e:
        read_codes(path, expect_fingerprint=b"AAAAAAAA", expect_shape=(8, 9))
    assert "4 x 4" in str(e.value) and "8 x 9" in str(e.value) and "\n" not in str(e.value)
    assert read_codes(path, expect_shape=(4, 4)).codes.shape == (2, 4)


def test_code_shape_of_each_quantiser():
    from semcomp.quantizers.faiss_codec import FaissCodec
    from semcomp.quantizers.vqvae import VQVAE

    assert code_shape(VQVAE(16, 8, 16, num_codebooks=3, num_embeddings=32)) == (3, 5)
    x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    assert code_shape(FaissCodec.train("pq", 2, 4, x)) == (2, 4)


def test_folder_is_not_a_codes_file(tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        read_codes(tmp_path)


def test_shorter_rq_is_cut_from_a_cached_longer_one(tmp_path, monkeypatch):
    """RQ trains codebook by codebook, so evaluate.py cuts RQ-64 from RQ-128: the cut must be
    exactly what training the shorter one would give, and must not train."""
    import faiss

    from semcomp.quantizers.faiss_codec import FaissCodec, faiss_codec

    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    direct = faiss_codec("rq", 2, 4, x, seed=3)
    assert not faiss_codec("rq", 2, 3, x, seed=3).below_advice  # 600 points >= 39 x 8
    faiss_codec("rq", 4, 4, x, seed=3, cache_dir=tmp_path)

    def no_training(*a, **k):
        raise AssertionError("trained instead of cutting the cached RQ")
    monkeypatch.setattr(FaissCodec, "train", no_training)
    cut = faiss_codec("rq", 2, 4, x, seed=3, cache_dir=tmp_path)
    np.testing.assert_array_equal(cut.codebooks(), direct.codebooks())
    np.testing.assert_array_equal(cut.encode(x), direct.encode(x))
    np.testing.assert_allclose(cut.decode(cut.encode(x)), direct.decode(direct.encode(x)))
    assert isinstance(cut.index, faiss.IndexResidualQuantizer) and cut.index.sa_code_size() == 1
    assert direct.below_advice and cut.below_advice  # 600 points < FAISS's 39 x 16: the cut keeps the warning
    with pytest.raises(AssertionError):  # another seed is another quantiser: nothing to cut from
        faiss_codec("rq", 2, 4, x, seed=4, cache_dir=tmp_path)


def test_rq_candidates_are_its_beam(tmp_path):
    """FAISS's beam search, widened: the first candidate is at least as good as FAISS's own
    encoding (beam 8), all are distinct, and their distortion never decreases."""
    from semcomp.quantizers.faiss_codec import faiss_codec

    rng = np.random.default_rng(1)
    x = rng.standard_normal((800, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    c = faiss_codec("rq", 3, 4, x)
    cand = c.candidates(x[:50], 12)
    assert cand.shape == (50, 12, 3)
    cb = c.codebooks()

    def err(codes):
        return ((x[:50, None] - sum(cb[k][codes[:, :, k]] for k in range(3))) ** 2).sum(-1)
    e = err(cand)
    assert (np.diff(e, axis=1) >= -1e-5).all()
    assert (e[:, 0] <= err(c.encode(x[:50])[:, None])[:, 0] + 1e-5).all()
    assert all(len({tuple(r) for r in rows}) == 12 for rows in cand)


def test_a_flipped_payload_bit_is_refused_in_one_line(tmp_path):
    """Version 1 decoded a damaged payload to other text, exit 0; the CRC32 names the file instead."""
    path = tmp_path / "c.scz"
    write_codes(path, np.arange(12).reshape(3, 4) % 16, 4, b"abcdefgh")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="damaged") as e:
        read_codes(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_version_1_files_still_read(tmp_path):
    from semcomp.codes import HEADER_V1

    codes = np.array([[1, 2, 3, 15], [0, 0, 7, 9]])
    payload = pack(codes, 4).tobytes()
    path = tmp_path / "v1.scz"
    path.write_bytes(HEADER_V1.pack(b"SCZ\x00", 1, b"abcdefgh", 2, 4, 4) + payload)
    got = read_codes(path, expect_fingerprint=b"abcdefgh", expect_shape=(4, 4))
    assert np.array_equal(got.codes, codes) and got.bits == 4


# -- folders of shards (as `--engine ray` writes them), checked without Ray ---------------------------
def _shards(folder, rows=(5, 3), k=4, bits=6, fp=b"fp-shard"):
    from semcomp.codes import SHARD_NAME, shard_entry, write_shards_manifest

    rng = np.random.default_rng(0)
    folder.mkdir()
    parts = [rng.integers(0, 1 << bits, (n, k)) for n in rows]
    entries = [shard_entry(folder, SHARD_NAME.format(i), c, bits, fp) for i, c in enumerate(parts)]
    write_shards_manifest(folder, entries, fp, k, bits, engine="test")
    return np.concatenate(parts), fp


def _edit_manifest(folder, change):
    from semcomp.codes import SHARDS_MANIFEST

    m = json.loads((folder / SHARDS_MANIFEST).read_text())
    change(m)
    (folder / SHARDS_MANIFEST).write_text(json.dumps(m))


def test_shards_round_trip(tmp_path):
    from semcomp.codes import is_sharded, read_sharded_codes

    codes, fp = _shards(tmp_path / "s")
    assert is_sharded(tmp_path / "s")
    np.testing.assert_array_equal(read_sharded_codes(tmp_path / "s", fp, (4, 6)).codes, codes)


@pytest.mark.parametrize("change, says", [
    (lambda m: m.pop("shards"), "shards is NoneType"),
    (lambda m: m.__setitem__("shards", "shard-00000.scz"), "shards is str"),
    (lambda m: m.pop("fingerprint"), "fingerprint None"),
    (lambda m: m.__setitem__("fingerprint", "not-hex-at-all!!"), "not 16 hex digits"),
    (lambda m: m["shards"][0].pop("sha256"), "sha256 None"),
    (lambda m: m["shards"][0].__setitem__("file", 7), "file 7 is not a file name"),
    (lambda m: m["shards"].__setitem__(0, None), "shards\\[0\\] is None"),
    (lambda m: m["shards"][0].__setitem__("file", "../elsewhere.scz"), "not a file name inside"),
    (lambda m: m.__setitem__("count", "8"), "count '8'"),
    (lambda m: m["shards"].extend([m["shards"][0]] * 100_000), "listed twice"),
    (lambda m: m.__setitem__("count", 9), "its count says 9"),
])
def test_a_damaged_shards_manifest_is_one_line(tmp_path, change, says):
    """Each of these gave a traceback, or (one shard listed 100,000 times) ran for minutes."""
    import time

    from semcomp.artifacts import ArtifactError
    from semcomp.codes import read_sharded_codes

    _shards(tmp_path / "s")
    _edit_manifest(tmp_path / "s", change)
    t = time.perf_counter()
    with pytest.raises(ArtifactError, match=says):
        read_sharded_codes(tmp_path / "s")
    assert time.perf_counter() - t < 5


def test_a_shard_that_is_a_link_is_refused(tmp_path):
    """A shard replaced by a symbolic link to a file outside the folder (the same bytes, so the
    sha256 matches) is not read."""
    from semcomp.artifacts import ArtifactError
    from semcomp.codes import read_sharded_codes

    _shards(tmp_path / "s")
    outside = tmp_path / "outside.scz"
    (tmp_path / "s" / "shard-00001.scz").rename(outside)
    (tmp_path / "s" / "shard-00001.scz").symlink_to(outside)
    with pytest.raises(ArtifactError, match="symbolic link"):
        read_sharded_codes(tmp_path / "s")


def test_a_shard_of_the_wrong_size_is_refused_before_hashing(tmp_path):
    from semcomp.artifacts import ArtifactError
    from semcomp.codes import read_sharded_codes

    _shards(tmp_path / "s")
    with open(tmp_path / "s" / "shard-00000.scz", "ab") as f:
        f.write(b"\0" * 100)
    with pytest.raises(ArtifactError, match=r"has \d+ bytes, .* says 5 codes"):
        read_sharded_codes(tmp_path / "s")
