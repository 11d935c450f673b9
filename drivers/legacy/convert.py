"""Values and data of tomato 2.x drivers in the shapes our driver-host protocol carries.

2.x drivers describe attributes with their own ``Attr`` model (``pint.Quantity`` types and
bounds, ``set`` options) and hand over data as ``xarray.Dataset`` objects with a ``uts``
dimension. Runs inside the legacy host only; pint and xarray come from the legacy environment.
"""

from __future__ import annotations

from typing import Any

from drivers.declarations import Attr

_PLAIN_TYPES = (int, float, str, bool)


def is_quantity_type(kind: Any) -> bool:
    """True for ``pint.Quantity`` (or a registry's Quantity class)."""
    return isinstance(kind, type) and kind.__name__ == "Quantity" and "pint" in kind.__module__


def is_quantity(value: Any) -> bool:
    return is_quantity_type(type(value)) or (
        hasattr(value, "magnitude") and hasattr(value, "units") and hasattr(value, "to")
    )


def magnitude(value: Any, units: str | None) -> Any:
    """A quantity's magnitude in ``units`` (its own units if None or not convertible)."""
    if units:
        try:
            return plain(value.to(units).magnitude)
        except Exception:
            pass
    return plain(value.magnitude)


def plain(value: Any, units: str | None = None) -> Any:
    """``value`` as JSON-able Python data (quantities as magnitudes in ``units``)."""
    if value is None or isinstance(value, _PLAIN_TYPES):
        return value
    if is_quantity(value):
        return magnitude(value, units)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted((plain(v) for v in value), key=repr)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _bound(value: Any, units: str | None) -> float | None:
    if value is None:
        return None
    if is_quantity(value):
        return float(magnitude(value, units))
    return float(value)


def to_attr(legacy: Any) -> Attr:
    """Our :class:`Attr` for a 2.x ``Attr`` (quantities become floats in the attr's units)."""
    kind = legacy.type
    if is_quantity_type(kind):
        kind = float
    options = legacy.options
    return Attr(
        kind,
        units=legacy.units,
        minimum=_bound(legacy.minimum, legacy.units),
        maximum=_bound(legacy.maximum, legacy.units),
        options=tuple(sorted(options, key=repr)) if options is not None else None,
        rw=bool(legacy.rw),
        status=bool(legacy.status),
    )


def to_driver(value: Any, legacy: Any) -> Any:
    """A value checked against our :class:`Attr` as the 2.x driver takes it."""
    if is_quantity_type(legacy.type):
        return legacy.type(value, legacy.units) if legacy.units else legacy.type(value)
    return value


def latest(ds: Any) -> dict[str, Any]:
    """The last sample of a dataset, by variable name."""
    if ds is None or "uts" not in ds.dims or ds.sizes["uts"] == 0:
        return {}
    row = ds.isel(uts=-1)
    return {str(name): plain(var.values) for name, var in row.data_vars.items()}


def _coords_of(ds: Any) -> dict[str, Any]:
    """The coordinate vectors of a dataset's trace dimensions (all but ``uts``)."""
    import numpy as np

    out = {}
    for var in ds.data_vars.values():
        for dim in var.dims:
            if dim != "uts" and dim not in out:
                values = ds[dim].values if dim in ds.coords else np.arange(ds.sizes[dim])
                out[str(dim)] = np.asarray(values)
    return out


def _same_coords(a: dict[str, Any], b: dict[str, Any]) -> bool:
    import numpy as np

    return a.keys() == b.keys() and all(np.array_equal(a[d], b[d]) for d in a)


def datasets_to_block(datasets: list[Any]) -> tuple[dict[str, Any], list[Any]]:
    """Samples of 2.x datasets as one ``task_data`` block (see :mod:`drivers.samples`), and
    the datasets left for the next block.

    Datasets are taken while their traces' coordinates stay the same; the rest are left
    (and ``more`` is set). A quantity missing from some datasets is None (scalars) or NaN
    (traces) there.
    """
    import numpy as np

    from drivers.samples import pack_array

    usable = [ds for ds in datasets if ds is not None and "uts" in ds.dims and ds.sizes["uts"]]
    if not usable:
        return {"uts": [], "data": {}, "units": {}}, []
    coords = _coords_of(usable[0])
    group = _leading(usable, coords)
    rest = usable[len(group) :]
    uts: list[float] = []
    scalars: dict[str, list[Any]] = {}
    traces: dict[str, list[Any]] = {}
    units: dict[str, str | None] = {}
    dims: dict[str, list[str]] = {}
    for ds in group:
        n = int(ds.sizes["uts"])
        offset = len(uts)
        uts.extend(float(t) for t in ds["uts"].values)
        for name, var in ds.data_vars.items():
            name = str(name)
            if "uts" not in var.dims:
                continue
            var = var.transpose("uts", ...)
            units.setdefault(name, var.attrs.get("units"))
            extra = [str(d) for d in var.dims[1:]]
            if extra:
                dims[name] = extra
                shape = tuple(len(coords[d]) for d in extra)
                column = traces.setdefault(name, [np.full((offset, *shape), np.nan)])
                column.append(np.asarray(var.values, dtype=float).reshape(n, *shape))
            else:
                scalars.setdefault(name, [None] * offset).extend(plain(var.values))
        for column in scalars.values():
            column.extend([None] * (len(uts) - len(column)))
        for parts in traces.values():
            have = sum(len(p) for p in parts)
            if have < len(uts):
                shape = parts[0].shape[1:]
                parts.append(np.full((len(uts) - have, *shape), np.nan))
    for dim in coords:
        source = next((ds[dim] for ds in group if dim in ds.coords), None)
        units[dim] = source.attrs.get("units") if source is not None else None
    data: dict[str, Any] = dict(scalars)
    data.update({name: pack_array(np.concatenate(parts)) for name, parts in traces.items()})
    block: dict[str, Any] = {"uts": uts, "data": data, "units": units}
    if dims:
        block["dims"] = dims
        block["coords"] = {dim: pack_array(values) for dim, values in coords.items()}
    if rest:
        block["more"] = True
    return block, rest


def _leading(datasets: list[Any], coords: dict[str, Any]) -> list[Any]:
    out = []
    for ds in datasets:
        if not _same_coords(_coords_of(ds), coords):
            break
        out.append(ds)
    return out
