"""SCPI instruments end to end: pyvisa-sim jobs through the CLIs, and instrument faults
(timeout, garbled reply, vanishing instrument, refused setpoint) through the loopback
simulator reached with pyvisa-py. One daemon serves the whole file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from drivers.scpi.simulator import InstrumentSimulator
from tests.integration.harness import Tomato, kill_leftovers
from tests.integration.waits import wait_stored

SETTINGS = """
[drivers.scpi]
backend = "@sim"
timeout = "400 ms"
reconnect_interval = 0.3
"""


def devices(tcp_address: str) -> dict[str, Any]:
    return {
        "devices": [
            {
                "name": "pstat-sim",
                "driver": "scpi",
                "address": "GPIB0::5::INSTR",
                "channels": ["1", "2"],
                "options": {"instrument": "potentiostat"},
            },
            {
                "name": "tc-sim",
                "driver": "scpi",
                "address": "ASRL3::INSTR",
                "channels": ["1"],
                "options": {"instrument": "temperature_controller"},
            },
            {
                "name": "vna-sim",
                "driver": "scpi",
                "address": "TCPIP0::127.0.0.1::inst0::INSTR",
                "channels": ["1"],
                "options": {"instrument": "network_analyser"},
            },
            {
                "name": "pstat-tcp",
                "driver": "scpi",
                "address": tcp_address,
                "channels": ["1", "2", "3", "4"],
                "options": {"instrument": "potentiostat", "backend": "@py"},
            },
        ],
        "pipelines": [
            {
                "name": "pstat-sim-*",
                "devices": [{"role": "pstat", "device": "pstat-sim", "channel": "each"}],
            },
            {
                "name": "tc-sim",
                "devices": [{"role": "furnace", "device": "tc-sim", "channel": "1"}],
            },
            {
                "name": "vna-sim",
                "devices": [{"role": "vna", "device": "vna-sim", "channel": "1"}],
            },
            {
                "name": "pstat-tcp-*",
                "devices": [{"role": "cell", "device": "pstat-tcp", "channel": "each"}],
            },
        ],
    }


@pytest.fixture(scope="module")
def sim() -> Iterator[InstrumentSimulator]:
    """A potentiostat on loopback TCP whose model only sources up to 50 mA."""
    instrument = InstrumentSimulator("potentiostat", limits={"source_current": (-0.05, 0.05)})
    instrument.start()
    yield instrument
    instrument.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, sim: InstrumentSimulator) -> Iterator[Tomato]:
    tomato = Tomato(tmp_path_factory.mktemp("instruments"))
    tomato.init(devices(sim.address))
    settings = tomato.root / "app" / "settings.toml"
    settings.write_text(settings.read_text() + SETTINGS)
    tomato.start()
    tomato.wait_prefect()
    yield tomato
    tomato.stop()
    kill_leftovers(tomato.root)


def step(role: str, technique: str, duration: float, interval: float, **params: Any) -> dict:
    out: dict[str, Any] = {
        "component_role": role,
        "technique_name": technique,
        "max_duration": duration,
        "sampling_interval": interval,
    }
    if params:
        out["task_params"] = params
    return out


def payload(sample: str, *steps: dict) -> dict[str, Any]:
    return {"version": "2.2", "sample": {"identifier": sample}, "method": list(steps)}


def scpi_pid(lab: Tomato) -> int:
    (drv,) = [d for d in lab.ok("tomato", "status")["drivers"] if d["name"] == "scpi"]
    assert drv["state"] == "running" and drv["restarts"] == 0, drv
    return drv["pid"]


def driver_log(lab: Tomato) -> str:
    return (lab.root / "log" / "driver-scpi.log").read_text()


def samples(path: Path, group: str) -> xr.Dataset:
    with xr.open_datatree(path, engine="netcdf4") as tree:
        return tree[group].to_dataset().load()


def test_jobs_run_on_both_simulated_instruments(lab: Tomato, tmp_path: Path) -> None:
    lab.prepare("pstat-sim-1", "cell-A")
    lab.prepare("tc-sim", "catalyst-B")
    cell = lab.submit(
        payload("cell-A", step("pstat", "constant_current", 1.0, 0.1, source_current="5 mA")),
        cwd=tmp_path,
    )
    furnace = lab.submit(
        payload("catalyst-B", step("furnace", "hold_temperature", 1.0, 0.1, setpoint=80)),
        cwd=tmp_path,
    )
    for jobid in (cell, furnace):
        job = lab.wait_job(jobid)
        assert job["status"] == "c", job
    data = samples(tmp_path / f"results.{cell}.nc", "pstat")
    assert {"current", "voltage"} <= set(data.data_vars)
    assert data["current"].attrs["units"] == "A" and data["voltage"].attrs["units"] == "V"
    assert 9 <= data.sizes["uts"] <= 11
    data = samples(tmp_path / f"results.{furnace}.nc", "furnace")
    assert data["temperature"].attrs["units"] == "degC"
    assert set(data["setpoint"].values) == {80.0}
    # after the job the components are reset to the description's defaults
    assert lab.ok("passata", "get", "pstat-sim-1.pstat", "output") == {"output": False}


def test_trace_job_writes_a_trace_against_its_frequency_axis(lab: Tomato, tmp_path: Path) -> None:
    """Two sweeps over different ranges: each step's traces on the union of frequencies."""
    lab.prepare("vna-sim", "filter-C")
    jobid = lab.submit(
        payload(
            "filter-C",
            step("vna", "sweep", 1.0, 0.1),
            step("vna", "sweep", 0.5, 0.1, start_frequency="500 kHz", stop_frequency="999.5 MHz"),
        ),
        cwd=tmp_path,
    )
    job = lab.wait_job(jobid)
    assert job["status"] == "c", job
    with xr.open_datatree(tmp_path / f"results.{jobid}.nc") as tree:  # plain xarray
        data = tree["vna"].to_dataset().load()
    assert data["s21"].dims == ("uts", "frequency") and data["s21"].dtype == "float64"
    assert data["s21"].attrs["units"] == "dB" and data["frequency"].attrs["units"] == "Hz"
    assert "frequency" in data.coords and data["uts"].dtype == "float64"  # Unix seconds
    assert data.sizes["uts"] == 15  # every sample: 10 + 5
    freq = data["frequency"].values
    assert (np.diff(freq) > 0).all() and freq[0] == 5e5 and freq[-1] == 1e9
    finite = np.isfinite(data["s21"].values).sum(axis=1)
    assert (finite == 1000).all()  # each sweep keeps its 1000 points, NaN elsewhere
    first, second = data["s21"].values[:10], data["s21"].values[10:]
    np.testing.assert_array_equal(np.isfinite(first[0]), np.isin(freq, np.linspace(1e6, 1e9, 1000)))
    assert np.isfinite(second[:, 0]).all() and np.isnan(first[:, 0]).all()
    assert ((data["s21"] >= -40) & (data["s21"] <= -3)).sum() == 15 * 1000


