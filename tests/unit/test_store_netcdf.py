"""Tests of the NetCDF writer: layout as in the reference, CF units, atomic replace."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tomato_cli.store import JobStore, write_results
from tomato_cli.store import netcdf as netcdf_mod

JOB = json.dumps({"id": 1, "payload": {"version": "2.2"}})
COMPONENT = json.dumps({"name": "example_counter:(example-addr,1)", "role": "counter"})
UTS0 = 1.768e9


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    s = JobStore(tmp_path / "job", durable=False)
    for b in range(3):
        uts = UTS0 + np.arange(b * 5, (b + 1) * 5) * 0.1
        s.append(
            "counter",
            uts,
            {
                "val": np.arange(5) + b,
                "max": np.full(5, 10),
                "min": np.zeros(5, dtype=int),
                "param": np.full(5, 0.1),
                "choice": ["green"] * 5,
                "flag": [True, False, True, False, True],
            },
            {"param": "second"},
        )
    yield s
    s.close()


def _write(tmp_path: Path, store: JobStore, **extra: str) -> Path:
    components = {"counter": COMPONENT, "idle-role": "{}", **extra}
    return write_results(tmp_path / "out" / "results.1.nc", store, JOB, components, "0.1.0")


def test_layout_attrs_and_values(tmp_path: Path, store: JobStore) -> None:
    path = _write(tmp_path, store)
    assert path == tmp_path / "out" / "results.1.nc"
    tree = xr.open_datatree(path, engine="netcdf4")
    assert tree.attrs == {"tomato_version": "0.1.0", "tomato_Job": JOB}
    assert set(tree.children) == {"counter", "idle-role"}
    grp = tree["counter"]
    assert grp.attrs == {"tomato_Component": COMPONENT, "role": "counter"}
    assert set(grp.data_vars) == {"val", "max", "min", "param", "choice", "flag"}
    data = store.read("counter")
    for name in ("val", "max", "min", "param"):
        np.testing.assert_array_equal(grp[name].values, data.columns[name])
    assert grp["val"].dtype == np.int64
    assert grp["flag"].dtype == bool
    np.testing.assert_array_equal(grp["flag"].values, data.columns["flag"])
    assert list(grp["choice"].values) == ["green"] * 15
    assert grp["param"].attrs["units"] == netcdf_mod.cf_units("second")
    assert grp["val"].attrs["units"] == "1"
    assert "units" not in grp["choice"].attrs
    tree.close()


def test_uts_is_unix_seconds_as_tomato_writes_it(tmp_path: Path, store: JobStore) -> None:
    """uts stays float64 Unix seconds when opened plainly (tomato 2.2's scripts rely on it)."""
    path = _write(tmp_path, store)
    tree = xr.open_datatree(path)
    uts = tree["counter"]["uts"]
    assert uts.dtype == np.float64
    assert uts.attrs == netcdf_mod.UTS_ATTRS
    np.testing.assert_array_equal(uts.values, store.read("counter").uts)
    assert xr.decode_cf(tree["counter"].to_dataset())["uts"].dtype == np.float64
    times = pd.to_datetime(uts.values, unit="s", utc=True)  # the way docs/usage.md gives
    assert abs(times[0].timestamp() - store.read("counter").uts[0]) < 1e-6
    tree.close()


def test_role_without_samples_and_extra_store_role(tmp_path: Path, store: JobStore) -> None:
    store.append("orphan", [UTS0], {"x": [1.5]}, {"x": "V"})
    tree = xr.open_datatree(_write(tmp_path, store))
    idle = tree["idle-role"]
    assert idle.attrs == {"tomato_Component": "{}", "role": "idle-role"}
    assert idle.sizes["uts"] == 0
    assert tree["orphan"].attrs["tomato_Component"] == "null"
    assert tree["orphan"]["x"].attrs["units"] == netcdf_mod.cf_units("V")
    tree.close()


def test_plain_netcdf4_reads_it(tmp_path: Path, store: JobStore) -> None:
    with netCDF4.Dataset(_write(tmp_path, store)) as nc:
        assert set(nc.groups) == {"counter", "idle-role"}
        assert nc["counter"].dimensions["uts"].size == 15


def test_atomic_replace(tmp_path: Path, store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, store)
    before = path.read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(netcdf_mod, "_write_group", boom)
    with pytest.raises(RuntimeError):
        _write(tmp_path, store)
    assert path.read_bytes() == before  # old file untouched
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # tmp removed
    fresh = tmp_path / "elsewhere" / "snapshot.1.nc"
    with pytest.raises(RuntimeError):
        write_results(fresh, store, JOB, {"counter": COMPONENT}, "0.1.0")
    assert list(fresh.parent.iterdir()) == []  # nothing visible under the final name


def test_overwrite_and_no_tmp_left(tmp_path: Path, store: JobStore) -> None:
    path = _write(tmp_path, store)
    store.append("counter", [UTS0 + 10], {"val": [100]}, {})
    _write(tmp_path, store)
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    tree = xr.open_datatree(path)
    assert tree["counter"].sizes["uts"] == 16
    tree.close()


def test_rejects_unsafe_component_role(tmp_path: Path, store: JobStore) -> None:
    with pytest.raises(ValueError):
        write_results(tmp_path / "x.nc", store, JOB, {"../evil": "{}"}, "0.1.0")
