"""tomato 2.x driver packages from PyPI, installed by `tomato driver install`, run unchanged.

The legacy environment is built once per session from the wheelhouse that .ci/install fills
(nothing is downloaded here). Results are compared with what tomato 2.2 wrote for the same
payloads on the same packages (tests/data/tomato22_*.nc, from bench/legacy_references.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import yaml

from bench.legacy_references import CASES, payload
from drivers.client import DriverClient, DriverError
from drivers.origins import DriverCatalog
from drivers.samples import unpack_array
from tests.fakes import vna_sdk
from tests.fakes.serial_port import FakeAlicat, FakeBronkhorst, FakeJumo, FakeOmega
from tests.integration.harness import BIN, DATA, Tomato, kill_leftovers
from tests.reference import REFERENCE
from tests.skips import skip_system
from tomato_cli.rpc import free_port
from tomato_cli.units import cf_units

ROOT = Path(__file__).resolve().parents[2]
WHEELS = Path(os.environ.get("TOMATO_TEST_WHEELS", ROOT / ".venv" / "legacy-wheels"))
JUMO_ROLE = {"role": "jumo", "device": "dev-jumo", "channel": "1"}
PACKAGES = [
    "tomato-example-counter",
    "tomato-example-trig",
    "tomato-psutil",
    "tomato-jumo",
    "tomato-bronkhorst",
    "tomato-alicat",
    "tomato-mcc",
    "tomato-omega",
    "tomato-picovna",
]


def legacy_settings(venv: Path) -> str:
    return f'\n[legacy]\nvenv = "{venv}"\n'


@pytest.fixture(scope="session")
def legacy_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The legacy environment with all nine packages, installed by our command, offline."""
    assert WHEELS.is_dir(), f"no wheelhouse at {WHEELS}: run .ci/install"
    world = Tomato(tmp_path_factory.mktemp("legacy-install"))
    venv = world.root / "legacy-venv"
    world.init(legacy=legacy_settings(venv))
    ours = (BIN / "tomato").read_bytes()
    data = world.ok(
        "tomato", "driver", "install", "--no-index", "--find-links", str(WHEELS), *PACKAGES
    )
    assert {row["package"] for row in data} == set(PACKAGES)
    # our commands are untouched; tomato 2.2's live in the legacy environment only
    assert (BIN / "tomato").read_bytes() == ours
    assert b"tomato_cli" in (BIN / "tomato").read_bytes()
    assert b"tomato_cli" not in (venv / "bin" / "tomato").read_bytes()
    return venv


@pytest.fixture(scope="module")
def legacy_lab(
    legacy_venv: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Tomato, FakeJumo]]:
    """One daemon with built-in and legacy drivers side by side, and a fake JUMO."""
    jumo = FakeJumo().start()
    tomato = Tomato(tmp_path_factory.mktemp("legacy-lab"))
    names = {
        "bi-example_counter": "example_counter",
        "bi-psutil": "psutil",
        "lg-example_counter": "example_counter@legacy",
        "lg-example_trig": "example_trig",
        "lg-psutil": "psutil@legacy",
    }
    devices: dict[str, Any] = {
        "devices": [
            {"name": f"dev-{n}", "driver": d, "address": f"{n}-addr", "channels": ["1"]}
            for n, d in names.items()
        ]
        + [{"name": "dev-jumo", "driver": "jumo", "address": jumo.port, "channels": ["1"]}],
        "pipelines": [
            {
                "name": f"pip-{n}",
                "devices": [{"role": n[3:], "device": f"dev-{n}", "channel": "1"}],
            }
            for n in names
        ]
        + [
            {
                "name": "pip-jumo",
                "devices": [{"role": "jumo", "device": "dev-jumo", "channel": "1"}],
            }
        ],
    }
    try:
        tomato.init(devices, legacy=legacy_settings(legacy_venv))
        tomato.start()
        tomato.wait_prefect()
        yield tomato, jumo
    finally:
        tomato.stop()
        jumo.close()