def test_passata_talks_to_the_simulated_instruments(lab: Tomato) -> None:
    assert "hold_temperature" in lab.ok("passata", "capabilities", "tc-sim.furnace")
    assert "tomato-sim" in lab.ok("passata", "constants", "tc-sim.furnace")["idn"]
    assert lab.ok("passata", "set", "tc-sim.furnace", "setpoint", "120")["value"] == 120.0
    assert lab.ok("passata", "get", "tc-sim.furnace", "setpoint") == {"setpoint": 120.0}
    assert "setpoint = 120.0 degC" in lab.run("passata", "get", "tc-sim.furnace", "setpoint").out
    msg = lab.fails("passata", "set", "tc-sim.furnace", "setpoint", "900")
    assert "above the maximum 400" in msg
    lab.ok("passata", "reset", "tc-sim.furnace")


def test_out_of_range_task_param_is_rejected_at_submit(lab: Tomato, tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    import yaml

    path.write_text(
        yaml.safe_dump(payload("x", step("pstat", "constant_current", 1, 0.1, source_current=1)))
    )
    assert "above the maximum 0.1 A" in lab.fails("ketchup", "submit", str(path))


def _run_until_fault(
    lab: Tomato, tmp_path: Path, pipeline: str, inject: Any, *steps: dict
) -> tuple[dict[str, Any], xr.Dataset]:
    lab.prepare(pipeline, pipeline)
    default = (step("cell", "constant_current", 6.0, 0.1, source_current=0.002),)
    jobid = lab.submit(payload(pipeline, *(steps or default)), cwd=tmp_path)
    lab.wait_job(jobid, ("r",), timeout=60)
    kept = 0
    if inject is not None:
        kept = wait_stored(lab, jobid, 5, role="cell")  # the fault comes with data stored
        inject()
    job = lab.wait_job(jobid, timeout=60)
    assert job["status"] == "ce", job
    data = samples(tmp_path / f"results.{jobid}.nc", "cell")
    assert data.sizes["uts"] >= kept  # nothing stored is lost
    return job, data


@pytest.mark.parametrize(
    "fault, reason",
    [("timeout", "within 400 ms (timeout)"), ("garble", "garbled reply")],
)
def test_timeout_and_garbled_reply_end_the_job_ce_with_data(
    lab: Tomato, sim: InstrumentSimulator, tmp_path: Path, fault: str, reason: str
) -> None:
    pid = scpi_pid(lab)
    pipeline = {"timeout": "pstat-tcp-1", "garble": "pstat-tcp-2"}[fault]

    def inject() -> None:
        sim.fault = fault

    try:
        job, data = _run_until_fault(lab, tmp_path, pipeline, inject)
        assert reason in job["error"] and "cell: constant_current failed" in job["error"], job
        assert data.sizes["uts"] >= 5 and data["current"].attrs["units"] == "A"
        # passata says what is wrong while it lasts, and shows the task's error after
        assert reason in lab.fails("passata", "status", f"{pipeline}.cell")
    finally:
        sim.fault = None
    time.sleep(0.5)
    status = lab.ok("passata", "status", f"{pipeline}.cell")
    assert reason in status["error"]
    assert scpi_pid(lab) == pid  # the driver process kept running
    if fault == "timeout":
        assert "reconnected" in driver_log(lab)
    log = prefect_logs(lab, job)
    assert reason in log, log[-2000:]


def test_vanished_instrument_fails_its_job_only_and_comes_back(
    lab: Tomato, sim: InstrumentSimulator, tmp_path: Path
) -> None:
    pid = scpi_pid(lab)
    lab.prepare("tc-sim", "bystander")
    other = lab.submit(payload("bystander", step("furnace", "monitor", 5.0, 0.1)), cwd=tmp_path)
    try:
        job, data = _run_until_fault(lab, tmp_path, "pstat-tcp-3", sim.stop)
        assert f"instrument {sim.address}" in job["error"], job
        assert data.sizes["uts"] >= 5
        msg = lab.fails("passata", "get", "pstat-tcp-3.cell", "voltage")
        assert sim.address in msg and ("unreachable" in msg or "Connection refused" in msg), msg
    finally:
        sim.start()
    assert lab.wait_job(other)["status"] == "c"  # the other instrument never noticed
    time.sleep(0.5)
    assert "voltage = " in lab.run("passata", "get", "pstat-tcp-3.cell", "voltage").out
    assert " V" in lab.run("passata", "get", "pstat-tcp-3.cell", "voltage").out
    assert scpi_pid(lab) == pid
    assert "reconnected" in driver_log(lab)


def test_setpoint_refused_by_the_instrument_ends_the_job_ce_with_data(
    lab: Tomato, tmp_path: Path
) -> None:
    # 80 mA is within the description (100 mA) but beyond this model's 50 mA range
    job, data = _run_until_fault(
        lab,
        tmp_path,
        "pstat-tcp-4",
        None,
        step("cell", "constant_current", 1.0, 0.1, source_current=0.002),
        step("cell", "constant_current", 1.0, 0.1, source_current=0.08),
    )
    assert "instrument refused ':SOUR4:CURR 8.000000e-02'" in job["error"], job
    assert '-222,"Data out of range"' in job["error"]
    assert 9 <= data.sizes["uts"] <= 11  # the first step's samples are kept


def prefect_logs(lab: Tomato, job: dict[str, Any]) -> str:
    import httpx

    api = lab.ok("tomato", "status")["prefect"]["api_url"]
    body = {"logs": {"flow_run_id": {"any_": [job["flow_run_id"]]}}, "limit": 200}
    return "\n".join(r["message"] for r in httpx.post(f"{api}/logs/filter", json=body).json())
