"""Tests of the append-only job store: round trips, dtypes, crash tails, concurrency."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tomato_cli.store import JobStore, RoleData


def _fill(store: JobStore, role: str = "counter", nbatches: int = 3, size: int = 4) -> None:
    for b in range(nbatches):
        uts = np.arange(b * size, (b + 1) * size, dtype=float)
        store.append(role, uts, {"val": np.arange(b * size, (b + 1) * size)}, {"val": "s"}, b)


def test_round_trip_several_batches_and_dtypes(tmp_path: Path) -> None:
    with JobStore(tmp_path) as store:
        assert (
            store.append(
                "a-1",
                [1.0, 2.0],
                {"i": [1, 2], "f": [0.5, 1.5], "b": [True, False], "s": ["x", "yy"]},
                {"f": "V", "i": None},
            )
            == 2
        )
        assert (
            store.append(
                "a-1", [3.0], {"i": [3], "f": [2.5], "b": [True], "s": ["zzz"]}, {"f": "V"}, step=1
            )
            == 1
        )
        data = store.read("a-1")
    assert isinstance(data, RoleData)
    assert data.uts.dtype == np.float64
    np.testing.assert_array_equal(data.uts, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(data.step, [0, 0, 1])
    assert data.columns["i"].dtype == np.int64
    np.testing.assert_array_equal(data.columns["i"], [1, 2, 3])
    np.testing.assert_array_equal(data.columns["f"], [0.5, 1.5, 2.5])
    assert data.columns["b"].dtype == bool
    np.testing.assert_array_equal(data.columns["b"], [True, False, True])
    assert list(data.columns["s"]) == ["x", "yy", "zzz"]
    assert data.units == {"i": None, "f": "V", "b": None, "s": None}
    assert len(data) == 3


def test_missing_columns_and_dtype_changes(tmp_path: Path) -> None:
    store = JobStore(tmp_path, durable=False)
    store.append("r", [0.0, 1.0], {"n": [1, 2], "k": [1, 2], "s": ["a", "b"]}, {})
    store.append("r", [2.0], {"n": [2.5], "k": [3], "late": [7]}, {"late": "mA"})
    data = store.read("r")
    store.close()
    assert data.columns["n"].dtype == np.float64  # int then float -> float
    np.testing.assert_array_equal(data.columns["n"], [1.0, 2.0, 2.5])
    assert data.columns["k"].dtype == np.int64  # no gaps, stays int
    np.testing.assert_array_equal(data.columns["late"], [np.nan, np.nan, 7.0])
    assert list(data.columns["s"]) == ["a", "b", ""]
    assert data.units["late"] == "mA"


def test_none_and_mixed_values(tmp_path: Path) -> None:
    with JobStore(tmp_path, durable=False) as store:
        store.append("r", [0.0, 1.0], {"x": [1.0, None], "y": ["a", None]}, {})
        data = store.read("r")
    np.testing.assert_array_equal(data.columns["x"], [1.0, np.nan])
    assert list(data.columns["y"]) == ["a", ""]


def test_empty_batch_roles_count_unknown(tmp_path: Path) -> None:
    with JobStore(tmp_path) as store:
        assert store.append("r", [], {"x": []}, {}) == 0
        assert store.roles() == []
        assert store.count("r") == 0
        assert len(store.read("r")) == 0
        _fill(store, "b-role")
        _fill(store, "a_role", nbatches=1)
        assert store.roles() == ["a_role", "b-role"]
        assert store.count("b-role") == 12
        assert store.path("b-role") == tmp_path / "data" / "b-role.tsr"


@pytest.mark.parametrize("role", ["", "../x", "a/b", "..", ".hidden", "a..b", "a b"])
def test_rejects_unsafe_roles(tmp_path: Path, role: str) -> None:
    with JobStore(tmp_path) as store, pytest.raises(ValueError):
        store.append(role, [1.0], {"x": [1]}, {})


def test_rejects_bad_batches(tmp_path: Path) -> None:
    with JobStore(tmp_path) as store:
        with pytest.raises(ValueError):
            store.append("r", [1.0, 2.0], {"x": [1]}, {})
        with pytest.raises(ValueError):
            store.append("r", [1.0], {"uts": [1]}, {})
        with pytest.raises(TypeError):
            store.append("r", [1.0], {"c": [1j]}, {})
    with pytest.raises(ValueError):
        store.append("r", [1.0], {"x": [1]}, {})


def test_second_writer_is_refused(tmp_path: Path) -> None:
    with JobStore(tmp_path) as first, JobStore(tmp_path) as second:
        first.append("r", [1.0], {"x": [1]}, {})
        with pytest.raises(BlockingIOError):
            second.append("r", [2.0], {"x": [2]}, {})


def test_truncated_tail_is_ignored(tmp_path: Path) -> None:
    with JobStore(tmp_path) as store:
        _fill(store)
        path = store.path("counter")
    size = path.stat().st_size
    for cut in (1, 10, 25):
        with open(path, "r+b") as f:
            f.truncate(size - cut)
        data = JobStore(tmp_path).read("counter")
        np.testing.assert_array_equal(data.columns["val"], np.arange(8))
        assert JobStore(tmp_path).count("counter") == 8


def test_garbage_tail_is_ignored_and_truncated_by_writer(tmp_path: Path) -> None:
    with JobStore(tmp_path) as store:
        _fill(store)
        path = store.path("counter")
    good_size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b"TSRB" + os.urandom(200))
    assert JobStore(tmp_path).count("counter") == 12
    with JobStore(tmp_path) as store:
        store.append("counter", [99.0], {"val": [99]}, {"val": "s"})
        data = store.read("counter")
    assert path.stat().st_size > good_size
    np.testing.assert_array_equal(data.columns["val"], [*range(12), 99])


def test_corrupt_record_payload_is_detected(tmp_path: Path) -> None:
    with JobStore(tmp_path) as store:
        _fill(store)
        path = store.path("counter")
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # flip a byte inside the last record's payload
    path.write_bytes(bytes(raw))
    assert JobStore(tmp_path).count("counter") == 8


def test_not_a_store_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "r.tsr").write_bytes(b"something else entirely")
    with pytest.raises(ValueError):
        JobStore(tmp_path).read("r")


_WRITER = """
import sys, time
import numpy as np
from tomato_cli.store import JobStore
jobdir, nbatches, size, durable = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with JobStore(jobdir, durable=durable == "1") as store:
    print("ready", flush=True)
    for b in range(nbatches):
        v = np.arange(b * size, (b + 1) * size)
        store.append("r-1", v.astype(float), {"val": v, "s": ["x"] * size}, {"val": None})
        time.sleep(0.001)
