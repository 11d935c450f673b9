"""NetCDF output of a job: the final ``results.<id>.nc`` and every snapshot.

Snapshots use :func:`write_results` as well; there is no separate snapshot writer.
The file is a NetCDF4 data tree readable with plain ``xarray.open_datatree(path)``:
root attrs ``tomato_version`` and ``tomato_Job``; one group per role with attrs
``tomato_Component`` and ``role``; a coordinate ``uts`` (float64 Unix seconds, as tomato
2.2 writes it: xarray leaves it as numbers); one variable per column,
numeric ones with a CF ``units`` attribute, bools stored as int8 with ``dtype: "bool"``
(decoded back to bool by xarray), strings as variable-length strings without units.

Traces (see :mod:`.jobstore`) are variables ``name(uts, dim, ...)`` beside a coordinate
variable ``dim(dim)`` with its own ``units``, float64 with NaN as fill value where a
trace has no value: for tomato-example-trig that is ``ordinate(uts, abscissa)`` and
``abscissa(abscissa)``, the names, dims and dtypes tomato 2.2 writes (which adds no
``units`` where the driver gives none; we write ``"1"`` there as for every number).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path

import netCDF4
import numpy as np

from tomato_cli.units import cf_units

from .jobstore import JobStore, RoleData, check_role

# float64 Unix seconds, as tomato 2.2 writes it. Plain "s" units (no "since <epoch>")
# keep xarray from decoding it to datetime64, so scripts written for 2.2 read numbers;
# ``xr.decode_cf`` does not touch it either. Datetimes: pd.to_datetime(uts, unit="s").
UTS_ATTRS = {
    "units": "s",
    "long_name": "Unix timestamp",
    "comment": "seconds since 1970-01-01T00:00:00Z (UTC)",
}


def _numeric_variable(
    group: netCDF4.Group, name: str, dtype: np.dtype, dims: tuple[str, ...], units: str | None
) -> tuple[netCDF4.Variable, np.dtype]:
    """A numeric variable with CF units; returns it and the dtype its values are written in."""
    if dtype.kind == "b":
        var = group.createVariable(name, "i1", dims, fill_value=False)
        var.setncatts({"units": cf_units(units), "dtype": "bool"})
        return var, np.dtype(np.int8)
    if dtype.kind == "f":
        var = group.createVariable(name, "f8", dims, fill_value=np.nan)
        var.setncatts({"units": cf_units(units)})
        return var, np.dtype(np.float64)
    var = group.createVariable(name, "i8", dims, fill_value=False)
    var.setncatts({"units": cf_units(units)})
    return var, np.dtype(np.int64)


def _write_group(
    group: netCDF4.Group, role: str, component: str, store: JobStore, data: RoleData
) -> None:
    """One role's group: ``uts``, coordinates, scalar columns, then traces batch by batch."""
    group.setncatts({"tomato_Component": component, "role": role})
    n = len(data)
    group.createDimension("uts", n if n else None)
    uts = group.createVariable("uts", "f8", ("uts",), fill_value=False)
    uts.setncatts(UTS_ATTRS)
    if n:
        uts[:] = data.uts
    for dim, vec in data.coords.items():
        group.createDimension(dim, len(vec))
        var, dtype = _numeric_variable(group, dim, vec.dtype, (dim,), data.units.get(dim))
        var[:] = vec.astype(dtype, copy=False)
    for name, arr in data.columns.items():
        if name in data.traces:
            continue
        if arr.dtype.kind == "U":
            var = group.createVariable(name, str, ("uts",))
            if n:
                var[:] = arr.astype(object)
            continue
        var, dtype = _numeric_variable(group, name, arr.dtype, ("uts",), data.units.get(name))
        if n:
            var[:] = arr.astype(dtype, copy=False)
    traces = {
        name: _numeric_variable(
            group, name, layout.dtype, ("uts", *layout.dims), data.units.get(name)
        )
        for name, layout in data.traces.items()
    }
    for offset, slabs in store.trace_slabs(role, data):
        for name, slab in slabs.items():
            var, dtype = traces[name]
            var[offset : offset + len(slab)] = slab.astype(dtype, copy=False)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# The HDF5 library under netCDF4 is not thread-safe: two threads writing files at once
# crash the process (seen as SIGSEGV with several jobs in one runner). One writer at a time.
_HDF5_LOCK = threading.Lock()


def read_job_attr(path: Path) -> str | None:
    """The root attr ``tomato_Job`` of a NetCDF file, or None if it has none or is no
    NetCDF file at all."""
    try:
        with _HDF5_LOCK, netCDF4.Dataset(path, "r") as nc:
            value = nc.getncattr("tomato_Job") if "tomato_Job" in nc.ncattrs() else None
    except (OSError, RuntimeError, ValueError):
        return None
    return value if isinstance(value, str) else None


def write_results(
    path: Path,
    store: JobStore,
    job_json: str,
    components: Mapping[str, str],
    tomato_version: str,
    attrs: Mapping[str, str] | None = None,
) -> Path:
    """Write the store's data to ``path`` atomically (temporary name, then rename).

    ``attrs``: more attributes of the file (such as ``tomato_conditions``).

    ``components`` maps each role to its ``tomato_Component`` JSON; every such role gets
    a group, even without samples. Roles in the store but not in ``components`` are
    written too, with ``tomato_Component`` set to ``"null"``. Holds the scalar columns of
    one role in memory at a time, and of its traces one batch. Returns ``path``.
    """
    path = Path(path)
    roles = [check_role(r) for r in components]
    roles += [r for r in store.roles() if r not in components]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with _HDF5_LOCK, netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
            nc.setncatts(
                {"tomato_version": tomato_version, "tomato_Job": job_json, **(attrs or {})}
            )
            for role in roles:
                group = nc.createGroup(role)
                data = store.read(role, traces=False)
                _write_group(group, role, components.get(role, "null"), store, data)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)
    return path