def run_case(lab: Tomato, pipeline: str, case: str, folder: Path) -> xr.Dataset:
    """Run the reference payload of ``case`` on ``pipeline``; the role's group of its results."""
    doc = payload(case)
    doc["sample"]["identifier"] = f"s-{pipeline}"
    lab.prepare(pipeline, f"s-{pipeline}")
    jobid = lab.submit(doc, cwd=folder)
    job = lab.wait_job(jobid)
    assert job["status"] == "c", job
    return xr.open_datatree(folder / f"results.{jobid}.nc")[case].to_dataset()


def assert_like_tomato22(ours: xr.Dataset, case: str) -> None:
    """Same variables, dimensions, coordinates and units as tomato 2.2 wrote; similar values."""
    theirs = xr.open_datatree(DATA / f"tomato22_{case}.nc")[case].to_dataset()
    assert set(ours.data_vars) == set(theirs.data_vars)
    assert set(ours.coords) == set(theirs.coords)
    assert abs(ours.sizes["uts"] - theirs.sizes["uts"]) <= 1, (ours.sizes, theirs.sizes)
    for name, var in theirs.variables.items():
        mine = ours[name]
        assert mine.dims == var.dims, name
        if name == "uts":
            continue
        assert (mine.dtype.kind in "USO") == (var.dtype.kind in "USO"), name
        if var.dtype.kind not in "USO":
            assert mine.attrs.get("units") == cf_units(var.attrs.get("units")), name
    spec = CASES[case]["params"]
    for name, value in spec.items():
        if isinstance(value, str) and " " not in value:
            assert set(ours[name].values) == {value}, name
    if case == "example_counter":
        assert ((ours["val"] >= 5) & (ours["val"] <= 6)).all()
        assert set(ours["param"].values) == {2.0}
    if case == "psutil":
        assert set(ours["cpu_count"].values) == set(theirs["cpu_count"].values)
        assert ((ours["mem_usage"] > 0) & (ours["mem_usage"] <= 100)).all()
    if case == "example_trig":
        np.testing.assert_allclose(ours["abscissa"].values, theirs["abscissa"].values)


@pytest.mark.parametrize("case", ["example_counter", "psutil"])
def test_legacy_package_job_like_tomato22(
    legacy_lab: tuple[Tomato, FakeJumo], tmp_path: Path, case: str
) -> None:
    lab, _ = legacy_lab
    assert_like_tomato22(run_case(lab, f"pip-lg-{case}", case, tmp_path), case)


@pytest.mark.parametrize("case", ["example_counter", "psutil"])
def test_builtin_job_like_the_package(
    legacy_lab: tuple[Tomato, FakeJumo], tmp_path: Path, case: str
) -> None:
    lab, _ = legacy_lab
    assert_like_tomato22(run_case(lab, f"pip-bi-{case}", case, tmp_path), case)


def test_legacy_trace_job_like_tomato22(
    legacy_lab: tuple[Tomato, FakeJumo], tmp_path: Path
) -> None:
    lab, _ = legacy_lab
    assert_like_tomato22(
        run_case(lab, "pip-lg-example_trig", "example_trig", tmp_path), "example_trig"
    )


def test_status_drivers_shows_origins(legacy_lab: tuple[Tomato, FakeJumo]) -> None:
    lab, _ = legacy_lab
    drivers = lab.ok("tomato", "status", "drivers")  # keyed by name, as in tomato 2.2
    assert drivers["example_counter"]["origin"] == "built-in"
    assert drivers["example_counter@legacy"]["origin"] == "legacy venv"
    assert drivers["example_counter@legacy"]["version"] == "2.1.1"
    assert drivers["psutil@legacy"]["package"] == "tomato-psutil"
    assert all(d["state"] == "running" and not d["error"] for d in drivers.values()), drivers
    text = lab.run("tomato", "status", "drivers").out
    assert "legacy venv" in text and "built-in" in text
    listed = {(d["name"], d["origin"]): d for d in lab.ok("tomato", "driver", "list")}
    assert listed[("psutil", "legacy venv")]["use_as"] == "psutil@legacy"
    assert listed[("jumo", "legacy venv")]["use_as"] == "jumo"


