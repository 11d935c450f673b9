"""Binary framing of the job store: one checksummed record per appended batch.

File layout (all integers little-endian)::

    file   := FILE_MAGIC record*
    record := b"TSRB" crc32:u32 nsamples:u32 length:u64 payload[length]
    payload:= meta_len:u32 meta[meta_len] uts_buf column_buf*

``crc32`` covers ``nsamples``, ``length`` and the payload. ``meta`` is a small JSON object
``{"step": int, "units": {col: str|null}, "cols": [[name, numpy dtype str], ...]}``; the
buffers follow in that order, each ``nsamples`` items of its dtype (``uts`` is ``<f8``).
A record that is cut short, has a wrong magic or a wrong checksum ends the readable data:
it and everything after it are ignored by readers and truncated by the next writer.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

FILE_MAGIC = b"TOMTSR\x00\x01"
RECORD_MAGIC = b"TSRB"
_HEADER = struct.Struct("<4sIIQ")
_SIZES = struct.Struct("<IQ")
_META_LEN = struct.Struct("<I")
MAX_PAYLOAD = 1 << 40


@dataclass(frozen=True)
class Batch:
    """One appended batch: timestamps, columns (each as long as ``uts``), units, step."""

    uts: np.ndarray
    columns: dict[str, np.ndarray]
    units: dict[str, str | None]
    step: int

    def __len__(self) -> int:
        return int(self.uts.shape[0])


def _little_endian(arr: np.ndarray) -> np.ndarray:
    order = arr.dtype.byteorder
    if order == ">" or (order == "=" and sys.byteorder == "big"):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return np.ascontiguousarray(arr)


def encode_batch(batch: Batch) -> list[bytes | memoryview]:
    """Return the pieces of one record (header first); write them in order."""
    n = len(batch)
    bufs = [_little_endian(batch.uts.astype(np.float64, copy=False))]
    cols = []
    for name, arr in batch.columns.items():
        arr = _little_endian(arr)
        cols.append([name, arr.dtype.str])
        bufs.append(arr)
    meta = json.dumps({"step": batch.step, "units": batch.units, "cols": cols}).encode()
    pieces: list[bytes | memoryview] = [_META_LEN.pack(len(meta)), meta]
    pieces += [memoryview(b).cast("B") for b in bufs]
    length = sum(len(p) for p in pieces)
    crc = zlib.crc32(_SIZES.pack(n, length))
    for p in pieces:
        crc = zlib.crc32(p, crc)
    return [_HEADER.pack(RECORD_MAGIC, crc, n, length), *pieces]


def decode_payload(nsamples: int, payload: bytes) -> Batch:
    """Decode a verified payload; arrays are read-only views into ``payload``."""
    (meta_len,) = _META_LEN.unpack_from(payload, 0)
    offset = _META_LEN.size + meta_len
    meta = json.loads(payload[_META_LEN.size : offset])
    uts = np.frombuffer(payload, dtype="<f8", count=nsamples, offset=offset)
    offset += uts.nbytes
    columns = {}
    for name, dtype in meta["cols"]:
        arr = np.frombuffer(payload, dtype=np.dtype(dtype), count=nsamples, offset=offset)
        offset += arr.nbytes
        columns[name] = arr
    return Batch(uts=uts, columns=columns, units=meta["units"], step=int(meta["step"]))


def check_file_header(f: BinaryIO) -> bool:
    """Read the file header at the current position; False if the file is (nearly) empty.

    Raises ValueError if the file is not a job store file.
    """
    head = f.read(len(FILE_MAGIC))
    if len(head) < len(FILE_MAGIC) and FILE_MAGIC.startswith(head):
        return False
    if head != FILE_MAGIC:
        raise ValueError(f"not a tomato job store file: {getattr(f, 'name', f)!r}")
    return True


def iter_frames(f: BinaryIO) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(end_offset, nsamples, payload)`` of each valid record after the file header.

    Stops silently at the first incomplete or corrupt record.
    """
    pos = f.tell()
    size = os.fstat(f.fileno()).st_size
    while True:
        raw = f.read(_HEADER.size)
        if len(raw) < _HEADER.size:
            return
        magic, crc, n, length = _HEADER.unpack(raw)
        if magic != RECORD_MAGIC or length > MAX_PAYLOAD:
            return
        end = pos + _HEADER.size + length
        if end > size:
            size = os.fstat(f.fileno()).st_size
            if end > size:
                return
        payload = f.read(length)
        if len(payload) < length or zlib.crc32(payload, zlib.crc32(_SIZES.pack(n, length))) != crc:
            return
        pos = end
        yield end, n, payload