"""


def _start_writer(jobdir: Path, nbatches: int, size: int, durable: bool) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(_WRITER),
            str(jobdir),
            str(nbatches),
            str(size),
            "1" if durable else "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _assert_consistent(data: RoleData, size: int) -> None:
    n = len(data)
    assert n % size == 0
    np.testing.assert_array_equal(data.columns.get("val", np.empty(0)), np.arange(n))
    np.testing.assert_array_equal(data.uts, np.arange(n, dtype=float))


def test_reader_in_other_process_while_writing(tmp_path: Path) -> None:
    proc = _start_writer(tmp_path, nbatches=300, size=50, durable=False)
    reader = JobStore(tmp_path)
    seen = []
    while proc.poll() is None:
        data = reader.read("r-1")
        _assert_consistent(data, 50)
        seen.append(len(data))
    assert proc.wait() == 0
    assert seen == sorted(seen)
    assert len(set(seen)) > 2  # saw the file grow
    assert reader.count("r-1") == 300 * 50


def test_kill_9_writer_then_resume(tmp_path: Path) -> None:
    proc = _start_writer(tmp_path, nbatches=100_000, size=20, durable=True)
    reader = JobStore(tmp_path)
    deadline = time.monotonic() + 10
    while reader.count("r-1") < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = reader.read("r-1")
    _assert_consistent(before, 20)
    assert len(before) >= 200
    n = len(before)
    with JobStore(tmp_path) as store:  # lock released by the kill; tail recovered
        store.append("r-1", [float(n)], {"val": [n], "s": ["x"]}, {})
        after = store.read("r-1")
    np.testing.assert_array_equal(after.columns["val"], np.arange(n + 1))