def test_passata_on_legacy_components(legacy_lab: tuple[Tomato, FakeJumo]) -> None:
    lab, _ = legacy_lab
    comp = "example_counter@legacy:(lg-example_counter-addr,1)"
    attrs = lab.ok("passata", "attrs", comp)
    assert attrs["param"]["units"] == "seconds" and attrs["param"]["minimum"] == 0.1
    assert attrs["choice"]["options"] == ["blue", "green", "red"]
    assert lab.ok("passata", "constants", comp)["example_meta"] == "example string"
    assert lab.ok("passata", "set", comp, "param", "500 ms")["value"] == 0.5
    assert "below the minimum" in lab.fails("passata", "set", comp, "param", "1 ms")
    assert "not one of" in lab.fails("passata", "set", comp, "choice", "pink")
    assert lab.ok("passata", "get", comp, "param") == {"param": 0.5}
    psutil = lab.ok("passata", "status", "psutil@legacy:(lg-psutil-addr,1)")
    assert set(psutil["attrs"]) == {"mem_usage", "cpu_usage"}
    # tomato-psutil measures when idle every 10 s (its idle_measurement_interval)
    assert {"mem_total", "cpu_usage"} <= set(psutil["idle"])


def test_payload_checked_against_legacy_driver(legacy_lab: tuple[Tomato, FakeJumo]) -> None:
    lab, _ = legacy_lab
    doc = payload("example_trig")
    doc["method"][0]["task_params"] = {"function": "exp"}
    path = lab.root / "bad-trig.yml"
    path.write_text(yaml.safe_dump(doc))
    msg = lab.fails("ketchup", "submit", str(path))
    assert "'function'" in msg and "'exp' is not one of" in msg


def test_jumo_ramp_thread_stops_with_the_task(
    legacy_lab: tuple[Tomato, FakeJumo], tmp_path: Path
) -> None:
    lab, jumo = legacy_lab
    lab.prepare("pip-jumo", "s-jumo")
    doc = {
        "version": "2.2",
        "sample": {"identifier": "s-jumo"},
        "method": [
            {
                "component_role": "jumo",
                "technique_name": "temperature_ramp",
                "max_duration": 5,
                "sampling_interval": 1,
                "task_params": {"ramp_rate": "600 K/min", "ramp_target": "300 degC"},
            }
        ],
    }
    jobid = lab.submit(doc, cwd=tmp_path)
    job = lab.wait_job(jobid)
    assert job["status"] == "c", job
    ramp = [v for _, v in jumo.setpoints() if v < 2000]  # 200001: "use the controller's own"
    assert len(ramp) >= 2 and ramp == sorted(ramp) and ramp[-1] > ramp[0]
    ds = xr.open_datatree(tmp_path / f"results.{jobid}.nc")["jumo"]
    assert ds["temperature"].attrs["units"] == "degC" and ds.sizes["uts"] >= 4
    count = len(jumo.setpoints())
    time.sleep(4.5)  # the ramp writes every 2 s while it runs
    assert jumo.setpoints()[count:] == []


