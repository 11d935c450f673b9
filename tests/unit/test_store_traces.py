"""Traces in the job store and the NetCDF file: round trips, length changes, refusals,
torn records, version-1 stores, and the layout tomato 2.2 writes for tomato-example-trig."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from tomato_cli.store import JobStore, write_results
from tomato_cli.store.records import FILE_MAGIC, RECORD_MAGIC

REF = Path(__file__).resolve().parent.parent / "data" / "tomato22"
TRIG_DIMS = {"ordinate": ["abscissa"]}
X5 = np.linspace(0, 2 * np.pi, 5)
X3 = np.linspace(0, 2 * np.pi, 3)


def _trig(store: JobStore, t0: float, n: int, x: np.ndarray, step: int = 0) -> None:
    uts = t0 + np.arange(n) * 0.5
    store.append(
        "trig",
        uts,
        {"ordinate": np.cos(x[None, :] + uts[:, None]), "points": [len(x)] * n},
        {"abscissa": "rad"},
        step=step,
        dims=TRIG_DIMS,
        coords={"abscissa": x},
    )


def _write(tmp_path: Path, store: JobStore) -> xr.Dataset:
    path = write_results(tmp_path / "results.1.nc", store, "{}", {"trig": "{}"}, "0.1")
    return xr.open_datatree(path, engine="netcdf4", decode_times=False)["trig"].to_dataset()


def test_mixed_scalar_and_trace_columns_round_trip(tmp_path: Path) -> None:
    with JobStore(tmp_path / "job", durable=False) as store:
        _trig(store, 100.0, 3, X5)
        store.append("trig", [102.0], {"points": [5], "note": ["no trace here"]}, {})
        _trig(store, 103.0, 2, X5, step=1)
        data = store.read("trig")
        ds = _write(tmp_path, store)
    assert len(data) == 6 and data.traces["ordinate"].dims == ("abscissa",)
    assert data.columns["ordinate"].shape == (6, 5)
    assert np.isnan(data.columns["ordinate"][3]).all()  # the batch without a trace
    np.testing.assert_array_equal(data.step, [0, 0, 0, 0, 1, 1])
    assert data.units["abscissa"] == "rad"
    assert ds["ordinate"].dims == ("uts", "abscissa")
    np.testing.assert_array_equal(ds["ordinate"].values, data.columns["ordinate"])
    np.testing.assert_array_equal(ds["abscissa"].values, X5)
    assert ds["abscissa"].attrs["units"] == "rad" and ds["ordinate"].attrs["units"] == "1"
    assert list(ds["note"].values) == ["", "", "", "no trace here", "", ""]
    assert ds["points"].dtype == np.int64


def test_a_trace_whose_length_changes_is_placed_on_the_union_of_coordinates(
    tmp_path: Path,
) -> None:
    """The documented rule: tomato 2.2's outer join, compared with a file 2.2 wrote."""
    ref = xr.open_datatree(REF / "trig_points5_then3.nc", decode_times=False)["trig"].ds
    with JobStore(tmp_path / "job", durable=False) as store:
        o = ref["ordinate"].values
        uts = ref["uts"].values
        store.append(
            "trig", uts[:2], {"ordinate": o[:2]}, {}, dims=TRIG_DIMS, coords={"abscissa": X5}
        )
        store.append(
            "trig",
            uts[2:],
            {"ordinate": o[2:, [0, 2, 4]]},
            {},
            dims=TRIG_DIMS,
            coords={"abscissa": X3},
        )
        ds = _write(tmp_path, store)
        # the other way round too: the coordinate is the sorted union whatever comes first
        store.append(
            "other", [1.0], {"y": [[1.0, 2.0]]}, {}, dims={"y": ["x"]}, coords={"x": [5.0, 1.0]}
        )
        store.append("other", [2.0], {"y": [[3.0]]}, {}, dims={"y": ["x"]}, coords={"x": [3.0]})
        other = store.read("other")
    np.testing.assert_array_equal(ds["abscissa"].values, ref["abscissa"].values)
    np.testing.assert_array_equal(ds["ordinate"].values, ref["ordinate"].values)  # NaN too
    np.testing.assert_array_equal(other.coords["x"], [1.0, 3.0, 5.0])
    np.testing.assert_array_equal(other.columns["y"], [[2.0, np.nan, 1.0], [np.nan, 3.0, np.nan]])


