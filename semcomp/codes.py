"""Bit-packed code files: K codes of b bits take exactly ceil(K*b/8) bytes per sentence."""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import ArtifactError, atomic_write

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