@pytest.fixture
def legacy_host(legacy_venv: Path, tmp_path: Path) -> Iterator[Any]:
    """Start the host of one legacy driver alone (no daemon): ``start(name, settings)``."""
    procs: list[subprocess.Popen] = []

    def start(
        name: str, settings: dict[str, Any] | None = None, env: dict[str, str] | None = None
    ) -> DriverClient:
        port = free_port()
        cmd = DriverCatalog(legacy_venv).host_command(
            name, port, settings or {}, tmp_path / f"{name}.log"
        )
        procs.append(subprocess.Popen(cmd.argv, env={**cmd.env, **(env or {})}, cwd=cmd.cwd))
        client = DriverClient(port, timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if procs[-1].poll() is not None:
                raise AssertionError(f"{name} host exited with {procs[-1].returncode}")
            try:
                client.call("hello")
                return client
            except Exception:
                time.sleep(0.1)
        raise AssertionError(f"{name} host did not answer")

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(5)
    kill_leftovers(tmp_path)


def test_registration_retries_runtime_error(legacy_host: Any) -> None:
    client = legacy_host("jumo")
    t0 = time.monotonic()
    with pytest.raises(DriverError) as err:
        client.call("register", components=[{"address": "/dev/no-such-port", "channel": "1"}])
    assert "could not open port /dev/no-such-port" in str(err.value)
    assert "(tried 3 times)" in str(err.value) and time.monotonic() - t0 >= 1.0
    assert client.call("hello")["components"] == []


def test_sys_exit_in_driver_fails_only_that_call(legacy_host: Any) -> None:
    jumo = FakeJumo().start()
    try:
        client = legacy_host("jumo")
        client.call("register", components=[{"address": jumo.port, "channel": "1"}])
        key = f"{jumo.port},1"
        assert client.call("get_attr", key=key, attr="duty_cycle")["units"] == "percent"
        jumo.silent = True  # minimalmodbus gives up; tomato_jumo raises; log_errors sys.exits
        with pytest.raises(DriverError, match="RuntimeError: maximum number of retries exceeded"):
            client.call("get_attr", key=key, attr="duty_cycle")
        jumo.silent = False
        assert client.call("get_attr", key=key, attr="duty_cycle")["value"] == 0.0
        assert client.call("hello")["components"] == [key]
    finally:
        jumo.close()


def test_omega_registers_and_measures_on_a_fake_port(legacy_host: Any) -> None:
    omega = FakeOmega(pressure=1.5).start()
    try:
        client = legacy_host("omega")
        key = f"{omega.port},1"
        reply = client.call("register", components=[{"address": omega.port, "channel": "1"}])
        assert reply[key]["capabilities"] == ["measure_pressure"]
        assert client.call("constants", key=key)["serial"] == "FAKE-0042"
        assert client.call("get_attr", key=key, attr="pressure") == {"value": 1.5, "units": "bar"}
    finally:
        omega.close()


def test_alicat_registers_sets_and_resets_on_a_fake_port(legacy_host: Any) -> None:
    alicat = FakeAlicat(capacity=100.0).start()
    try:
        client = legacy_host("alicat")
        key = f"{alicat.port},A"
        reply = client.call("register", components=[{"address": alicat.port, "channel": "A"}])
        assert reply[key]["capabilities"] == ["constant_flow"]
        attrs = client.call("attrs", key=key)
        assert set(attrs) == {"setpoint", "valve_close", "temperature"}
        assert attrs["setpoint"]["maximum"] == 100.0
        client.call("set_attr", key=key, attr="setpoint", value="12.5 ml/min")
        assert alicat.setpoint == 12.5 and "AS 12.5" in alicat.commands
        value = client.call("get_attr", key=key, attr="setpoint")
        assert value == {"value": 12.5, "units": "ml/min"}  # as the driver names them
        with pytest.raises(DriverError, match="maximum"):
            client.call("set_attr", key=key, attr="setpoint", value="150 ml/min")
        assert alicat.setpoint == 12.5  # refused before it reached the instrument
        client.call("reset", key=key)
        assert alicat.hold  # 2.1's reset shuts the valve
        assert client.call("get_attr", key=key, attr="valve_close")["value"] is True
    finally:
        alicat.close()


def run_task(
    client: DriverClient,
    key: str,
    technique: str,
    duration: float,
    interval: float,
    params: dict[str, Any],
    timeout: float = 10,
) -> dict[str, Any]:
    """Start a task on a driver host, wait (bounded) until it ends; its data block."""
    client.call(
        "task_start",
        key=key,
        technique_name=technique,
        max_duration=duration,
        sampling_interval=interval,
        task_params=params,
    )
    deadline = time.monotonic() + timeout
    while client.call("task_status", key=key)["running"] and time.monotonic() < deadline:
        time.sleep(0.2)
    return client.call("task_data", key=key)


def test_bronkhorst_registers_runs_a_task_and_resets_on_a_fake_port(legacy_host: Any) -> None:
    mfc = FakeBronkhorst(node=3, capacity=50.0, unit="mln/min").start()
    try:
        client = legacy_host("bronkhorst")
        key = f"{mfc.port},3"
        reply = client.call("register", components=[{"address": mfc.port, "channel": "3"}])
        assert reply[key]["capabilities"] == ["constant_flow"]
        attrs = client.call("attrs", key=key)
        assert set(attrs) == {"temperature", "control_mode", "setpoint"}
        assert (attrs["setpoint"]["minimum"], attrs["setpoint"]["maximum"]) == (0.0, 50.0)
        assert "valve close" in attrs["control_mode"]["options"]
        temperature = client.call("get_attr", key=key, attr="temperature")
        assert temperature == {"value": 21.5, "units": "celsius"}  # as the driver names them
        with pytest.raises(DriverError, match="maximum"):
            client.call("set_attr", key=key, attr="setpoint", value="80 ml/min")
        assert mfc.writes == []  # refused before it reached the instrument
        block = run_task(client, key, "constant_flow", 1.0, 0.2, {"setpoint": "12.5 ml/min"})
        assert (mfc.SETPOINT, 12.5) in mfc.writes  # the task's thread set it
        assert len(block["uts"]) >= 3
        assert set(block["data"]["flow"]) == {12.5} and block["units"]["flow"] == "ml/min"
        client.call("reset", key=key)
        assert mfc.writes[-1] == (mfc.CONTROL_MODE, 3)  # 2.1's reset shuts the valve
        assert client.call("get_attr", key=key, attr="control_mode")["value"] == "valve close"
    finally:
        mfc.close()


def test_bronkhorst_refuses_an_address_where_no_instrument_answers(legacy_host: Any) -> None:
    mfc = FakeBronkhorst(node=3).start()
    try:
        client = legacy_host("bronkhorst")
        with pytest.raises(DriverError, match="not a Bronkhorst device"):
            client.call("register", components=[{"address": mfc.port, "channel": "7"}])
        assert client.call("hello")["components"] == []
    finally:
        mfc.close()


@pytest.fixture
def fake_vna_sdk(tmp_path: Path) -> Path:
    """A PicoVNA SDK directory (tomato-picovna's ``dllpath``) holding the fake ``_vna_python``
    where the driver looks for it, whichever Python the legacy environment runs."""
    sdk = tmp_path / "picovna-sdk"
    for sub in ("linux_x64", "linux_x64/python310", "linux_x64/python311"):
        (sdk / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(vna_sdk.__file__), sdk / sub / "_vna_python.py")
    return sdk


def test_picovna_registers_and_sweeps_on_a_fake_sdk(legacy_host: Any, fake_vna_sdk: Path) -> None:
    client = legacy_host("picovna", {"dllpath": str(fake_vna_sdk)})
    key = "vna,VNA0042"
    reply = client.call("register", components=[{"address": "vna", "channel": "VNA0042"}])
    assert reply[key]["capabilities"] == ["linear_sweep"]
    attrs = client.call("attrs", key=key)
    assert {"bandwidth", "power_level", "sweep_params", "sweep_nports"} <= set(attrs)
    assert client.call("get_attr", key=key, attr="temperature")["value"] == 38.0
    with pytest.raises(DriverError, match="not permitted"):
        client.call("set_attr", key=key, attr="bandwidth", value="3 Hz")
    sweep = {"sweep_params": [{"start": 1e6, "stop": 1e7, "points": 11}]}
    block = run_task(client, key, "linear_sweep", 2.0, 1.0, sweep, timeout=20)
    assert len(block["uts"]) >= 1
    assert block["dims"]["Re(S11)"] == ["freq"] and block["units"]["freq"] == "Hz"
    freq = unpack_array(block["coords"]["freq"])
    assert list(freq) == list(np.linspace(1e6, 1e7, 11))
    re_s11 = unpack_array(block["data"]["Re(S11)"])
    assert re_s11.shape == (len(block["uts"]), 11)
    assert np.allclose(re_s11, freq / vna_sdk.MAX_HZ)  # the fake's device under test
    assert np.allclose(unpack_array(block["data"]["Im(S11)"]), -0.5)


def test_picovna_refuses_a_serial_that_is_not_connected(
    legacy_host: Any, fake_vna_sdk: Path
) -> None:
    client = legacy_host("picovna", {"dllpath": str(fake_vna_sdk)})
    with pytest.raises(DriverError, match="no VNA with serial 'X1' is connected"):
        client.call("register", components=[{"address": "vna", "channel": "X1"}])
    assert client.call("hello")["components"] == []


@pytest.fixture
def fake_libuldaq(tmp_path: Path) -> dict[str, str]:
    """The environment that makes the fake libuldaq.so the one uldaq loads (built here)."""
    if shutil.which("gcc") is None:
        skip_system("gcc is not installed (.ci/install installs it): cannot build the fake")
    lib = tmp_path / "uldaq-lib"
    lib.mkdir()
    source = Path(__file__).resolve().parents[1] / "fakes" / "libuldaq.c"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-Wl,-soname,libuldaq.so", "-o", str(lib / "libuldaq.so")]
        + [str(source)],
        check=True,
    )
    return {"LD_LIBRARY_PATH": str(lib), "FAKE_ULDAQ_DEVICES": "2"}


