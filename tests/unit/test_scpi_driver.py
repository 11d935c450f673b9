"""The scpi driver on pyvisa-sim instruments and on the loopback simulator (with faults)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from drivers.base import TaskError
from drivers.host_commands import DriverHost
from drivers.registry import load_driver
from drivers.scpi import ScpiDriver, VisaSettings
from drivers.scpi.simulator import InstrumentSimulator
from tomato_cli.models import Component
from tomato_cli.models.devices import DevicesConfig, expand_pipelines

PSTAT = "GPIB0::5::INSTR"
TC = "ASRL3::INSTR"


@pytest.fixture
def sim_host() -> DriverHost:
    """A driver host (in-process) with the pyvisa-sim potentiostat and temperature controller."""
    host = DriverHost(ScpiDriver({"backend": "@sim"}))
    reply = host.handle(
        "register",
        {
            "components": [
                {"address": PSTAT, "channel": "1", "options": {"instrument": "potentiostat"}},
                {"address": PSTAT, "channel": "2", "options": {"instrument": "potentiostat"}},
                {
                    "address": TC,
                    "channel": "1",
                    "options": {"instrument": "temperature_controller"},
                },
            ]
        },
    )
    assert reply.success, reply.msg
    return host


def ok(host: DriverHost, cmd: str, **args: Any) -> Any:
    reply = host.handle(cmd, args)
    assert reply.success, reply.msg
    return reply.data


def fails(host: DriverHost, cmd: str, **args: Any) -> str:
    reply = host.handle(cmd, args)
    assert not reply.success, reply.data
    assert "\n" not in reply.msg
    return reply.msg


def wait_task(host: DriverHost, key: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = ok(host, "task_status", key=key)
        if not status["running"]:
            return status
        time.sleep(0.02)
    raise AssertionError("task still running")


def test_registered_as_entry_point() -> None:
    assert load_driver("scpi") is ScpiDriver


def test_capabilities_and_attrs_come_from_the_description(sim_host: DriverHost) -> None:
    caps = ok(sim_host, "register", components=[])  # no-op
    assert caps == {}
    assert ok(sim_host, "capabilities", key=f"{PSTAT},1") == [
        "constant_current",
        "constant_voltage",
        "open_circuit_voltage",
    ]
    assert ok(sim_host, "capabilities", key=f"{TC},1") == ["hold_temperature", "monitor"]
    attrs = ok(sim_host, "attrs", key=f"{PSTAT},1")
    assert attrs["source_current"]["units"] == "A" and attrs["source_current"]["rw"]
    assert attrs["voltage"]["rw"] is False
    consts = ok(sim_host, "constants", key=f"{TC},1")
    assert consts["instrument"] == "temperature_controller" and "tomato-sim" in consts["idn"]


def test_task_runs_and_samples_with_units(sim_host: DriverHost) -> None:
    key = f"{PSTAT},2"
    ok(sim_host, "reset", key=key)
    ok(
        sim_host,
        "task_start",
        key=key,
        technique_name="constant_current",
        max_duration=0.5,
        sampling_interval=0.05,
        task_params={"source_current": "5 mA"},
    )
    status = wait_task(sim_host, key)
    assert status["error"] is None and status["samples"] == 10
    data = ok(sim_host, "task_data", key=key)
    assert set(data["data"]) == {"current", "voltage"}
    assert data["units"] == {"current": "A", "voltage": "V"}
    assert ok(sim_host, "get_attr", key=key, attr="source_current")["value"] == 0.005
    assert ok(sim_host, "get_attr", key=key, attr="mode")["value"] == "CURR"
    assert ok(sim_host, "get_attr", key=key, attr="output")["value"] is True
    # channel 1 of the same instrument is untouched
    assert ok(sim_host, "get_attr", key=f"{PSTAT},1", attr="output")["value"] is False


def test_set_attr_and_bounds(sim_host: DriverHost) -> None:
    key = f"{TC},1"
    assert ok(sim_host, "set_attr", key=key, attr="setpoint", value="350 K")["value"] == (
        pytest.approx(76.85)
    )
    assert "above the maximum 400" in fails(
        sim_host, "set_attr", key=key, attr="setpoint", value=900
    )
    assert "read-only" in fails(sim_host, "set_attr", key=key, attr="temperature", value=1)


def test_tasks_are_checked_against_the_component_description(sim_host: DriverHost) -> None:
    key = next(k for k in sim_host.components if k.startswith(TC))
    spec = sim_host.driver.spec_of(sim_host.components[key])
    spec.check_task("monitor", {}, 1)
    with pytest.raises(TaskError) as info:
        spec.check_task("nope", {}, 1)
    assert "unknown technique 'nope'" in str(info.value)
    assert "hold_temperature" in str(info.value)
    with pytest.raises(TaskError, match="above the maximum 400"):
        spec.check_task("hold_temperature", {"setpoint": 1000}, 1)
    msg = fails(
        sim_host,
        "task_start",
        key=key,
        technique_name="hold_temperature",
        max_duration=1,
        sampling_interval=1,
        task_params={"setpoint": 1000},
    )
    assert "above the maximum 400" in msg


def test_bad_registrations_are_clear() -> None:
    driver = ScpiDriver({"backend": "@sim"})
    with pytest.raises(ValueError, match="needs options.instrument"):
        driver.create_component(PSTAT, "1")
    with pytest.raises(ValueError, match="has no channel '9'"):
        driver.create_component(PSTAT, "9", {"instrument": "potentiostat"})
    with pytest.raises(ValueError, match="unknown instrument description 'x'"):
        driver.create_component(PSTAT, "1", {"instrument": "x"})
    with pytest.raises(ValueError, match="timeout"):
        VisaSettings.from_mapping({"timeout": "soon"})


def test_options_reach_the_component_from_the_devices_file() -> None:
    cfg = DevicesConfig.model_validate(
        {
            "devices": [
                {
                    "name": "pstat",
                    "driver": "scpi",
                    "address": PSTAT,
                    "channels": [1, 2],
                    "options": {"instrument": "potentiostat"},
                }
            ],
            "pipelines": [
                {"name": "p-*", "devices": [{"role": "a", "device": "pstat", "channel": "each"}]}
            ],
        }
    )
    comp = expand_pipelines(cfg)[0].components[0]
    assert comp.options == {"instrument": "potentiostat"}
    assert Component.model_validate_json(comp.model_dump_json()) == comp
    bare = Component.make("x", "d", "a", "1", "r")
    assert "options" not in bare.model_dump()


# -- the loopback simulator and its faults -------------------------------------------


@pytest.fixture
def tcp() -> Iterator[tuple[InstrumentSimulator, DriverHost, str]]:
    sim = InstrumentSimulator("potentiostat", limits={"source_current": (-0.05, 0.05)}, seed=1)
    sim.start()
    driver = ScpiDriver({"backend": "@py", "timeout": "300 ms", "reconnect_interval": 0.2})
    host = DriverHost(driver)
    opts = {"instrument": "potentiostat"}
    ok(
        host,
        "register",
        components=[{"address": sim.address, "channel": c, "options": opts} for c in "12"],
    )
    yield sim, host, f"{sim.address},1"
    host.stop_all()
    driver.close()
    sim.stop()


def sampled(host: DriverHost, key: str, at_least: int, timeout: float = 30) -> None:
    """Wait until the running task has taken ``at_least`` samples (not for a time: a busy
    machine takes them later)."""
    deadline = time.monotonic() + timeout
    while (status := ok(host, "task_status", key=key))["samples"] < at_least:
        assert status["running"] and time.monotonic() < deadline, status
        time.sleep(0.02)


def start(host: DriverHost, key: str, **params: Any) -> None:
    ok(
        host,
        "task_start",
        key=key,
        technique_name="constant_current",
        max_duration=3,
        sampling_interval=0.05,
        task_params=params,
    )


def test_simulated_cell_responds(tcp: tuple[InstrumentSimulator, DriverHost, str]) -> None:
    sim, host, key = tcp
    comp = host.components[key]
    comp.prepare_task("constant_current", {"source_current": 0.01})
    sample = comp.measure("constant_current", 0)
    assert sample["current"] == pytest.approx(0.01, abs=1e-4)
    assert sample["voltage"] == pytest.approx(0.6, abs=1e-2)  # 10 ohm + 0.5 V


@pytest.mark.parametrize(
    "fault, reason",
    [
        ("timeout", "within 300 ms (timeout)"),
        ("garble", "garbled reply"),
    ],
)
def test_a_fault_ends_the_task_with_a_clear_error_and_the_data_kept(
    tcp: tuple[InstrumentSimulator, DriverHost, str], fault: str, reason: str, caplog
) -> None:
    sim, host, key = tcp
    start(host, key, source_current=0.001)
    sampled(host, key, 4)
    sim.fault = fault
    status = wait_task(host, key)
    assert reason in status["error"] and "InstrumentError" in status["error"], status
    assert status["samples"] >= 4
    assert len(ok(host, "task_data", key=key)["uts"]) == status["samples"]
    assert reason in fails(host, "status", key=key)
    sim.fault = None
    time.sleep(0.25)  # reconnect_interval
    with caplog.at_level("WARNING", logger="drivers.scpi"):
        assert ok(host, "status", key=key)["error"] == status["error"]  # the last task's error
    if fault == "timeout":
        assert "reconnected" in caplog.text


def test_vanished_instrument_comes_back(
    tcp: tuple[InstrumentSimulator, DriverHost, str], caplog
) -> None:
    sim, host, key = tcp
    start(host, key, source_current=0.001)
    sampled(host, key, 3)
    sim.stop()
    status = wait_task(host, key)
    assert "instrument TCPIP0::127.0.0.1" in status["error"], status
    assert status["samples"] >= 3
    msg = fails(host, "get_attr", key=key, attr="voltage")
    assert sim.address in msg
    sim.start()
    time.sleep(0.25)
    with caplog.at_level("WARNING", logger="drivers.scpi"):
        assert ok(host, "get_attr", key=key, attr="voltage")["value"] == pytest.approx(
            0.51, abs=0.02
        )
    assert "reconnected" in caplog.text


def test_instrument_refuses_out_of_range_setpoint(
    tcp: tuple[InstrumentSimulator, DriverHost, str],
) -> None:
    sim, host, key = tcp
    msg = fails(
        host,
        "task_start",
        key=key,
        technique_name="constant_current",
        max_duration=1,
        sampling_interval=0.1,
        task_params={"source_current": 0.08},  # within the description, beyond this model
    )
    assert "instrument refused ':SOUR1:CURR 8.000000e-02'" in msg and "-222" in msg
    # beyond the description: refused before anything is sent
    before = sim.commands
    assert "above the maximum 0.1 A" in fails(
        host, "set_attr", key=key, attr="source_current", value=1
    )
    assert sim.commands == before


def test_other_channels_keep_working_during_a_fault(
    tcp: tuple[InstrumentSimulator, DriverHost, str],
) -> None:
    sim, host, key = tcp
    other = InstrumentSimulator("temperature_controller")
    other.start()
    try:
        ok(
            host,
            "register",
            components=[
                {
                    "address": other.address,
                    "channel": "1",
                    "options": {"instrument": "temperature_controller"},
                }
            ],
        )
        okey = f"{other.address},1"
        start(host, key, source_current=0.001)
        ok(
            host,
            "task_start",
            key=okey,
            technique_name="monitor",
            max_duration=1,
            sampling_interval=0.05,
        )
        sampled(host, okey, 1)  # the other instrument's task runs when this one faults
        sim.fault = "timeout"
        assert wait_task(host, key)["error"]
        status = wait_task(host, okey)
        assert status["error"] is None and status["samples"] == 20
    finally:
        other.stop()


def test_garbled_error_query_is_not_called_a_refusal(
    tcp: tuple[InstrumentSimulator, DriverHost, str],
) -> None:
    sim, host, key = tcp
    sim.fault = "garble"
    msg = fails(host, "set_attr", key=key, attr="source_current", value=0.001)
    assert "garbled reply" in msg and "to ':SYST:ERR?' (expected an error code)" in msg


VNA = "TCPIP0::127.0.0.1::inst0::INSTR"
SCOPE = "USB0::0x0699::0x0401::SIM1::INSTR"


@pytest.fixture
def trace_host(tmp_path: Any) -> DriverHost:
    """The pyvisa-sim network analyser and oscilloscope, and an analyser whose trace query
    answers text (its description in tmp_path)."""
    import yaml

    from drivers.scpi.description import BUILTIN_DIR

    garbled = yaml.safe_load((BUILTIN_DIR / "network_analyser.yaml").read_text())
    garbled["traces"]["s21"]["query"] = "*IDN?"
    (tmp_path / "garbled_vna.yaml").write_text(yaml.safe_dump(garbled))
    host = DriverHost(ScpiDriver({"backend": "@sim", "instruments": [str(tmp_path)]}))
    comps = [
        {"address": VNA, "channel": "1", "options": {"instrument": "network_analyser"}},
        {"address": VNA, "channel": "2", "options": {"instrument": "garbled_vna"}},
        {"address": SCOPE, "channel": "1", "options": {"instrument": "oscilloscope"}},
    ]
    ok(host, "register", components=comps)
    return host


def _trace_task(host: DriverHost, key: str, technique: str, **params: Any) -> dict[str, Any]:
    ok(host, "reset", key=key)
    ok(
        host,
        "task_start",
        key=key,
        technique_name=technique,
        max_duration=0.3,
        sampling_interval=0.1,
        task_params=params,
    )
    return wait_task(host, key)


def test_network_analyser_sweeps_are_traces_on_a_frequency_axis(trace_host: DriverHost) -> None:
    from drivers.samples import decode_block

    key = f"{VNA},1"
    status = _trace_task(
        trace_host, key, "sweep", start_frequency="10 MHz", stop_frequency="1.009 GHz"
    )
    assert status["error"] is None and status["samples"] == 3
    block = decode_block(ok(trace_host, "task_data", key=key))
    assert block.dims == {"s21": ("frequency",)} and not block.more
    assert block.units == {"s21": "dB", "frequency": "Hz"}
    assert block.data["s21"].shape == (3, 1000)
    assert ((block.data["s21"] >= -40) & (block.data["s21"] <= -3)).all()
    np.testing.assert_allclose(block.coords["frequency"], np.linspace(1e7, 1.009e9, 1000))
    assert ok(trace_host, "status", key=key)["idle"] == {}  # no trace in the status


def test_oscilloscope_waveform_is_scaled_on_a_time_axis(trace_host: DriverHost) -> None:
    from drivers.samples import decode_block

    key = f"{SCOPE},1"
    status = _trace_task(trace_host, key, "acquire")
    assert status["error"] is None
    block = decode_block(ok(trace_host, "task_data", key=key))
    levels = np.round((block.data["waveform"] + 5.12) / 0.04, 9)  # back to the sim's levels
    np.testing.assert_array_equal(levels, np.round(levels))
    assert levels.min() >= 0 and levels.max() <= 255 and levels.std() > 10
    np.testing.assert_allclose(block.coords["time"], -5e-3 + 1e-5 * np.arange(1000))
    assert block.units == {"waveform": "V", "time": "s"}


def test_trace_failures_end_the_task_with_a_clear_error(trace_host: DriverHost) -> None:
    status = _trace_task(trace_host, f"{VNA},1", "sweep", points=201)
    assert status["error"] == (
        f"InstrumentError: network_analyser at {VNA} channel 1: trace on axis 'frequency' "
        "has 1000 points, but 'points' says 201"
    )
    status = _trace_task(trace_host, f"{VNA},2", "sweep")
    assert status["error"].startswith(
        f"InstrumentError: network_analyser at {VNA} channel 2: garbled reply "
        "'tomato-sim,network_analyser,0,1.0' to '*IDN?' (expected trace 's21' as ','-separated"
    )
