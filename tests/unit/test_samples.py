"""Traces on the wire: packing, checking samples, blocks split where coordinates change."""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

import numpy as np
import pytest

from drivers.base import Attr, ComponentBase, DriverBase, Measured
from drivers.host_commands import DriverHost
from drivers.samples import (
    check_sample,
    collect_task_data,
    decode_block,
    leading_run,
    pack_array,
    unpack_array,
)
from tomato_cli.store import JobStore

TRIG = {
    "abscissa": Measured("rad", dims=("abscissa",)),
    "ordinate": Measured(None, dims=("abscissa",)),
}


class TrigComponent(ComponentBase):
    """Like tomato-example-trig: ``points`` values of a function per sample."""

    attr_defs: ClassVar[dict[str, Attr]] = {"points": Attr(int, minimum=2, rw=True)}
    defaults: ClassVar[dict[str, Any]] = {"points": 5}
    techniques: ClassVar[frozenset[str]] = frozenset({"trig_function", "stamped"})
    measured_defs: ClassVar[dict[str, Measured]] = TRIG

    def measure(self, technique: str, elapsed: float) -> dict[str, Any]:
        x = np.linspace(0, 2 * np.pi, self._values["points"])
        out = {"ordinate": np.cos(x + elapsed), "abscissa": x, "points": self._values["points"]}
        if technique == "stamped":
            self.stamps = getattr(self, "stamps", 0) + 1
            out["uts"] = 1_000_000.0 + 0.5 * self.stamps  # the instrument's own clock
        return out


class TrigDriver(DriverBase):
    name: ClassVar[str] = "trig_test"
    component_class: ClassVar[type[ComponentBase]] = TrigComponent


def test_pack_round_trip_and_size() -> None:
    trace = np.random.default_rng(1).normal(size=(10, 1000))
    packed = pack_array(trace)
    assert packed["dtype"] == "<f8" and packed["shape"] == [10, 1000]
    np.testing.assert_array_equal(unpack_array(json.loads(json.dumps(packed))), trace)
    # 8 bytes a point as base64: about 10.7 kB per 1000-point trace, half the list's JSON
    one = len(json.dumps(pack_array(trace[0])))
    assert one < 11_000 < len(json.dumps(trace[0].tolist()))
    np.testing.assert_array_equal(unpack_array(pack_array([True, False])), [True, False])
    np.testing.assert_array_equal(unpack_array([[1, 2], [3, 4]]), [[1, 2], [3, 4]])


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"dtype": "<f8", "shape": [3]}, "malformed packed array"),
        ({"dtype": "<f8", "shape": [3], "b64": "AAAA"}, "has 3 bytes, not shape \\(3,\\)"),
        ({"dtype": "<U3", "shape": [1], "b64": ""}, "unsupported dtype"),
        ({"dtype": "<f8", "shape": [1], "b64": "not base64!"}, "malformed packed array"),
        (["a", "b"], "expected numbers"),
    ],
)
def test_malformed_packed_arrays_are_one_line_errors(obj: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as err:
        unpack_array(obj, "ordinate")
    assert "'ordinate'" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        ({"ordinate": [1.0, 2.0]}, "trace 'ordinate' comes without its coordinate 'abscissa'"),
        (
            {"ordinate": [1.0, 2.0], "abscissa": [0.0, 1.0, 2.0]},
            "trace 'ordinate' has 2 points along 'abscissa', its coordinate 'abscissa' has 3",
        ),
        ({"ordinate": [[1.0]], "abscissa": [0.0]}, "has 2 dimensions, declared 1 (abscissa)"),
        ({"ordinate": ["a"], "abscissa": [0.0]}, "must hold numbers"),
        ({"val": [1, 2]}, "quantity 'val' is an array but not declared as a trace"),
        ({"val": 1, "uts": "now"}, "sample timestamp 'uts' must be a finite number"),
        ({"val": 1, "uts": float("nan")}, "sample timestamp 'uts' must be a finite number"),
    ],
)
def test_samples_that_do_not_fit_their_declaration(sample: dict, reason: str) -> None:
    with pytest.raises(ValueError) as err:
        check_sample(sample, TRIG)
    assert reason in str(err.value)


def test_check_sample_makes_arrays_and_keeps_scalars() -> None:
    out = check_sample({"ordinate": [1.0, 2.0], "abscissa": (0, 1), "val": 3, "uts": 5}, TRIG)
    assert isinstance(out["ordinate"], np.ndarray) and out["abscissa"].dtype.kind == "i"
    assert out["val"] == 3 and out["uts"] == 5.0


