"""Append-only store of the samples of one job: one record file per role in ``jobdir/data``.

Each :meth:`JobStore.append` writes one framed record (see :mod:`.records`) to
``<role>.tsr`` through a handle kept open per role, then flushes and, if ``durable``,
fsyncs it. Nothing stored is re-read or rewritten while appending, so the cost per batch
is constant and memory does not grow with the job. Readers (other processes too) see
every complete record; a torn tail left by a crash is ignored on read and truncated when
a writer next opens the role. One writer per role at a time (enforced with ``flock``).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .columns import merge_column, to_column
from .records import FILE_MAGIC, Batch, check_file_header, decode_payload, encode_batch, iter_frames

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

SUFFIX = ".tsr"
_ROLE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def check_role(role: str) -> str:
    """Return ``role`` if it is a safe file and group name, else raise ValueError."""
    if not isinstance(role, str) or not _ROLE_RE.fullmatch(role) or ".." in role:
        raise ValueError(f"invalid role name {role!r}: use letters, digits, '_', '-', '.'")
    return role


@dataclass
class RoleData:
    """All samples of one role, merged over batches (see :mod:`.columns` for dtypes)."""

    uts: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    units: dict[str, str | None] = field(default_factory=dict)
    step: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def __len__(self) -> int:
        return int(self.uts.shape[0])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _RoleWriter:
    """The open, locked append handle of one role file."""

    def __init__(self, path: Path, durable: bool) -> None:
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self.file: BinaryIO = os.fdopen(fd, "r+b")
        self.durable = durable
        self.lock = threading.Lock()
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._recover()
        except BaseException:
            self.file.close()
            raise
        if created and durable:
            _fsync_dir(path.parent)

    def _recover(self) -> None:
        """Position after the last valid record, truncating any torn or garbage tail."""
        f = self.file
        end = len(FILE_MAGIC)
        if check_file_header(f):
            for frame_end, _, _ in iter_frames(f):
                end = frame_end
        else:
            f.seek(0)
            f.write(FILE_MAGIC)
        f.truncate(end)
        f.seek(end)
        self._sync()

    def _sync(self) -> None:
        self.file.flush()
        if self.durable:
            os.fsync(self.file.fileno())

    def write(self, pieces: Sequence[bytes | memoryview]) -> None:
        with self.lock:
            for piece in pieces:
                self.file.write(piece)
            self._sync()

    def close(self) -> None:
        with self.lock:
            self.file.close()


class JobStore:
    """Append-only, crash-safe sample store of one job (``jobdir/data/<role>.tsr``).

    ``durable=False`` skips the per-batch fsync (data still reaches the OS on every
    append, so it survives a process kill but not a power loss).
    """

    def __init__(self, jobdir: Path, durable: bool = True) -> None:
        self.jobdir = Path(jobdir)
        self.datadir = self.jobdir / "data"
        self.durable = durable
        self._writers: dict[str, _RoleWriter] = {}
        self._lock = threading.Lock()
        self._closed = False

    def path(self, role: str) -> Path:
        """Return the record file of ``role``."""
        return self.datadir / f"{check_role(role)}{SUFFIX}"

    def _writer(self, role: str) -> _RoleWriter:
        with self._lock:
            if self._closed:
                raise ValueError("JobStore is closed")
            writer = self._writers.get(role)
            if writer is None:
                path = self.path(role)
                if not self.datadir.is_dir():
                    self.datadir.mkdir(parents=True, exist_ok=True)
                    if self.durable:
                        _fsync_dir(self.jobdir)
                writer = self._writers[role] = _RoleWriter(path, self.durable)
            return writer

    def append(
        self,
        role: str,
        uts: Sequence[float],
        data: dict[str, Sequence[Any]],
        units: dict[str, str | None],
        step: int = 0,
    ) -> int:
        """Append one batch of samples of ``role``; return the number of samples appended.

        Every column in ``data`` must be as long as ``uts``; ``units`` maps column names
        to pint unit strings (missing -> None). An empty batch is a no-op.
        """
        check_role(role)
        times = np.asarray(uts, dtype=np.float64)
        if times.ndim != 1:
            raise ValueError(f"uts must be one-dimensional, got shape {times.shape}")
        n = times.shape[0]
        if n == 0:
            return 0
        columns = {}
        for name, values in data.items():
            if not isinstance(name, str) or not name or "/" in name or name == "uts":
                raise ValueError(f"invalid column name {name!r}")
            col = to_column(values, name)
            if col.shape[0] != n:
                raise ValueError(f"column {name!r} has {col.shape[0]} values, uts has {n}")
            columns[name] = col
        batch = Batch(times, columns, {k: units.get(k) for k in columns}, int(step))
        self._writer(role).write(encode_batch(batch))
        return n

    def roles(self) -> list[str]:
        """Return the roles that have a record file, sorted."""
        if not self.datadir.is_dir():
            return []
        names = (p.name[: -len(SUFFIX)] for p in self.datadir.glob(f"*{SUFFIX}"))
        return sorted(r for r in names if _ROLE_RE.fullmatch(r) and ".." not in r)

    def _frames(self, role: str) -> Iterator[tuple[int, int, bytes]]:
        path = self.path(role)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return
        with f:
            if check_file_header(f):
                yield from iter_frames(f)

    def count(self, role: str) -> int:
        """Return the number of stored samples of ``role`` (0 if unknown); scans the file."""
        return sum(n for _, n, _ in self._frames(role))

    def read(self, role: str) -> RoleData:
        """Return all complete records of ``role`` merged (empty RoleData if unknown)."""
        batches = [decode_payload(n, payload) for _, n, payload in self._frames(role)]
        if not batches:
            return RoleData()
        total = sum(len(b) for b in batches)
        parts: dict[str, list[tuple[int, np.ndarray]]] = {}
        units: dict[str, str | None] = {}
        step = np.empty(total, dtype=np.int64)
        offset = 0
        for b in batches:
            for name, arr in b.columns.items():
                parts.setdefault(name, []).append((offset, arr))
                units[name] = b.units.get(name)
            step[offset : offset + len(b)] = b.step
            offset += len(b)
        uts = np.concatenate([b.uts for b in batches]).astype(np.float64, copy=False)
        columns = {name: merge_column(p, total) for name, p in parts.items()}
        return RoleData(uts=uts, columns=columns, units=units, step=step)

    def close(self) -> None:
        """Close all append handles; reading stays possible, appending raises."""
        with self._lock:
            self._closed = True
            writers, self._writers = list(self._writers.values()), {}
        for writer in writers:
            writer.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
