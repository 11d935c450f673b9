"""The append handle of one role file: locked for one writer, recovered, checked, synced.

Opening it takes the file's ``flock`` (one writer per role at a time), upgrades an old
header and truncates a torn tail a crash left; each batch is checked against the dims of
the role's earlier batches before it is written, flushed and, if ``durable``, fsynced.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import BinaryIO

from .records import (
    FILE_MAGIC,
    FILE_VERSION,
    Batch,
    check_file_header,
    decode_payload,
    encode_batch,
    iter_frames,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]


def _dims_text(dims: tuple[str, ...]) -> str:
    return f"({', '.join(dims)})" if dims else "() (a scalar)"


def fsync_dir(path: Path) -> None:
    """Make the entries just made in folder ``path`` survive a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RoleWriter:
    """The open, locked append handle of one role file."""

    def __init__(self, path: Path, durable: bool) -> None:
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self.file: BinaryIO = os.fdopen(fd, "r+b")
        self.durable = durable
        self.lock = threading.Lock()
        self.dims: dict[str, tuple[str, ...]] = {}  # every column's dims so far (scalar: ())
        self.coords: set[str] = set()  # every coordinate name so far
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._recover()
        except BaseException:
            self.file.close()
            raise
        if created and durable:
            fsync_dir(path.parent)

    def _recover(self) -> None:
        """Position after the last valid record, truncating any torn or garbage tail."""
        f = self.file
        end = len(FILE_MAGIC)
        version = check_file_header(f)
        if version:
            for frame_end, n, payload in iter_frames(f):
                end = frame_end
                self.check(decode_payload(n, payload), name=str(f.name))
        if version != FILE_VERSION:  # new, or version 1: same framing, header upgraded
            f.seek(0)
            f.write(FILE_MAGIC)
        f.truncate(end)
        f.seek(end)
        self._sync()

    def _sync(self) -> None:
        self.file.flush()
        if self.durable:
            os.fsync(self.file.fileno())

    def check(self, batch: Batch, name: str = "") -> None:
        """Refuse a batch whose columns' dims differ from earlier ones; then remember them."""
        dims = {col: batch.dims.get(col, ()) for col in batch.columns}
        for col, d in dims.items():
            if col in self.coords:
                raise ValueError(f"column {col!r} has the name of a coordinate stored before")
            if col in self.dims and self.dims[col] != d:
                raise ValueError(
                    f"column {col!r} has dims {_dims_text(d)} but was stored with "
                    f"{_dims_text(self.dims[col])}{' in ' + name if name else ''}"
                )
        for dim in batch.coords:
            if dim in self.dims:
                raise ValueError(f"coordinate {dim!r} has the name of a column stored before")
        self.dims.update(dims)
        self.coords.update(batch.coords)

    def write(self, batch: Batch) -> None:
        with self.lock:
            self.check(batch)
            for piece in encode_batch(batch):
                self.file.write(piece)
            self._sync()

    def close(self) -> None:
        with self.lock:
            self.file.close()
