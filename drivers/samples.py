"""Samples on the wire: what a driver host's ``task_data`` reply holds, scalars and traces.

One reply is one *block* of samples, oldest first::

    {"uts":    [float, ...],                          # n timestamps, Unix seconds
     "data":   {name: [value, ...],                   # a scalar quantity: n JSON values
                name: PACKED},                        # a trace: shape (n, k1, ...)
     "units":  {name: str | None, dim: str | None},   # pint strings, coordinates included
     "dims":   {name: [dim, ...]},                    # extra dims of each trace (scalars: absent)
     "coords": {dim: PACKED},                         # one vector per dim, shape (k,)
     "more":   bool}                                  # more samples wait: call again

    PACKED := {"dtype": "<f8" | "<i8" | "|b1", "shape": [int, ...], "b64": str}

A packed array is the base64 of its raw little-endian C-order bytes (a 1000-point float64
trace is 10.7 kB of JSON instead of about 20 kB as a list, and costs no per-number
formatting). Every sample of one block has the same coordinates and so the same trace
shapes; when a sample's coordinates differ from those before it, the host ends the block
there and says ``"more": true``, and the collector calls ``task_data`` again. ``dims``,
``coords`` and ``more`` may be absent (a block of scalars only). Every dim named in
``dims`` has its vector in ``coords`` (a dimension without coordinate values gets
``0 .. k-1`` from whoever builds the block), and a coordinate is not named like a
quantity in ``data``. A decoder also accepts plain nested lists where a packed array may
stand. The store refuses, with a one-line ``ValueError``, a block that breaks these
rules or changes a quantity's dims within a job (see :mod:`tomato_cli.store.jobstore`).

For tomato 2.x drivers, whose ``task_data`` is an ``xarray.Dataset`` per poll: a data
variable on ``("uts",)`` is a scalar, one on ``("uts", d1, ...)`` a trace with
``dims = [d1, ...]``, every other coordinate goes to ``coords``, the ``units`` attrs to
``units``, and ``uts`` (the driver's own timestamps) to ``uts``.
"""

from __future__ import annotations

import base64
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from drivers.declarations import Measured

if TYPE_CHECKING:  # not at run time: a driver host (also a tomato 2.x one) has no netCDF4
    from tomato_cli.store import JobStore

_WIRE_DTYPES = {"f": "<f8", "i": "<i8", "u": "<i8", "b": "|b1"}


def pack_array(values: Any) -> dict[str, Any]:
    """A numeric or bool array as a JSON-able packed array (see the module docstring)."""
    arr = np.asarray(values)
    code = _WIRE_DTYPES.get(arr.dtype.kind)
    if code is None:
        raise TypeError(f"cannot pack an array of dtype {arr.dtype} (numbers or bools only)")
    raw = np.ascontiguousarray(arr, dtype=np.dtype(code))
    return {
        "dtype": code,
        "shape": list(raw.shape),
        "b64": base64.b64encode(raw.tobytes()).decode("ascii"),
    }


def unpack_array(obj: Any, name: str = "") -> np.ndarray:
    """The array of a packed array (or of a nested list); ``ValueError`` if malformed."""
    if not isinstance(obj, Mapping):
        arr = np.asarray(obj)
        if arr.dtype.kind not in "fiub":
            raise ValueError(f"{name!r}: expected numbers, got {arr.dtype} values")
        return arr
    try:
        dtype = np.dtype(str(obj["dtype"]))
        shape = tuple(int(k) for k in obj["shape"])
        raw = base64.b64decode(obj["b64"], validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{name!r}: malformed packed array ({exc})") from None
    if dtype.kind not in "fiub":
        raise ValueError(f"{name!r}: packed array of unsupported dtype {dtype}")
    if math.prod(shape) * dtype.itemsize != len(raw):
        raise ValueError(f"{name!r}: packed array has {len(raw)} bytes, not shape {shape}")
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape)
    return arr.astype(dtype.newbyteorder("=")) if sys.byteorder == "big" else arr


