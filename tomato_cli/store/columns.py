"""Column dtypes of the job store: normalising appended values and merging batches.

Stored dtypes are ``bool``, ``int64``, ``float64`` and unicode strings. When batches are
merged, a column takes the common dtype of its batches (bool < int64 < float64; any
string batch makes the whole column strings). Samples of batches that lack a column are
filled with NaN for numeric columns (so an int or bool column with gaps becomes float64)
and with ``""`` for string columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def to_column(values: Sequence[Any] | np.ndarray, name: str = "") -> np.ndarray:
    """Convert appended values to a 1-D array of a stored dtype.

    Numbers mixed with ``None`` become float64 (``None`` -> NaN); other mixed values become
    strings (``None`` -> ""). Raises TypeError for dtypes such as complex or datetime.
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"column {name!r} must be one-dimensional, got shape {arr.shape}")
    kind = arr.dtype.kind
    if kind == "b":
        return arr
    if kind in "iu":
        return arr.astype(np.int64, copy=False)
    if kind == "f":
        return arr.astype(np.float64, copy=False)
    if kind == "U":
        return arr
    if kind == "S":
        return np.char.decode(arr, "utf-8")
    if kind == "O":
        if all(v is None or isinstance(v, int | float | np.number) for v in arr):
            return np.array([np.nan if v is None else v for v in arr], dtype=np.float64)
        return np.array(["" if v is None else str(v) for v in arr], dtype=str)
    raise TypeError(f"column {name!r} has unsupported dtype {arr.dtype}")


def merge_column(parts: Sequence[tuple[int, np.ndarray]], total: int) -> np.ndarray:
    """Place ``(offset, array)`` parts into one array of length ``total``, filling gaps."""
    gaps = sum(len(a) for _, a in parts) < total
    if any(a.dtype.kind == "U" for _, a in parts):
        parts = [(o, a if a.dtype.kind == "U" else a.astype(str)) for o, a in parts]
        width = max((a.dtype.itemsize // 4 for _, a in parts), default=1)
        out = np.full(total, "", dtype=f"<U{max(width, 1)}")
    else:
        dtype = np.result_type(*(a.dtype for _, a in parts)) if parts else np.float64
        if gaps and dtype.kind in "biu":
            dtype = np.dtype(np.float64)
        out = np.full(total, np.nan, dtype=dtype) if gaps else np.empty(total, dtype=dtype)
    for offset, arr in parts:
        out[offset : offset + len(arr)] = arr
    return out


def to_trace(values: Any, name: str, n: int, ndims: int) -> np.ndarray:
    """Convert an appended trace column to an array of shape ``(n, k1, ...)``.

    Numbers and bools only; ints become int64, floats float64. Raises ValueError.
    """
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"trace {name!r} must hold numbers or bools, got {arr.dtype}")
    if arr.ndim != ndims + 1 or arr.shape[0] != n:
        raise ValueError(
            f"trace {name!r} must have shape (samples, {ndims} extra dims) = ({n}, ...), "
            f"got {arr.shape}"
        )
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f":
        return arr.astype(np.float64, copy=False)
    return arr


def union_coordinate(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """The coordinate of a dim over batches: the common vector, or the sorted union.

    This is the outer join that tomato 2.2 (``xarray.concat``) does: if every batch has
    the same coordinate vector it is kept as it is (in its order); otherwise the result
    is every distinct value, sorted, and each trace is placed at its own values.
    """
    first = vectors[0]
    if all(v is first or np.array_equal(v, first) for v in vectors[1:]):
        return first
    return np.unique(np.concatenate(vectors))


def placement(coord: np.ndarray, union: np.ndarray) -> np.ndarray | None:
    """Where a batch's coordinate values lie in the union (None: exactly the union)."""
    if coord is union or np.array_equal(coord, union):
        return None
    return np.searchsorted(union, coord)
