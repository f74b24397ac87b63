"""Bit-packed code files: K codes of b bits take exactly ceil(K*b/8) bytes per sentence.

Two containers: one codes file (header + payload, below), and a folder of them (shards) with a
manifest, as `pipeline.py --compress --engine ray` writes (`write_shards_manifest`,
`read_sharded_codes`)."""
from __future__ import annotations

import re
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import ArtifactError, atomic_write, read_json, write_json
from .util import sha256_file

MAGIC = b"SCZ\x00"
VERSION = 2
# magic, format version, model fingerprint (8 bytes), count, K codebooks, b bits per code
HEADER_V1 = struct.Struct("<4sB8sQHB")
# version 2 adds the CRC32 of the payload: a flipped bit decoded to other text, silently, in version 1
HEADER = struct.Struct("<4sB8sQHBI")


def row_bytes(num_codebooks: int, bits: int) -> int:
    return (num_codebooks * bits + 7) // 8


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """(n, K) integer codes -> (n, ceil(K*b/8)) uint8, most significant bit first."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-D (n, K), got shape {codes.shape}")
    if codes.size and (codes.min() < 0 or codes.max() >= 1 << bits):
        raise ValueError(f"codes out of range for {bits} bits")
    n, k = codes.shape
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    bitmat = ((codes[:, :, None] >> shifts) & 1).astype(np.uint8).reshape(n, k * bits)
    return np.packbits(bitmat, axis=1)


def unpack(packed: np.ndarray, num_codebooks: int, bits: int) -> np.ndarray:
    n = packed.shape[0]
    bitmat = np.unpackbits(packed, axis=1, count=num_codebooks * bits).reshape(n, num_codebooks, bits)
    weights = (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))
    return (bitmat.astype(np.int64) * weights).sum(axis=2)


@dataclass
class CodesFile:
    codes: np.ndarray          # (n, K) int64
    bits: int
    fingerprint: bytes         # 8 bytes naming the model that made the codes


def write_codes(path: str | Path, codes: np.ndarray, bits: int, fingerprint: bytes) -> int:
    """Write atomically; returns the file size in bytes."""
    payload = pack(codes, bits).tobytes()
    header = HEADER.pack(MAGIC, VERSION, fingerprint[:8].ljust(8, b"\0"), codes.shape[0], codes.shape[1], bits,
                         zlib.crc32(payload))
    with atomic_write(path) as f:
        f.write(header)
        f.write(payload)
    return HEADER.size + len(payload)


def code_shape(model: Any) -> tuple[int, int]:
    """(K codebooks, b bits per code) of a loaded quantiser (semcomp.quantizers.Quantizer)."""
    return int(model.num_codebooks), int(model.bits_per_code)


def read_codes(path: str | Path, expect_fingerprint: bytes | None = None,
               expect_shape: tuple[int, int] | None = None) -> CodesFile:
    """Read and check a codes file; `expect_shape` is the decoding model's (K, b) (see `code_shape`)."""
    path = Path(path)
    if not path.is_file():  # a folder would fail on read_bytes with a traceback
        raise ArtifactError(f"codes file {path} not found (or not a file)")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ArtifactError(f"cannot read codes file {path}: {e.strerror}") from None
    if len(data) < HEADER_V1.size + 1 or data[:4] != MAGIC:
        raise ArtifactError(f"{path} is not a semcomp codes file")
    version = data[4]
    if version not in (1, VERSION):
        raise ArtifactError(f"{path} is codes format {version}; this semcomp reads 1 and {VERSION}")
    header = HEADER if version == VERSION else HEADER_V1
    if len(data) < header.size:
        raise ArtifactError(f"{path} is truncated: {len(data)} bytes, shorter than its header")
    magic, version, fp, n, k, bits, *crc = header.unpack_from(data)
    width = row_bytes(k, bits)
    if len(data) != header.size + n * width:
        raise ArtifactError(f"{path} is truncated or padded: {len(data)} bytes for {n} codes of {width} bytes")
    if crc and zlib.crc32(memoryview(data)[header.size:]) != crc[0]:
        raise ArtifactError(f"{path} is damaged: its codes fail their CRC32 check (re-compress the text)")
    if expect_fingerprint is not None and fp != expect_fingerprint[:8]:
        raise ArtifactError(f"{path} was made by a different model ({fp.hex()}, loaded model is "
                            f"{expect_fingerprint[:8].hex()}): decode it with the artifacts that wrote it")
    if expect_shape is not None and (k, bits) != tuple(expect_shape):
        # The header says what the model must be; the decoder would fail on a reshape otherwise.
        raise ArtifactError(f"{path} holds codes of K x b = {k} x {bits} bits, the loaded model's are "
                            f"{expect_shape[0]} x {expect_shape[1]}: decode it with the artifacts that wrote it")
    packed = np.frombuffer(data, np.uint8, offset=header.size).reshape(n, width)
    return CodesFile(unpack(packed, k, bits), bits, fp)