def check_sample(values: dict[str, Any], measured: Mapping[str, Measured]) -> dict[str, Any]:
    """One sample from ``measure`` with its traces and coordinates as arrays; checked.

    Raises ``ValueError`` naming the quantity if a value does not fit its declaration: a
    trace of the wrong number of dimensions, without the coordinate of one of them, or
    with a length other than that coordinate's; an array for a quantity not declared as
    a trace; a ``uts`` that is not a finite number.
    """
    out = dict(values)
    if "uts" in out:
        uts = out["uts"]
        if isinstance(uts, bool) or not isinstance(uts, int | float) or not math.isfinite(uts):
            raise ValueError(f"sample timestamp 'uts' must be a finite number, got {uts!r}")
        out["uts"] = float(uts)
    for name, value in values.items():
        decl = measured.get(name)
        if decl is None or not decl.dims:
            if isinstance(value, np.ndarray | list | tuple):
                raise ValueError(
                    f"quantity {name!r} is an array but not declared as a trace "
                    f"(Measured(units, dims=(...)))"
                )
            continue
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiub":
            raise ValueError(f"trace {name!r} must hold numbers, got {arr.dtype}")
        if arr.ndim != len(decl.dims):
            raise ValueError(
                f"trace {name!r} has {arr.ndim} dimensions, declared {len(decl.dims)} "
                f"({', '.join(decl.dims)})"
            )
        out[name] = arr
    for name, decl in measured.items():
        if name not in out or not decl.dims or decl.is_coordinate_of(name):
            continue
        for axis, dim in enumerate(decl.dims):
            coord = out.get(dim)
            if coord is None:
                raise ValueError(f"trace {name!r} comes without its coordinate {dim!r}")
            if coord.shape[0] != out[name].shape[axis]:
                raise ValueError(
                    f"trace {name!r} has {out[name].shape[axis]} points along {dim!r}, "
                    f"its coordinate {dim!r} has {coord.shape[0]}"
                )
    return out


def _coordinates(measured: Mapping[str, Measured]) -> list[str]:
    return [name for name, decl in measured.items() if decl.is_coordinate_of(name)]


def leading_run(rows: Sequence[dict[str, Any]], measured: Mapping[str, Measured]) -> int:
    """How many rows from the start share the first row's coordinates and trace shapes."""
    if not rows:
        return 0
    coords = _coordinates(measured)
    traces = [n for n, d in measured.items() if d.dims and n not in coords]
    first = rows[0]

    def same(row: dict[str, Any]) -> bool:
        for name in coords:
            a, b = first.get(name), row.get(name)
            if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
                return False
        return all(
            np.shape(first[n]) == np.shape(row[n]) for n in traces if n in first and n in row
        )

    for i in range(1, len(rows)):
        if not same(rows[i]):
            return i
    return len(rows)


def encode_block(
    uts: Sequence[float],
    rows: Sequence[dict[str, Any]],
    component: Any,
    more: bool = False,
) -> dict[str, Any]:
    """The ``task_data`` reply for rows checked by :func:`check_sample` (one leading run).

    ``component`` gives ``measured()`` and ``units_of(name)``. A trace missing from some
    rows is NaN there.
    """
    measured = component.measured()
    coords = set(_coordinates(measured))
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    data: dict[str, Any] = {}
    dims: dict[str, list[str]] = {}
    coord_out: dict[str, Any] = {}
    units: dict[str, str | None] = {}
    for name in names:
        decl = measured.get(name)
        if name in coords:
            coord_out[name] = pack_array(next(r[name] for r in rows if name in r))
        elif decl is not None and decl.dims:
            present = [r[name] for r in rows if name in r]
            if len(present) == len(rows):
                stacked = np.stack(present)
            else:
                stacked = np.full((len(rows), *np.shape(present[0])), np.nan)
                for i, row in enumerate(rows):
                    if name in row:
                        stacked[i] = row[name]
            data[name] = pack_array(stacked)
            dims[name] = list(decl.dims)
        else:
            data[name] = [_plain(row.get(name)) for row in rows]
        units[name] = component.units_of(name)
    reply: dict[str, Any] = {"uts": list(uts), "data": data, "units": units}
    if dims:
        reply["dims"] = dims
        reply["coords"] = coord_out
    if more:
        reply["more"] = True
    return reply


