"""tomato init/start/stop/status/reload and pipelines, through the real CLI."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from tests.integration.harness import Tomato
from tests.reference import REFERENCE


def test_init_writes_settings_and_devices(fresh: Tomato) -> None:
    data = fresh.ok("tomato", "init")
    settings = fresh.root / "app" / "settings.toml"
    assert data["settings"] == str(settings)
    text = settings.read_text()
    assert str(fresh.root / "data") in text and str(fresh.root / "log") in text
    devices = yaml.safe_load(fresh.devices_file.read_text())
    assert devices["pipelines"][0]["name"] == "pip-counter-*"
    # a second init refuses and keeps the file
    settings.write_text(text + "\n# mine\n")
    msg = fresh.fails("tomato", "init")
    assert "exists" in msg and "--force" in msg
    assert settings.read_text().endswith("# mine\n")


def test_commands_without_daemon_fail_cleanly(fresh: Tomato) -> None:
    for args in (
        ("tomato", "status"),
        ("ketchup", "status"),
        ("tomato", "stop"),
        ("tomato", "pipeline", "ready", "pip-counter-1"),
        ("passata", "status", "x"),
    ):
        msg = fresh.fails(*args)
        assert f"no tomato daemon answers on port {fresh.port}" in msg


def test_start_without_settings_fails_cleanly(fresh: Tomato) -> None:
    msg = fresh.fails("tomato", "start")
    assert "settings.toml" in msg and "tomato init" in msg


def test_start_with_bad_devices_file_names_the_entry(fresh: Tomato) -> None:
    fresh.init(
        {
            "devices": [
                {"name": "d", "driver": "example_counter", "address": "a", "channels": [1]}
            ],
            "pipelines": [
                {"name": "p", "devices": [{"role": "r", "device": "nope", "channel": 1}]}
            ],
        }
    )
    msg = fresh.fails("tomato", "start")
    assert "devices.yml" in msg and "'nope'" in msg and "'p'" in msg


def test_start_is_fast_and_answers_before_prefect(fresh: Tomato) -> None:
    fresh.init()
    t0 = time.monotonic()
    info = fresh.start()
    took = time.monotonic() - t0
    assert info["port"] == fresh.port
    assert info["prefect"]["ui_url"].startswith("http://127.0.0.1:")
    assert took < 10, f"tomato start took {took:.1f} s"
    # the daemon answers pipeline commands while Prefect may still be starting
    assert set(fresh.pipelines()) == {f"pip-counter-{i}" for i in range(1, 5)}
    msg = fresh.fails("tomato", "start")
    assert "already runs" in msg


def test_pipeline_rules_and_state_survive_restart(fresh: Tomato) -> None:
    fresh.init()
    fresh.start()
    # load only into an empty pipeline
    assert fresh.ok("tomato", "pipeline", "load", "pip-counter-1", "s1")["sampleid"] == "s1"
    msg = fresh.fails("tomato", "pipeline", "load", "pip-counter-1", "s2")
    assert "already holds sample 's1'" in msg
    assert fresh.pipelines()["pip-counter-1"]["sampleid"] == "s1"
    # ready is idempotent
    assert fresh.ok("tomato", "pipeline", "ready", "pip-counter-1")["ready"] is True
    assert fresh.ok("tomato", "pipeline", "ready", "pip-counter-1")["ready"] is True
    # eject marks not ready, and succeeds on an empty pipeline too
    ejected = fresh.ok("tomato", "pipeline", "eject", "pip-counter-1")
    assert ejected["sampleid"] is None and ejected["ready"] is False
    fresh.ok("tomato", "pipeline", "eject", "pip-counter-1")
    # unknown pipelines
    assert "'nope' does not exist" in fresh.fails("tomato", "pipeline", "ready", "nope")
    # state survives a restart
    fresh.ok("tomato", "pipeline", "load", "pip-counter-2", "kept")
    fresh.ok("tomato", "pipeline", "ready", "pip-counter-2")
    fresh.ok("tomato", "stop")
    fresh.start()
    pip = fresh.pipelines()["pip-counter-2"]
    assert (pip["sampleid"], pip["ready"], pip["jobid"]) == ("kept", True, None)


def test_status_sections(fresh: Tomato) -> None:
    fresh.init(REFERENCE / "devices" / "devices_psutil.json")
    fresh.start()
    pipelines = fresh.ok("tomato", "status", "pipelines")  # keyed by name, as in tomato 2.2
    assert list(pipelines) == ["pip-multidev"]
    assert set(pipelines["pip-multidev"]) >= {"name", "ready", "sampleid", "jobid"}
    drivers = fresh.ok("tomato", "status", "drivers")
    assert set(drivers) == {"example_counter", "psutil"}
    assert all(d["state"] == "running" and d["pid"] for d in drivers.values())
    devices = fresh.ok("tomato", "status", "devices")
    assert set(devices) == {"dev-counter", "dev-psutil"}
    comps = {c["role"]: c for c in fresh.ok("tomato", "status", "components").values()}
    assert comps["counter"]["capabilities"] == ["count", "random"]
    assert comps["psutil"]["capabilities"] == ["all_info", "cpu_info", "mem_info"]
    assert "unknown status section" in fresh.fails("tomato", "status", "nonsense")
    text = fresh.run("tomato", "status").out
    assert "Prefect UI: http://127.0.0.1:" in text and "pip-multidev" in text


@pytest.mark.parametrize("name", sorted(p.name for p in (REFERENCE / "devices").glob("*.json")))
def test_reference_devices_files_load(fresh: Tomato, name: str) -> None:
    from tomato_cli.models import expand_pipelines, load_devices

    cfg = load_devices(REFERENCE / "devices" / name, known_drivers={"example_counter", "psutil"})
    assert expand_pipelines(cfg)


def test_reload_applies_devices_file(fresh: Tomato) -> None:
    devices = REFERENCE / "devices"
    fresh.init(devices / "devices_reload_pipmod.json")
    fresh.start()
    fresh.ok("tomato", "pipeline", "load", "pip-counter", "s")
    comps = fresh.ok("tomato", "status", "components").values()
    assert {c["role"] for c in comps} == {"counter", "other"}
    fresh.devices_file.write_text((devices / "devices_reload_channel.json").read_text())
    changes = fresh.ok("tomato", "reload")
    assert changes["changed"] == ["pip-counter"]
    comps = fresh.ok("tomato", "status", "components").values()
    assert [(c["role"], c["channel"]) for c in comps] == [("counter", "2")]
    assert fresh.pipelines()["pip-counter"]["sampleid"] == "s"
    fresh.devices_file.write_text((devices / "devices_reload_pipdel.json").read_text())
    changes = fresh.ok("tomato", "reload")
    assert changes["removed"] == ["pip-counter"] and changes["added"] == ["pip-counter-new"]
    fresh.devices_file.write_text((devices / "devices_reload_driver.json").read_text())
    fresh.ok("tomato", "reload")
    drivers = fresh.ok("tomato", "status", "drivers")
    assert set(drivers) == {"psutil"}
    # a broken devices file is refused and changes nothing
    fresh.devices_file.write_text("devices: [")
    msg = fresh.fails("tomato", "reload")
    assert "malformed" in msg and "devices.yml" in msg
    assert set(fresh.pipelines()) == {"pip-counter"}


def test_two_daemons_do_not_interfere(fresh: Tomato, tmp_path_factory) -> None:
    other = Tomato(tmp_path_factory.mktemp("other"))
    try:
        fresh.init()
        other.init()
        a, b = fresh.start(), other.start()
        assert a["prefect"]["api_url"] != b["prefect"]["api_url"]
        fresh.ok("tomato", "pipeline", "load", "pip-counter-1", "only-here")
        assert other.pipelines()["pip-counter-1"]["sampleid"] is None
    finally:
        other.stop()


def test_passata(lab: Tomato) -> None:
    comp = "example_counter:(example-addr,4)"
    assert lab.ok("passata", "capabilities", comp) == ["count", "random"]
    attrs = lab.ok("passata", "attrs", comp)
    assert attrs["param"]["units"] == "s" and attrs["choice"]["options"] == ["red", "green", "blue"]
    assert lab.ok("passata", "set", comp, "param", "2 s")["value"] == 2.0
    assert lab.ok("passata", "get", "pip-counter-4.counter", "param") == {"param": 2.0}
    for value, reason in (("1 ms", "minimum"), ("wrong", "param"), ("3 kg", "param")):
        msg = lab.fails("passata", "set", comp, "param", value)
        assert reason in msg, msg
    assert "choice" in lab.fails("passata", "set", comp, "choice", "purple")
    assert lab.ok("passata", "get", comp, "param") == {"param": 2.0}  # nothing changed
    lab.ok("passata", "reset", comp)
    assert lab.ok("passata", "get", comp, "param", "choice") == {"param": 1.0, "choice": "green"}
    assert "does not exist" in lab.fails("passata", "status", "nope")
    status = lab.ok("passata", "status", "example-addr,4")
    assert status["running"] is False
    lab.ok("passata", "register", comp)
    assert json.dumps(lab.ok("passata", "constants", comp)) is not None


def test_prefect_shows_pool_and_pipelines(lab: Tomato) -> None:
    import httpx

    info = lab.ok("tomato", "status")["prefect"]
    api = info["api_url"]
    pool = httpx.get(f"{api}/work_pools/{info['work_pool']}").json()
    assert pool["name"] == info["work_pool"] and pool["status"] == "READY"
    limits = httpx.post(f"{api}/v2/concurrency_limits/filter", json={}).json()
    names = {lim["name"]: lim for lim in limits}
    for pipeline in lab.pipelines():
        assert names[f"pipeline:{pipeline}"]["limit"] == 1