# -- a folder of codes files (shards) and its manifest -------------------------------------------------
SHARDS_FORMAT = "semcomp-codes-shards"
SHARDS_VERSION = 1
SHARDS_MANIFEST = "manifest.json"
SHARD_NAME = "shard-{:05d}.scz"
_HEX = re.compile(r"[0-9a-f]+")


def write_shards_manifest(folder: Path, shards: list[dict[str, Any]], fingerprint: bytes, num_codebooks: int,
                          bits: int, **extra: Any) -> dict[str, Any]:
    """Write the manifest of shards already in `folder` (each {file, count, bytes, sha256}), last:
    the set is complete from then on. Shard files the manifest does not list are removed."""
    manifest = {"format": SHARDS_FORMAT, "version": SHARDS_VERSION, "fingerprint": fingerprint[:8].hex(),
                "count": sum(s["count"] for s in shards), "num_codebooks": num_codebooks, "bits": bits,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra, "shards": shards}
    write_json(folder / SHARDS_MANIFEST, manifest)
    listed = {s["file"] for s in shards}
    for stale in folder.glob("shard-*.scz"):  # left by an earlier, longer set
        if stale.name not in listed:
            stale.unlink()
    return manifest


def shard_entry(folder: Path, name: str, codes: np.ndarray, bits: int, fingerprint: bytes) -> dict[str, Any]:
    """Write one shard; its manifest entry."""
    size = write_codes(folder / name, codes, bits, fingerprint)
    return {"file": name, "count": int(len(codes)), "bytes": size, "sha256": sha256_file(folder / name)}


def shards_folder(path: str | Path) -> Path:
    p = Path(path)
    return p.parent if p.name == SHARDS_MANIFEST and p.is_file() else p


def is_sharded(path: str | Path) -> bool:
    """A folder (of shards, or an unfinished one), or the manifest file of one."""
    p = Path(path)
    return p.is_dir() or (p.name == SHARDS_MANIFEST and p.is_file())