def test_layout_is_what_tomato_22_writes_for_example_trig(tmp_path: Path) -> None:
    ref_path = REF / "trig_points5.nc"
    ref = xr.open_datatree(ref_path, decode_times=False)["trig"].ds
    with JobStore(tmp_path / "job", durable=False) as store:
        store.append(
            "trig",
            ref["uts"].values,
            {
                "ordinate": ref["ordinate"].values,
                "points": ref["points"].values,
                "function": ref["function"].values.astype(str),
            },
            {},
            dims=TRIG_DIMS,
            coords={"abscissa": ref["abscissa"].values},
        )
        ours_path = tmp_path / "ours.nc"
        write_results(ours_path, store, "{}", {"trig": "{}"}, "0.1")
    with netCDF4.Dataset(ref_path) as theirs, netCDF4.Dataset(ours_path) as ours:
        t, o = theirs["trig"], ours["trig"]
        assert {d: len(v) for d, v in t.dimensions.items()} == {
            d: len(v) for d, v in o.dimensions.items()
        }
        assert set(t.variables) == set(o.variables)
        for name, var in t.variables.items():
            assert o[name].dimensions == var.dimensions, name
            assert o[name].dtype == var.dtype, name
        for name in ("ordinate", "abscissa"):  # uts has our CF time attrs instead, as before
            assert t[name].ncattrs() == ["_FillValue"]  # 2.2: no units where the driver has none
            assert np.isnan(o[name].getncattr("_FillValue")) and o[name].units == "1"
    ours_ds = xr.open_datatree(ours_path, decode_times=False)["trig"].ds
    xr.testing.assert_equal(ours_ds[["ordinate", "abscissa"]], ref[["ordinate", "abscissa"]])


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        (
            {
                "data": {"ordinate": [[1.0, 2.0]]},
                "dims": {"ordinate": ["freq"]},
                "coords": {"freq": [1.0, 2.0]},
            },
            "column 'ordinate' has dims (freq) but was stored with (abscissa)",
        ),
        ({"data": {"ordinate": [1.0]}}, "column 'ordinate' has dims () (a scalar) but was stored"),
        (
            {"data": {"abscissa": [1.0]}},
            "column 'abscissa' has the name of a coordinate stored before",
        ),
        (
            {
                "data": {"points": [[1.0, 2.0]]},
                "dims": {"points": ["points"]},
                "coords": {"points": [0.0, 1.0]},
            },
            "column 'points' has the name of a coordinate",
        ),
        (
            {"data": {"ordinate": [[1.0, 2.0]]}, "dims": TRIG_DIMS, "coords": {"abscissa": [1.0]}},
            "trace 'ordinate' has 2 points along 'abscissa', its coordinate has 1",
        ),
        (
            {"data": {"ordinate": [[1.0, 2.0]]}, "dims": TRIG_DIMS},
            "trace 'ordinate' has no coordinate 'abscissa'",
        ),
        (
            {"data": {"ordinate": [1.0, 2.0]}, "dims": TRIG_DIMS, "coords": {"abscissa": X5}},
            "trace 'ordinate' must have shape (samples, 1 extra dims) = (1, ...), got (2,)",
        ),
        (
            {"data": {"ordinate": [["a"] * 5]}, "dims": TRIG_DIMS, "coords": {"abscissa": X5}},
            "trace 'ordinate' must hold numbers or bools",
        ),
        (
            {"data": {}, "coords": {"abscissa": [[1.0]]}},
            "coordinate 'abscissa' must be a 1-D vector of numbers",
        ),
        ({"data": {}, "dims": TRIG_DIMS}, "dims given for unknown columns: ordinate"),
    ],
)
def test_batches_that_do_not_fit_are_refused_and_nothing_is_lost(
    tmp_path: Path, second: dict, reason: str
) -> None:
    with JobStore(tmp_path / "job", durable=False) as store:
        _trig(store, 100.0, 2, X5)
        before = store.path("trig").read_bytes()
        with pytest.raises(ValueError) as err:
            store.append(
                "trig",
                [200.0],
                second["data"],
                {},
                dims=second.get("dims"),
                coords=second.get("coords"),
            )
        assert reason in str(err.value) and "\n" not in str(err.value)
        assert store.path("trig").read_bytes() == before
        _trig(store, 101.0, 1, X5)  # and the role goes on
        assert store.count("trig") == 3
    with JobStore(tmp_path / "job", durable=False) as reopened:  # rules survive a reopen
        with pytest.raises(ValueError, match="has dims \\(\\) \\(a scalar\\)"):
            reopened.append("trig", [300.0], {"ordinate": [1.0]}, {})