def _plain(value: Any) -> Any:
    """numpy scalars as plain JSON values."""
    return value.item() if isinstance(value, np.generic) else value


@dataclass
class Block:
    """A decoded ``task_data`` reply: ready for ``JobStore.append``."""

    uts: list[float]
    data: dict[str, Any] = field(default_factory=dict)
    units: dict[str, str | None] = field(default_factory=dict)
    dims: dict[str, tuple[str, ...]] = field(default_factory=dict)
    coords: dict[str, np.ndarray] = field(default_factory=dict)
    more: bool = False

    def __len__(self) -> int:
        return len(self.uts)

    def latest(self) -> dict[str, Any]:
        """The last sample's values; a trace as a one-line summary, not its points."""
        out: dict[str, Any] = {}
        for name, values in self.data.items():
            if name in self.dims:
                out[name] = summarise(values[-1], self.dims[name], self.units.get(name))
            else:
                out[name] = values[-1]
        return out


def decode_block(reply: Mapping[str, Any]) -> Block:
    """A ``task_data`` reply as a :class:`Block`; ``ValueError`` if it is malformed."""
    dims = {str(k): tuple(str(d) for d in v) for k, v in (reply.get("dims") or {}).items()}
    data = {
        name: unpack_array(values, name) if name in dims else values
        for name, values in (reply.get("data") or {}).items()
    }
    coords = {
        str(dim): unpack_array(values, dim).reshape(-1)
        for dim, values in (reply.get("coords") or {}).items()
    }
    return Block(
        uts=list(reply.get("uts") or []),
        data=data,
        units=dict(reply.get("units") or {}),
        dims=dims,
        coords=coords,
        more=bool(reply.get("more")),
    )


def summarise(trace: np.ndarray, dims: Sequence[str], units: str | None = None) -> str:
    """A trace in a few words: ``"1001 points along frequency, -40.1 .. -3.2 dB"``."""
    arr = np.asarray(trace)
    shape = " x ".join(str(k) for k in arr.shape)
    size = f"{shape} points along {', '.join(dims)}"
    finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr.reshape(-1)
    if finite.size == 0:
        return size
    suffix = f" {units}" if units else ""
    return f"{size}, {finite.min():.4g} .. {finite.max():.4g}{suffix}"


def collect_task_data(
    fetch: Callable[[], Mapping[str, Any]],
    store: JobStore,
    role: str,
    step: int = 0,
    on_block: Callable[[Block], None] | None = None,
    constants: Mapping[str, int] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Append every block that ``fetch`` (a ``task_data`` call) gives to ``store``.

    Calls ``fetch`` again while a reply says ``more``, and ``on_block`` with each block
    once it is stored. ``constants`` are columns with one value for the whole block (the
    repeat a step runs in). Returns the number of samples stored and the latest values
    (traces summarised, see :meth:`Block.latest`).
    """
    total, latest = 0, {}
    while True:
        block = decode_block(fetch())
        if len(block) and constants:
            for name, value in constants.items():
                block.data[name] = [value] * len(block)
        if len(block):
            store.append(
                role,
                block.uts,
                block.data,
                block.units,
                step=step,
                dims=block.dims,
                coords=block.coords,
            )
            total += len(block)
            latest = block.latest()
            if on_block is not None:
                on_block(block)
        if not block.more:
            return total, latest