def _check_manifest(m: Any, mpath: Path) -> None:
    """Every field `read_sharded_codes` uses, with its type, before any shard is opened."""
    def bad(what: str) -> ArtifactError:
        return ArtifactError(f"{mpath} is damaged: {what}; re-run `pipeline.py --compress ... --engine ray`")

    def count(v: Any, lo: int = 0, hi: int | None = None) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)

    fp = m.get("fingerprint")
    if not (isinstance(fp, str) and len(fp) == 16 and _HEX.fullmatch(fp)):
        raise bad(f"fingerprint {fp!r} is not 16 hex digits")
    for key, lo, hi in (("count", 0, None), ("num_codebooks", 1, 1 << 16), ("bits", 1, 16)):
        if not count(m.get(key), lo, hi):
            raise bad(f"{key} {m.get(key)!r} is not a whole number in range")
    shards = m.get("shards")
    if not isinstance(shards, list):
        raise bad(f"shards is {type(shards).__name__}, not a list")
    seen: set[str] = set()
    for i, s in enumerate(shards):
        if not isinstance(s, dict):
            raise bad(f"shards[{i}] is {s!r}, not an object")
        name, digest = s.get("file"), s.get("sha256")
        if not isinstance(name, str) or Path(name).name != name or name in {"", ".", ".."}:
            raise bad(f"shards[{i}].file {name!r} is not a file name inside the folder")
        if name in seen:  # one shard listed 100,000 times would be read 100,000 times
            raise bad(f"shard {name} is listed twice")
        seen.add(name)
        if not (isinstance(digest, str) and len(digest) == 64 and _HEX.fullmatch(digest)):
            raise bad(f"shards[{i}].sha256 {digest!r} is not a sha256")
        if not count(s.get("count")):
            raise bad(f"shards[{i}].count {s.get('count')!r} is not a whole number")
    if sum(s["count"] for s in shards) != m["count"]:
        raise bad(f"its shards hold {sum(s['count'] for s in shards)} codes, its count says {m['count']}")


def read_sharded_codes(path: str | Path, expect_fingerprint: bytes | None = None,
                       expect_shape: tuple[int, int] | None = None) -> CodesFile:
    """A folder of shards (or its manifest) as one codes set, the manifest and every shard checked."""
    folder = shards_folder(path)
    mpath = folder / SHARDS_MANIFEST
    if not mpath.is_file():
        raise ArtifactError(f"{folder} has no {SHARDS_MANIFEST}: not a folder of codes shards, or the "
                            f"job writing it did not finish; re-run `pipeline.py --compress ... --engine ray`")
    try:
        m = read_json(mpath)
    except (ValueError, OSError) as e:
        raise ArtifactError(f"{mpath} is unreadable or not JSON ({type(e).__name__})") from None
    if not isinstance(m, dict) or m.get("format") != SHARDS_FORMAT:
        raise ArtifactError(f"{mpath} is not a semcomp codes-shards manifest")
    if m.get("version") != SHARDS_VERSION:
        raise ArtifactError(f"{mpath} is shards format {m.get('version')}; this semcomp reads {SHARDS_VERSION}")
    _check_manifest(m, mpath)
    fp = bytes.fromhex(m["fingerprint"])
    if expect_fingerprint is not None and fp != expect_fingerprint[:8]:
        raise ArtifactError(f"{folder} was made by a different model ({fp.hex()}, loaded model is "
                            f"{expect_fingerprint[:8].hex()}): decode it with the artifacts that wrote it")
    width = row_bytes(m["num_codebooks"], m["bits"])
    parts = []
    for s in m["shards"]:
        p = folder / s["file"]
        if p.is_symlink():  # it could point anywhere; a shard is a file the job wrote into the folder
            raise ArtifactError(f"{p} is a symbolic link; a codes shard must be a file in {folder}")
        if not p.is_file():
            raise ArtifactError(f"{p} is missing: the codes set in {folder} is incomplete")
        if p.stat().st_size - s["count"] * width not in (HEADER.size, HEADER_V1.size):  # cheap, before hashing
            raise ArtifactError(f"{p} has {p.stat().st_size} bytes, {mpath} says {s['count']} codes "
                                f"of {width} bytes")
        if sha256_file(p) != s["sha256"]:
            raise ArtifactError(f"{p} does not match {mpath} (changed, or written by another job)")
        cf = read_codes(p, expect_fingerprint=fp, expect_shape=expect_shape)
        if len(cf.codes) != s["count"] or (cf.codes.shape[1], cf.bits) != (m["num_codebooks"], m["bits"]):
            raise ArtifactError(f"{p} holds {len(cf.codes)} codes of {cf.bits} bits, {mpath} says "
                                f"{s['count']} of {m['bits']}")
        parts.append(cf.codes)
    codes = np.concatenate(parts) if parts else np.zeros((0, m["num_codebooks"]), np.int64)
    return CodesFile(codes, m["bits"], fp)