def test_mcc_registers_and_reads_thermocouples_on_a_fake_library(
    legacy_host: Any, fake_libuldaq: dict[str, str]
) -> None:
    client = legacy_host("mcc", {"tc_type": {"5": "K"}}, env=fake_libuldaq)
    components = [{"address": "1", "channel": "3"}, {"address": "1", "channel": "5"}]
    reply = client.call("register", components=components)
    assert reply["1,3"]["capabilities"] == ["measure_temperature"]
    # the fake's channels start as type T (3) and read 20 degC + channel + 0.5 per type
    # code: the driver set type J (1) on channel 3, its default, and K (2) on channel 5
    assert client.call("get_attr", key="1,3", attr="temperature") == {
        "value": 23.5,
        "units": "celsius",
    }
    assert client.call("get_attr", key="1,5", attr="temperature")["value"] == 26.0


def test_mcc_refuses_a_channel_the_box_does_not_have(
    legacy_host: Any, fake_libuldaq: dict[str, str]
) -> None:
    client = legacy_host("mcc", env=fake_libuldaq)
    with pytest.raises(DriverError, match="Invalid analog input channel specified"):
        client.call("register", components=[{"address": "0", "channel": "9"}])
    assert client.call("hello")["components"] == []


@pytest.mark.parametrize(
    ("driver", "settings", "why"),
    [
        (
            "picovna",
            {},
            "RuntimeError: Cannot instantiate tomato-picovna without supplying a dllpath",
        ),
        ("mcc", {}, "libuldaq.so"),
    ],
)
def test_drivers_that_cannot_start_say_why(
    legacy_venv: Path, tmp_path: Path, driver: str, settings: dict[str, Any], why: str
) -> None:
    cmd = DriverCatalog(legacy_venv).host_command(driver, free_port(), settings, tmp_path / "x.log")
    proc = subprocess.run(cmd.argv, env=cmd.env, cwd=cmd.cwd, capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cannot start driver {driver!r}: ")
    assert why in lines[0]


@pytest.mark.parametrize("driver", ["bronkhorst", "alicat"])
def test_serial_drivers_load_and_refuse_a_missing_port(legacy_host: Any, driver: str) -> None:
    client = legacy_host(driver)
    with pytest.raises(DriverError, match="no-such-port"):
        client.call("register", components=[{"address": "/dev/no-such-port", "channel": "1"}])
    assert client.call("hello")["driver"] == driver


def test_devices_file_driver_names(legacy_venv: Path, fresh: Tomato) -> None:
    fresh.init(REFERENCE / "devices" / "devices_psutil.json", legacy=legacy_settings(legacy_venv))
    devices = fresh.devices_file
    text = devices.read_text()
    devices.write_text(text.replace('"driver": "psutil"', '"driver": "psutil@nowhere"'))
    assert "unknown driver 'psutil@nowhere'" in fresh.fails("tomato", "start")
    devices.write_text(text.replace('"driver": "psutil"', '"driver": "jumbo"'))
    msg = fresh.fails("tomato", "start")
    assert "unknown driver 'jumbo'" in msg and "psutil@legacy" in msg and "jumo" in msg
