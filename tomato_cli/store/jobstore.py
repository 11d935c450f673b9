"""Append-only store of the samples of one job: one record file per role in ``jobdir/data``.

Each :meth:`JobStore.append` writes one framed record (see :mod:`.records`) to
``<role>.tsr`` through a handle kept open per role (:mod:`.role_writer`), then flushes
and, if ``durable``, fsyncs it. Nothing stored is re-read or rewritten while appending, so
the cost per batch is constant and memory does not grow with the job. Readers (other
processes too) see every complete record; a torn tail left by a crash is ignored on read
and truncated when a writer next opens the role. One writer per role at a time (enforced
with ``flock``).

Traces: a column may carry extra dimensions (a trace or spectrum per sample), each with
a coordinate vector stored with the batch. A column keeps its dims for the whole role:
a batch that turns a scalar column into a trace, changes a trace's dims, or names a
coordinate like a column is refused with a ValueError. The trace *length* may change
between batches: on reading, each dim's coordinate is the one all batches share, or
else the sorted union of their values, and every trace is placed at its own coordinate
values with NaN elsewhere (the outer join tomato 2.2 does).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .columns import merge_column, placement, to_column, to_trace, union_coordinate
from .records import Batch, check_file_header, decode_payload, iter_frames
from .role_writer import RoleWriter, fsync_dir

SUFFIX = ".tsr"
_ROLE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not name or "/" in name or name == "uts":
        raise ValueError(f"invalid {what} name {name!r}")


def check_role(role: str) -> str:
    """Return ``role`` if it is a safe file and group name, else raise ValueError."""
    if not isinstance(role, str) or not _ROLE_RE.fullmatch(role) or ".." in role:
        raise ValueError(f"invalid role name {role!r}: use letters, digits, '_', '-', '.'")
    return role


@dataclass(frozen=True)
class Trace:
    """How a trace column of a role is laid out: its extra dims and its merged dtype."""

    dims: tuple[str, ...]
    dtype: np.dtype


@dataclass
class RoleData:
    """All samples of one role, merged over batches (see :mod:`.columns` for dtypes).

    ``traces`` describes the trace columns, ``coords`` holds each of their dims' merged
    coordinate; ``units`` covers columns and coordinates. Trace columns are in
    ``columns`` (shape ``(samples, k1, ...)``) unless read with ``traces=False``.
    """

    uts: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    units: dict[str, str | None] = field(default_factory=dict)
    step: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    traces: dict[str, Trace] = field(default_factory=dict)
    coords: dict[str, np.ndarray] = field(default_factory=dict)
    nbatches: int = 0

    def __len__(self) -> int:
        return int(self.uts.shape[0])

    def shape_of(self, name: str) -> tuple[int, ...]:
        """The merged shape of trace ``name``: ``(samples, k1, ...)``."""
        return (len(self), *(len(self.coords[d]) for d in self.traces[name].dims))


class JobStore:
    """Append-only, crash-safe sample store of one job (``jobdir/data/<role>.tsr``).

    ``durable=False`` skips the per-batch fsync (data still reaches the OS on every
    append, so it survives a process kill but not a power loss).
    """

    def __init__(self, jobdir: Path, durable: bool = True) -> None:
        self.jobdir = Path(jobdir)
        self.datadir = self.jobdir / "data"
        self.durable = durable
        self._writers: dict[str, RoleWriter] = {}
        self._lock = threading.Lock()
        self._closed = False

    def path(self, role: str) -> Path:
        """Return the record file of ``role``."""
        return self.datadir / f"{check_role(role)}{SUFFIX}"

    def _writer(self, role: str) -> RoleWriter:
        with self._lock:
            if self._closed:
                raise ValueError("JobStore is closed")
            writer = self._writers.get(role)
            if writer is None:
                path = self.path(role)
                if not self.datadir.is_dir():
                    self.datadir.mkdir(parents=True, exist_ok=True)
                    if self.durable:
                        fsync_dir(self.jobdir)
                writer = self._writers[role] = RoleWriter(path, self.durable)
            return writer

    def append(
        self,
        role: str,
        uts: Sequence[float],
        data: dict[str, Sequence[Any]],
        units: dict[str, str | None],
        step: int = 0,
        dims: dict[str, Sequence[str]] | None = None,
        coords: dict[str, Sequence[float]] | None = None,
    ) -> int:
        """Append one batch of samples of ``role``; return the number of samples appended.

        Every column in ``data`` must be as long as ``uts``; ``units`` maps column and
        coordinate names to pint unit strings (missing -> None). A trace column is named
        in ``dims`` with its extra dims, and is an array of shape ``(len(uts), k1, ...)``
        whose ``ki`` is the length of ``coords[dim_i]``, a 1-D vector shared by the whole
        batch. An empty batch is a no-op. Raises ValueError, and stores nothing, if the
        batch does not fit these rules or the role's earlier batches (see the module
        docstring).
        """
        check_role(role)
        times = np.asarray(uts, dtype=np.float64)
        if times.ndim != 1:
            raise ValueError(f"uts must be one-dimensional, got shape {times.shape}")
        n = times.shape[0]
        if n == 0:
            return 0
        dims = {k: tuple(v) for k, v in (dims or {}).items()}
        vectors = {}
        for dim, values in (coords or {}).items():
            _check_name(dim, "coordinate")
            vec = np.asarray(values)
            if vec.ndim != 1 or vec.dtype.kind not in "iuf":
                raise ValueError(f"coordinate {dim!r} must be a 1-D vector of numbers")
            vectors[dim] = vec.astype(np.float64 if vec.dtype.kind == "f" else np.int64)
        columns = {}
        for name, values in data.items():
            _check_name(name, "column")
            if name in vectors:
                raise ValueError(f"column {name!r} has the name of a coordinate")
            if name in dims:
                col = to_trace(values, name, n, len(dims[name]))
                for axis, dim in enumerate(dims[name]):
                    if dim not in vectors:
                        raise ValueError(f"trace {name!r} has no coordinate {dim!r}")
                    if col.shape[axis + 1] != vectors[dim].shape[0]:
                        raise ValueError(
                            f"trace {name!r} has {col.shape[axis + 1]} points along {dim!r}, "
                            f"its coordinate has {vectors[dim].shape[0]}"
                        )
            else:
                col = to_column(values, name)
                if col.shape[0] != n:
                    raise ValueError(f"column {name!r} has {col.shape[0]} values, uts has {n}")
            columns[name] = col
        unknown = set(dims) - set(columns)
        if unknown:
            raise ValueError(f"dims given for unknown columns: {', '.join(sorted(unknown))}")
        named = {k: units.get(k) for k in [*columns, *vectors]}
        batch = Batch(times, columns, named, int(step), dims=dims, coords=vectors)
        self._writer(role).write(batch)
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

    def read(self, role: str, traces: bool = True) -> RoleData:
        """Return all complete records of ``role`` merged (empty RoleData if unknown).

        With ``traces=False`` the trace columns are described (``traces``, ``coords``)
        but not read into memory: :meth:`trace_slabs` streams them. Memory is then that
        of the scalar columns, whatever the traces' size.
        """
        total = 0
        parts: dict[str, list[tuple[int, np.ndarray]]] = {}
        units: dict[str, str | None] = {}
        utss: list[np.ndarray] = []
        steps: list[tuple[int, int]] = []
        trace_dims: dict[str, tuple[str, ...]] = {}
        trace_dtypes: dict[str, list[np.dtype]] = {}
        trace_rows: dict[str, int] = {}
        vectors: dict[str, dict[bytes, np.ndarray]] = {}
        nbatches = 0
        for _, n, payload in self._frames(role):
            b = decode_payload(n, payload)
            nbatches += 1
            for name, arr in b.columns.items():
                units[name] = b.units.get(name)
                if name in b.dims:
                    trace_dims[name] = b.dims[name]
                    trace_dtypes.setdefault(name, []).append(arr.dtype)
                    trace_rows[name] = trace_rows.get(name, 0) + n
                else:
                    parts.setdefault(name, []).append((total, arr.copy()))
            for dim, vec in b.coords.items():
                units[dim] = b.units.get(dim)
                vectors.setdefault(dim, {}).setdefault(vec.tobytes(), vec.copy())
            utss.append(b.uts.copy())
            steps.append((n, b.step))
            total += n
        if not nbatches:
            return RoleData()
        coords = {dim: union_coordinate(list(v.values())) for dim, v in vectors.items()}
        layouts = {}
        for name, dims in trace_dims.items():
            dtype = np.result_type(*trace_dtypes[name])
            padded = trace_rows[name] < total or any(len(vectors[d]) > 1 for d in dims)
            if padded and dtype.kind in "biu":
                dtype = np.dtype(np.float64)
            layouts[name] = Trace(dims, dtype)
        data = RoleData(
            uts=np.concatenate(utss).astype(np.float64, copy=False),
            columns={name: merge_column(p, total) for name, p in parts.items()},
            units=units,
            step=np.repeat([s for _, s in steps], [n for n, _ in steps]).astype(np.int64),
            traces=layouts,
            coords=coords,
            nbatches=nbatches,
        )
        if traces:
            for name, layout in layouts.items():
                fill = np.nan if layout.dtype.kind == "f" else 0
                data.columns[name] = np.full(data.shape_of(name), fill, dtype=layout.dtype)
            for offset, slabs in self.trace_slabs(role, data):
                for name, slab in slabs.items():
                    data.columns[name][offset : offset + len(slab)] = slab
        return data

    def trace_slabs(self, role: str, data: RoleData) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yield ``(sample offset, {trace: slab})`` per batch, each slab on ``data.coords``.

        ``data`` is what :meth:`read` returned; batches appended since are not yielded.
        A slab has shape ``(batch samples, *merged coordinate lengths)``, NaN where the
        batch has no value at a coordinate value. Holds one batch in memory at a time.
        """
        if not data.traces:
            return
        offset = 0
        for index, (_, n, payload) in enumerate(self._frames(role)):
            if index >= data.nbatches:
                return
            b = decode_payload(n, payload)
            slabs = {}
            for name, arr in b.columns.items():
                layout = data.traces.get(name)
                if layout is None:
                    continue
                where = [placement(b.coords[d], data.coords[d]) for d in layout.dims]
                if all(w is None for w in where):
                    slabs[name] = arr.astype(layout.dtype, copy=False)
                    continue
                slab = np.full((n, *data.shape_of(name)[1:]), np.nan)
                index_arrays = [np.arange(n)] + [
                    np.arange(len(data.coords[d])) if w is None else w
                    for d, w in zip(layout.dims, where, strict=True)
                ]
                slab[np.ix_(*index_arrays)] = arr
                slabs[name] = slab.astype(layout.dtype, copy=False)
            yield offset, slabs
            offset += n

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
