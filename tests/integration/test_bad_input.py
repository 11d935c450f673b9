"""Every malformed input gets a one-line reason, a non-zero exit, and changes nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.integration.harness import Tomato, counter_payload


def payload_with(**changes) -> Callable[[Path], Path]:
    """A valid counter payload with one task field changed."""

    def make(folder: Path) -> Path:
        payload = counter_payload("bad-input")
        payload["method"][0].update(changes)
        path = folder / "payload.yml"
        path.write_text(yaml.safe_dump(payload))
        return path

    return make


def settings_with(**changes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        payload = counter_payload("bad-input")
        payload["settings"].update(changes)
        path = folder / "payload.yml"
        path.write_text(yaml.safe_dump(payload))
        return path

    return make


def raw(content: bytes, name: str = "payload.yml") -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(content)
        return path

    return make


PAYLOADS: list[tuple[str, Callable[[Path], Path], str]] = [
    ("malformed YAML", raw(b"version: '2.2'\nmethod: [\n"), "malformed"),
    ("malformed JSON", raw(b'{"version": "2.2", "method": [', "payload.json"), "malformed"),
    ("not a mapping", raw(b"- just\n- a list\n"), "mapping"),
    ("empty file", raw(b""), "empty"),
    ("non-UTF-8", raw(b"version: '2.2'\nsample: {identifier: \xff\xfe}\n"), "UTF-8"),
    ("huge file", raw(b"# " + b"x" * (2 << 20) + b"\n"), "limit"),
    (
        "unknown version",
        raw(b"version: '9.9'\nsample: {identifier: a}\nmethod: []\n"),
        "unknown payload version '9.9'",
    ),
    (
        "missing sample",
        raw(
            b"version: '2.2'\nmethod: [{component_role: counter, "
            b"technique_name: count, max_duration: 1, sampling_interval: 1}]\n"
        ),
        "sample",
    ),
    ("missing method", raw(b"version: '2.2'\nsample: {identifier: a}\n"), "method"),
    ("missing field", payload_with(technique_name=None), "technique_name"),
    ("wrong type", payload_with(max_duration=[1, 2]), "max_duration"),
    ("garbage duration", payload_with(max_duration="soon"), "max_duration"),
    ("not a time", payload_with(max_duration="3 kg"), "max_duration"),
    ("negative duration", payload_with(max_duration=-1), "max_duration"),
    ("absurd duration", payload_with(max_duration="1000 years"), "max_duration"),
    ("zero interval", payload_with(sampling_interval=0), "sampling_interval"),
    (
        "interval the driver cannot honour",
        payload_with(sampling_interval="0.5 ms"),
        "sampling_interval",
    ),
    ("unknown field", payload_with(colour="red"), "colour"),
    ("unknown role", payload_with(component_role="nope"), "role 'nope'"),
    ("unknown technique", payload_with(technique_name="fly"), "fly"),
    ("unknown task param", payload_with(task_params={"speed": 3}), "speed"),
    ("task param out of range", payload_with(task_params={"param": "1 ms"}), "minimum"),
    ("unknown trigger", payload_with(start_with_task_name="ghost"), "ghost"),
    ("output path with ..", settings_with(output={"path": "../../elsewhere"}), "'..'"),
    ("output into /etc", settings_with(output={"path": "/etc/tomato"}), "system directory"),
    ("output prefix with /", settings_with(output={"prefix": "a/b"}), "prefix"),
    (
        "snapshot path into /usr",
        settings_with(snapshot={"frequency": 5, "path": "/usr/x"}),
        "system directory",
    ),
    ("negative snapshot frequency", settings_with(snapshot={"frequency": -5}), "frequency"),
    ("bad verbosity", settings_with(verbosity="LOUD"), "verbosity"),
]


def _state(lab: Tomato) -> tuple:
    jobs = lab.ok("ketchup", "status")
    pipelines = lab.ok("tomato", "status", "pipelines")
    return (
        len(jobs),
        [(j["id"], j["status"]) for j in jobs if j["status"] in ("q", "qw")],
        [(p["name"], p["sampleid"], p["ready"]) for p in pipelines.values()],
    )


@pytest.mark.parametrize("case, make, reason", PAYLOADS, ids=[c[0] for c in PAYLOADS])
def test_bad_payload_is_refused(lab: Tomato, tmp_path: Path, case: str, make, reason: str) -> None:
    before = _state(lab)
    path = make(tmp_path)
    msg = lab.fails("ketchup", "submit", str(path), cwd=tmp_path)
    assert reason in msg, f"{case}: {msg}"
    assert str(path.name) in msg or "method" in msg or "role" in msg, msg
    assert _state(lab) == before
    assert not list(tmp_path.glob("*.nc"))


COMMANDS: list[tuple[tuple[str, ...], str]] = [
    (("ketchup", "submit", "no-such-file.yml"), "cannot be read"),
    (("ketchup", "status", "99999"), "job 99999 does not exist"),
    (("ketchup", "cancel", "99999"), "job 99999 does not exist"),
    (("ketchup", "snapshot", "99999"), "job 99999 does not exist"),
    (("ketchup", "status", "abc"), "valid integer"),
    (("ketchup", "nonsense"), "No such command"),
    (("tomato", "pipeline", "load", "no-such-pipeline", "s"), "does not exist"),
    (("tomato", "pipeline", "eject", "no-such-pipeline"), "does not exist"),
    (("tomato", "status", "everything"), "unknown status section"),
    (("passata", "get", "no-such-component", "param"), "does not exist"),
    (("passata", "get", "example-addr,4", "nope"), "nope"),
    (("passata", "set", "example-addr,4", "max", "many"), "max"),
]


@pytest.mark.parametrize("args, reason", COMMANDS, ids=[" ".join(c[0]) for c in COMMANDS])
def test_bad_command_is_refused(lab: Tomato, args: tuple[str, ...], reason: str) -> None:
    before = _state(lab)
    msg = lab.fails(*args)
    assert reason in msg, msg
    assert _state(lab) == before


def test_cancelling_a_finished_job_is_refused(lab: Tomato, tmp_path: Path) -> None:
    lab.prepare("pip-counter-4", "finished-job")
    jobid = lab.submit(counter_payload("finished-job", 0.3, 0.1), cwd=tmp_path)
    assert lab.wait_job(jobid)["status"] == "c"
    msg = lab.fails("ketchup", "cancel", str(jobid))
    assert f"{jobid} (c)" in msg
    assert lab.job(jobid)["status"] == "c"


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"datadir = [", "malformed TOML"),
        (b"datadir = 3\n", "datadir"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
def test_bad_settings_file_is_refused(fresh: Tomato, content: bytes, reason: str) -> None:
    fresh.init()
    (fresh.root / "app" / "settings.toml").write_bytes(content)
    msg = fresh.fails("tomato", "start")
    assert reason in msg and "settings.toml" in msg, msg
    assert "no tomato daemon answers" in fresh.fails("tomato", "status")


def _alias_bomb(levels: int = 9) -> str:
    """A few hundred bytes of YAML that stand for 9**levels values ("billion laughs")."""
    lines = ["a0: &a0 [" + ", ".join(['"xxxxxxxxxx"'] * 9) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines)


def _bomb_in_task_params(folder: Path) -> Path:
    """The bomb's anchors under an extension key, used as a task parameter's value."""
    payload = yaml.safe_dump(counter_payload("bad-input")).replace(
        "technique_name: count", "technique_name: count\n  task_params: {choice: *a8}"
    )
    path = folder / "payload.yml"
    path.write_text("x-anchors:\n    " + _alias_bomb().replace("\n", "\n    ") + "\n" + payload)
    return path


PATHOLOGICAL: list[tuple[str, Callable[[Path], Path], str]] = [
    ("power tower in a task param", payload_with(task_params={"param": "1 s**9**9**9"}), "param"),
    (
        "nested powers in a task param",
        payload_with(task_params={"param": "1 km**(9**(9**9))"}),
        "param",
    ),
    ("power tower as a duration", payload_with(max_duration="1 s**9**9**9"), "max_duration"),
    ("YAML alias bomb", raw(_alias_bomb().encode()), "aliases"),
    ("YAML alias bomb in task params", _bomb_in_task_params, "aliases"),
]


def _drivers(lab: Tomato) -> dict[str, tuple[int, int]]:
    drivers = lab.ok("tomato", "status", "drivers").values()  # keyed by name, as in tomato 2.2
    return {d["name"]: (d["pid"], d["restarts"]) for d in drivers}


@pytest.mark.parametrize("case, make, reason", PATHOLOGICAL, ids=[c[0] for c in PATHOLOGICAL])
def test_every_user_value_has_a_bounded_cost(
    lab: Tomato, tmp_path: Path, case: str, make, reason: str
) -> None:
    """A pathological value is refused quickly and never reaches (or stops) a driver host."""
    before, drivers = _state(lab), _drivers(lab)
    path = make(tmp_path)
    t0 = time.monotonic()
    msg = lab.fails("ketchup", "submit", str(path), cwd=tmp_path)
    # two CLI runs: 1-2 s each, up to ~5 s each when another process keeps both cores
    # busy; evaluating any of these values would take minutes or never end: 30 s
    assert time.monotonic() - t0 < 30, "two CLI runs took too long"
    assert reason in msg, f"{case}: {msg}"
    assert _state(lab) == before
    assert _drivers(lab) == drivers  # no driver host was hung, killed or restarted


@pytest.mark.parametrize("value", ["1 s**9**9**9", "1 km**(9**(9**9))", "1 " + "(s)**9" * 15])
def test_passata_set_has_a_bounded_cost(lab: Tomato, value: str) -> None:
    drivers = _drivers(lab)
    t0 = time.monotonic()
    msg = lab.fails("passata", "set", "example-addr,4", "param", value)
    assert time.monotonic() - t0 < 30  # as above: two CLI runs, not an endless evaluation
    assert "param" in msg, msg
    assert lab.ok("passata", "get", "example-addr,4", "param") == {"param": 1.0}
    assert _drivers(lab) == drivers


def test_devices_file_alias_bomb_is_refused(fresh: Tomato) -> None:
    fresh.init()
    fresh.devices_file.write_text(_alias_bomb() + "\n" + fresh.devices_file.read_text())
    t0 = time.monotonic()
    msg = fresh.fails("tomato", "start")
    # two CLI runs that read the file and stop (seconds, more on a busy machine); expanding
    # the bomb would take minutes or exhaust the memory: 60 s
    assert time.monotonic() - t0 < 60
    assert "devices file" in msg and "aliases" in msg, msg
