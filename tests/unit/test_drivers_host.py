"""The driver host as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.base import ComponentSpec
from drivers.client import DriverClient, DriverError
from drivers.example_counter import ExampleCounterDriver
from drivers.host_commands import DriverHost
from tomato_cli.rpc import Unreachable, free_port

ROOT = Path(__file__).resolve().parents[2]


def _start_host(
    tmp_path: Path, driver: str = "example_counter"
) -> tuple[subprocess.Popen, DriverClient]:
    port = free_port()
    env = {**os.environ, "TOMATO_DEBUG_COMMANDS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "drivers.host",
            "--driver",
            driver,
            "--port",
            str(port),
            "--logfile",
            str(tmp_path / f"{driver}.log"),
        ],
        cwd=ROOT,
        env=env,
    )
    client = DriverClient(port, timeout=5.0)
    # a driver host imports its driver in ~1 s; 60 s for a machine whose cores another
    # process keeps busy (a passing run answers as soon as it is up)
    deadline = time.monotonic() + 60
    while True:
        try:
            hello = client.call("hello")
            break
        except Unreachable:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    assert hello["driver"] == driver
    assert hello["pid"] == proc.pid
    return proc, client


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, DriverClient]]:
    proc, client = _start_host(tmp_path)
    yield proc, client
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_counter_task_fidelity(host: tuple[subprocess.Popen, DriverClient]) -> None:
    proc, client = host
    reg = client.call("register", components=[{"address": "example-addr", "channel": "1"}])
    key = "example-addr,1"
    assert list(reg) == [key] and reg[key]["capabilities"] == ["count", "random"]
    spec = ComponentSpec.from_description(reg[key]["spec"])
    assert spec.techniques == {"count", "random"} and spec.attrs["param"].units == "s"
    assert spec.describe() == reg[key]["spec"]
    assert client.call("register", components=[{"address": "example-addr", "channel": 1}]) == reg
    assert client.call("hello")["components"] == [key]

    started = client.call(
        "task_start",
        key=key,
        technique_name="count",
        max_duration=2.0,
        sampling_interval=0.01,
        task_params={"choice": "green"},
    )
    assert started["running"]
    with pytest.raises(DriverError, match="already running"):
        client.call(
            "task_start", key=key, technique_name="count", max_duration=1, sampling_interval=0.1
        )
    uts: list[float] = []
    vals: list[int] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.25)
        batch = client.call("task_data", key=key)
        uts += batch["uts"]
        vals += batch["data"].get("val", [])
        if batch["uts"]:
            assert set(batch["data"]) == {"val", "max", "min", "param", "choice"}
            assert batch["units"]["param"] == "s"
            assert batch["data"]["choice"][0] == "green"
        status = client.call("task_status", key=key)
        if status["done"]:
            break
    uts += client.call("task_data", key=key)["uts"]
    assert status["done"] and status["error"] is None
    ideal = 2.0 / 0.01
    assert len(uts) >= 0.99 * ideal
    assert len(uts) == status["samples"] <= ideal
    assert all(b > a for a, b in zip(uts, uts[1:], strict=False))
    assert vals[0] == 0 and vals[-1] == 2
    assert client.call("task_data", key=key)["uts"] == []

    client.call(
        "task_start", key=key, technique_name="random", max_duration=30, sampling_interval=0.05
    )
    deadline = time.monotonic() + 30
    while client.call("task_status", key=key)["samples"] < 1:  # it has sampled
        assert time.monotonic() < deadline
        time.sleep(0.05)
    t0 = time.monotonic()
    stopped = client.call("task_stop", key=key)
    # the task runs 30 s: a stop that waited for its end would take that long; a prompt one
    # answers at once (5 s: a busy machine's scheduling delays)
    assert time.monotonic() - t0 < 5
    assert not stopped["running"]
    assert len(client.call("task_data", key=key)["uts"]) >= 1
    assert client.call("shutdown") == "shutting down"
    assert proc.wait(5) == 0


def test_commands_and_errors(host: tuple[subprocess.Popen, DriverClient]) -> None:
    proc, client = host
    key = "a,2"
    client.call("register", components=[{"address": "a", "channel": "2"}])
    attrs = client.call("attrs", key=key)
    assert attrs["param"]["units"] == "s" and attrs["param"]["minimum"] == 0.1
    assert client.call("capabilities", key=key) == ["count", "random"]
    assert client.call("constants", key=key) == {
        "address": "a",
        "channel": "2",
        "example_meta": "example string",
    }
    assert client.call("set_attr", key=key, attr="param", value="500 ms") == {
        "value": 0.5,
        "units": "s",
    }
    assert client.call("get_attr", key=key, attr="param") == {"value": 0.5, "units": "s"}
    with pytest.raises(DriverError, match="below the minimum"):
        client.call("set_attr", key=key, attr="param", value="1 ms")
    status = client.call("status", key=key)
    assert status["key"] == key and not status["running"] and status["technique"] is None
    # no attr is flagged for status (as in tomato-example-counter): all are shown
    assert status["attrs"] == {"max": 10.0, "min": 0.0, "param": 0.5, "choice": "green"}
    assert status["idle"]["param"] == 0.5
    assert client.call("reset", key=key)["idle"]["param"] == 1.0
    assert set(client.call("components")) == {key}
    with pytest.raises(DriverError, match="unknown component 'x,1'; registered: a,2"):
        client.call("status", key="x,1")
    with pytest.raises(DriverError, match="unknown technique 'unknown'"):
        client.call(
            "task_start", key=key, technique_name="unknown", max_duration=1, sampling_interval=0.1
        )
    with pytest.raises(DriverError, match="unknown task parameter 'unknown'"):
        client.call(
            "task_start",
            key=key,
            technique_name="count",
            max_duration=1,
            sampling_interval=0.1,
            task_params={"unknown": "bla"},
        )
    with pytest.raises(DriverError, match="max_duration must not be negative, got '-1 s'"):
        client.call(
            "task_start",
            key=key,
            technique_name="count",
            max_duration="-1 s",
            sampling_interval=0.1,
        )
    assert client.call("task_status", key=key)["started_at"] is None
    with pytest.raises(DriverError, match="unknown command 'task_validate'"):
        client.call("task_validate", technique="count", sampling_interval="10 ms")
    with pytest.raises(DriverError, match="bad arguments for 'status'"):
        client.call("status")
    with pytest.raises(DriverError, match="unknown command 'fly'"):
        client.call("fly")
    assert client.call("deregister", keys=[key, "nope"]) == [key]
    client.call("shutdown")
    assert proc.wait(5) == 0


def test_debug_crash(host: tuple[subprocess.Popen, DriverClient]) -> None:
    proc, client = host
    with pytest.raises(Unreachable):
        client.call("debug_crash")
    assert proc.wait(5) == 3


def test_debug_commands_disabled_by_default() -> None:
    handler = DriverHost(ExampleCounterDriver({}))
    reply = handler.handle("debug_crash", {})
    assert not reply.success and "unknown command" in reply.msg


def test_unknown_driver_exits(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "drivers.host", "--driver", "nope", "--port", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "unknown driver 'nope'" in result.stderr


def test_debug_hang_blocks_server(host: tuple[subprocess.Popen, DriverClient]) -> None:
    proc, client = host
    assert client.call("debug_hang", seconds=1.0) == "hanging for 1.0 s"
    with pytest.raises(Unreachable):
        DriverClient(client.port, timeout=0.3).call("hello")
    time.sleep(1.0)
    assert client.call("hello")["pid"] == proc.pid


def test_psutil_host(tmp_path: Path) -> None:
    proc, client = _start_host(tmp_path, "psutil")
    try:
        key = "psutil-addr,10"
        client.call("register", components=[{"address": "psutil-addr", "channel": "10"}])
        client.call(
            "task_start",
            key=key,
            technique_name="all_info",
            max_duration=0.3,
            sampling_interval=0.1,
            task_params={},
        )
        deadline = time.monotonic() + 30  # 0.3 s of sampling, on however busy a machine
        while not client.call("task_status", key=key)["done"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        batch = client.call("task_data", key=key)
        assert len(batch["uts"]) == 3
        assert batch["units"]["mem_avail"] == "bytes"
        assert batch["units"]["cpu_usage"] == "percent"
        client.call("shutdown")
        assert proc.wait(5) == 0
        assert "listening on 127.0.0.1" in (tmp_path / "psutil.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