def test_leading_run_ends_where_coordinates_change() -> None:
    rows = [
        {"ordinate": np.zeros(3), "abscissa": np.arange(3.0)},
        {"ordinate": np.ones(3), "abscissa": np.arange(3.0)},
        {"ordinate": np.ones(2), "abscissa": np.arange(2.0)},
        {"ordinate": np.ones(2), "abscissa": np.arange(2.0)},
    ]
    assert leading_run(rows, TRIG) == 2
    assert leading_run(rows[2:], TRIG) == 2
    assert leading_run([], TRIG) == 0
    shifted = [rows[0], {"ordinate": np.ones(3), "abscissa": np.arange(3.0) + 1}]
    assert leading_run(shifted, TRIG) == 1


def test_a_coordinate_must_be_declared_at_registration() -> None:
    class Bad(TrigComponent):
        measured_defs: ClassVar[dict[str, Measured]] = {"ordinate": Measured(dims=("x",))}

    class BadDriver(TrigDriver):
        component_class: ClassVar[type[ComponentBase]] = Bad

    reply = DriverHost(BadDriver()).handle(
        "register", {"components": [{"address": "a", "channel": "1"}]}
    )
    assert not reply.success
    assert reply.msg == (
        "measured quantity 'ordinate' of component 'a,1' has dimension 'x' but no coordinate "
        "'x' declared as Measured(units, dims=('x',))"
    )


def _host() -> tuple[DriverHost, str]:
    host = DriverHost(TrigDriver())
    assert host.handle("register", {"components": [{"address": "a", "channel": "1"}]}).success
    return host, "a,1"


def _run(host: DriverHost, key: str, technique: str, duration: float, **params: Any) -> None:
    reply = host.handle(
        "task_start",
        {
            "key": key,
            "technique_name": technique,
            "max_duration": duration,
            "sampling_interval": 0.02,
            "task_params": params,
        },
    )
    assert reply.success, reply.msg
    _wait(host, key)


def _wait(host: DriverHost, key: str) -> None:
    deadline = time.monotonic() + 30  # tasks of a few seconds at most, on a busy machine
    while host.handle("task_status", {"key": key}).data["running"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_task_data_is_one_block_per_coordinate_and_collect_takes_them_all(tmp_path) -> None:
    host, key = _host()
    reply = host.handle(
        "task_start",
        {
            "key": key,
            "technique_name": "trig_function",
            "max_duration": 2.0,  # still running when the points change, however busy the machine
            "sampling_interval": 0.02,
        },
    )
    assert reply.success, reply.msg
    deadline = time.monotonic() + 30
    while host.handle("task_status", {"key": key}).data["samples"] < 3:  # some on 5 points
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert host.handle("set_attr", {"key": key, "attr": "points", "value": 3}).success
    _wait(host, key)
    total = host.handle("task_status", {"key": key}).data["samples"]
    first = host.handle("task_data", {"key": key}).data
    assert first["more"] is True and 0 < len(first["uts"]) < total
    assert first["dims"] == {"ordinate": ["abscissa"]} and first["units"]["abscissa"] == "rad"
    block = decode_block(json.loads(json.dumps(first)))
    assert block.data["ordinate"].shape == (len(first["uts"]), 5)
    assert block.coords["abscissa"].shape == (5,)
    assert set(block.data["points"]) == {5}
    assert block.latest()["ordinate"].startswith("5 points along abscissa, ")

    with JobStore(tmp_path) as store:
        store.append(
            "trig", block.uts, block.data, block.units, dims=block.dims, coords=block.coords
        )
        n, latest = collect_task_data(
            lambda: host.handle("task_data", {"key": key}).data, store, "trig"
        )
        assert n == total - len(first["uts"]) and latest["points"] == 3
        assert host.handle("task_data", {"key": key}).data["uts"] == []
        data = store.read("trig")
    assert data.columns["ordinate"].shape == (total, 5)  # 3 points placed on the 5-point grid
    np.testing.assert_array_equal(data.coords["abscissa"], np.linspace(0, 2 * np.pi, 5))
    assert np.isnan(data.columns["ordinate"][-1, [1, 3]]).all()


def test_a_timestamp_the_driver_sets_is_kept() -> None:
    host, key = _host()
    _run(host, key, "stamped", 0.1)
    block = decode_block(host.handle("task_data", {"key": key}).data)
    assert block.uts == [1_000_000.5, 1_000_001.0, 1_000_001.5, 1_000_002.0, 1_000_002.5]
