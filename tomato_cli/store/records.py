"""Binary framing of the job store: one checksummed record per appended batch.

File layout (all integers little-endian)::

    file   := FILE_MAGIC record*
    record := b"TSRB" crc32:u32 nsamples:u32 length:u64 payload[length]
    payload:= meta_len:u32 meta[meta_len] uts_buf column_buf* coord_buf*

``crc32`` covers ``nsamples``, ``length`` and the payload. ``meta`` is a small JSON object::

    {"step": int, "units": {name: str|null},           # columns and coordinates
     "cols": [[name, dtype], ...                        # a scalar column: nsamples items
              [name, dtype, [k1, ...], [dim1, ...]]],   # a trace: nsamples * k1 * ... items
     "coords": [[dim, dtype, k], ...]}                  # one coordinate vector per dim

The buffers follow in that order, each of its numpy dtype (``uts`` is ``<f8``). Every
trace of a record lies on that record's coordinate vectors.

Versions: the last byte of ``FILE_MAGIC``. Version 1 files (before traces) have no
``coords`` and only two-item ``cols``; they are read as they are, and a writer that opens
one turns its header into version 2 before it appends (the records are the same framing).

A record that is cut short, has a wrong magic or a wrong checksum ends the readable data:
it and everything after it are ignored by readers and truncated by the next writer.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

FILE_MAGIC_PREFIX = b"TOMTSR\x00"
FILE_VERSION = 2
FILE_MAGIC = FILE_MAGIC_PREFIX + bytes([FILE_VERSION])
RECORD_MAGIC = b"TSRB"
_HEADER = struct.Struct("<4sIIQ")
_SIZES = struct.Struct("<IQ")
_META_LEN = struct.Struct("<I")
MAX_PAYLOAD = 1 << 40


@dataclass(frozen=True)
class Batch:
    """One appended batch: timestamps, columns (each as long as ``uts``), units, step.

    A trace column has shape ``(nsamples, k1, ...)``; ``dims`` names its extra dims and
    ``coords`` holds the coordinate vector of each dim (``units`` has its units too).
    """

    uts: np.ndarray
    columns: dict[str, np.ndarray]
    units: dict[str, str | None]
    step: int
    dims: dict[str, tuple[str, ...]] = field(default_factory=dict)
    coords: dict[str, np.ndarray] = field(default_factory=dict)

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
    cols: list[list[Any]] = []
    for name, arr in batch.columns.items():
        arr = _little_endian(arr)
        if name in batch.dims:
            cols.append([name, arr.dtype.str, list(arr.shape[1:]), list(batch.dims[name])])
        else:
            cols.append([name, arr.dtype.str])
        bufs.append(arr)
    coords = []
    for dim, arr in batch.coords.items():
        arr = _little_endian(arr)
        coords.append([dim, arr.dtype.str, int(arr.shape[0])])
        bufs.append(arr)
    meta_obj: dict[str, Any] = {"step": batch.step, "units": batch.units, "cols": cols}
    if coords:
        meta_obj["coords"] = coords
    meta = json.dumps(meta_obj).encode()
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
    dims: dict[str, tuple[str, ...]] = {}
    for entry in meta["cols"]:
        name, dtype = entry[0], np.dtype(entry[1])
        tail = tuple(entry[2]) if len(entry) > 2 else ()
        count = nsamples * math.prod(tail)
        arr = np.frombuffer(payload, dtype=dtype, count=count, offset=offset)
        offset += arr.nbytes
        columns[name] = arr.reshape((nsamples, *tail)) if len(entry) > 2 else arr
        if len(entry) > 2:
            dims[name] = tuple(entry[3])
    coords = {}
    for dim, dtype, k in meta.get("coords", []):
        arr = np.frombuffer(payload, dtype=np.dtype(dtype), count=k, offset=offset)
        offset += arr.nbytes
        coords[dim] = arr
    return Batch(
        uts=uts,
        columns=columns,
        units=meta["units"],
        step=int(meta["step"]),
        dims=dims,
        coords=coords,
    )


def check_file_header(f: BinaryIO) -> int:
    """Read the file header at the current position; return the file's format version.

    0 if the file is (nearly) empty. Raises ValueError if the file is not a job store
    file or is of a version newer than this code reads.
    """
    head = f.read(len(FILE_MAGIC))
    if len(head) < len(FILE_MAGIC) and FILE_MAGIC.startswith(head):
        return 0
    if len(head) != len(FILE_MAGIC) or not head.startswith(FILE_MAGIC_PREFIX):
        raise ValueError(f"not a tomato job store file: {getattr(f, 'name', f)!r}")
    version = head[-1]
    if not 1 <= version <= FILE_VERSION:
        raise ValueError(
            f"job store file {getattr(f, 'name', f)!r} is of format version {version}; "
            f"this tomato reads versions 1 to {FILE_VERSION}"
        )
    return version


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