def test_a_torn_trace_record_is_ignored_then_truncated(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "job", durable=False)
    _trig(store, 100.0, 3, X5)
    _trig(store, 102.0, 3, X5)
    store.close()
    path = store.path("trig")
    whole = path.read_bytes()
    path.write_bytes(whole[:-40])  # the last record cut inside its trace buffer
    with JobStore(tmp_path / "job", durable=False) as reader:
        data = reader.read("trig")
        assert len(data) == 3 and data.columns["ordinate"].shape == (3, 5)
        _trig(reader, 104.0, 1, X5)  # the writer truncates the torn tail first
        assert reader.count("trig") == 4
        ds = _write(tmp_path, reader)
    assert ds["ordinate"].shape == (4, 5)


def _v1_record(uts: list[float], cols: dict[str, np.ndarray], units: dict) -> bytes:
    """A record exactly as version 1 of the store wrote it (before traces)."""
    meta = json.dumps(
        {"step": 0, "units": units, "cols": [[k, v.dtype.str] for k, v in cols.items()]}
    ).encode()
    payload = struct.pack("<I", len(meta)) + meta + np.asarray(uts, "<f8").tobytes()
    payload += b"".join(v.tobytes() for v in cols.values())
    sizes = struct.pack("<IQ", len(uts), len(payload))
    crc = zlib.crc32(payload, zlib.crc32(sizes))
    return struct.pack("<4sIIQ", RECORD_MAGIC, crc, len(uts), len(payload)) + payload


def test_a_version_1_store_reads_and_grows(tmp_path: Path) -> None:
    path = tmp_path / "job" / "data" / "counter.tsr"
    path.parent.mkdir(parents=True)
    v1 = b"TOMTSR\x00\x01" + _v1_record(
        [1.0, 2.0], {"val": np.array([1, 2], "<i8"), "x": np.array([0.5, 1.5])}, {"x": "V"}
    )
    path.write_bytes(v1)
    with JobStore(tmp_path / "job", durable=False) as store:
        data = store.read("counter")
        np.testing.assert_array_equal(data.columns["val"], [1, 2])
        assert data.units == {"val": None, "x": "V"} and not data.traces
        store.append("counter", [3.0], {"val": [3], "x": [2.5]}, {"x": "V"})
        content = path.read_bytes()
        assert content[: len(FILE_MAGIC)] == FILE_MAGIC  # the header says version 2 now
        assert content[len(FILE_MAGIC) : len(v1)] == v1[len(FILE_MAGIC) :]  # records kept
        np.testing.assert_array_equal(store.read("counter").columns["x"], [0.5, 1.5, 2.5])


def test_a_newer_store_version_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "job" / "data" / "r.tsr"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"TOMTSR\x00\x09")
    with JobStore(tmp_path / "job") as store, pytest.raises(ValueError) as err:
        store.read("r")
    assert "is of format version 9; this tomato reads versions 1 to 2" in str(err.value)


def test_appending_traces_never_rewrites_and_grows_by_a_constant(tmp_path: Path) -> None:
    store = JobStore(tmp_path, durable=False)
    x = np.linspace(1e6, 1e9, 1000)
    path = store.path("vna")
    sizes, previous = [], b""
    for b in range(15):
        uts = 10.0 * b + np.arange(10)
        store.append(
            "vna", uts, {"s21": np.full((10, 1000), -3.0)}, {}, dims={"s21": ["f"]}, coords={"f": x}
        )
        content = path.read_bytes()
        assert content.startswith(previous), "stored bytes were rewritten"
        previous = content
        sizes.append(len(content))
    assert len(set(np.diff(sizes).tolist())) == 1
    store.close()


def test_a_snapshot_reads_only_the_batches_it_counted(tmp_path: Path) -> None:
    with JobStore(tmp_path / "job", durable=False) as store:
        _trig(store, 100.0, 2, X5)
        data = store.read("trig", traces=False)
        assert "ordinate" not in data.columns and data.traces["ordinate"].dims == ("abscissa",)
        _trig(store, 102.0, 2, X3)  # appended while a snapshot is being written
        slabs = list(store.trace_slabs("trig", data))
    assert [(offset, s["ordinate"].shape) for offset, s in slabs] == [(0, (2, 5))]
