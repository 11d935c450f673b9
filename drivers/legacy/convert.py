"""Values and data of tomato 2.x drivers in the shapes our driver-host protocol carries.

2.x drivers describe attributes with their own ``Attr`` model (``pint.Quantity`` types and
bounds, ``set`` options) and hand over data as ``xarray.Dataset`` objects with a ``uts``
dimension. Runs inside the legacy host only; pint and xarray come from the legacy environment.
"""

from __future__ import annotations

from typing import Any

from drivers.base import Attr

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


def datasets_to_batch(datasets: list[Any]) -> dict[str, Any]:
    """Samples of 2.x datasets as a ``task_data`` reply: ``uts``, ``data``, ``units``.

    A variable with dimensions beyond ``uts`` (a trace) carries, per sample, a nested list;
    ``dims`` names its extra dimensions and ``coords`` gives each one's values and units.
    Variables missing from some datasets are filled with None for those samples.
    """
    uts: list[float] = []
    data: dict[str, list[Any]] = {}
    units: dict[str, str | None] = {}
    dims: dict[str, list[str]] = {}
    coords: dict[str, dict[str, Any]] = {}
    for ds in datasets:
        if ds is None or "uts" not in ds.dims:
            continue
        n = int(ds.sizes["uts"])
        if n == 0:
            continue
        offset = len(uts)
        uts.extend(float(t) for t in ds["uts"].values)
        for name, var in ds.data_vars.items():
            name = str(name)
            if "uts" not in var.dims:
                continue
            var = var.transpose("uts", ...)
            column = data.setdefault(name, [None] * offset)
            column.extend(plain(var.values))
            units.setdefault(name, var.attrs.get("units"))
            extra = [str(d) for d in var.dims[1:]]
            if extra:
                dims[name] = extra
                for dim in extra:
                    coord = ds[dim] if dim in ds.coords else None
                    coords[dim] = {
                        "values": plain(coord.values) if coord is not None else None,
                        "units": coord.attrs.get("units") if coord is not None else None,
                    }
        for column in data.values():
            column.extend([None] * (len(uts) - len(column)))
    batch: dict[str, Any] = {"uts": uts, "data": data, "units": units}
    if dims:
        batch["dims"] = dims
        batch["coords"] = coords
    return batch
