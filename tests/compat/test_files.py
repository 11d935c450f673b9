"""tomato 2.2's own files and dgbowl-schemas' test payloads, read by us and by tomato 2.2.

No daemon: these check the file formats (payloads of every version, the settings file
that 2.2's ``tomato init`` writes, the ``tomato_Job`` in results files) against the real
tomato 2.2 package, run as a subprocess of its own venv.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tests.compat.tomato22 import needs_tomato22, run22
from tests.reference import REFERENCE
from tomato_cli.models import Job, PayloadError, load_payload, load_settings, parse_payload
from tomato_cli.models.settings import unused_driver_keys
from tomato_cli.models.submit import complete_payload

SCHEMAS = REFERENCE / "payloads-schemas"
PAYLOADS = REFERENCE / "payloads"
TS = sorted(SCHEMAS.glob("ts?.yml")) if SCHEMAS.is_dir() else []
REF_PAYLOADS = sorted(PAYLOADS.glob("*.yml")) if PAYLOADS.is_dir() else []


# What ketchup submit of tomato 2.2 makes of a payload file: dgbowl-schemas' parse, its
# upgrades up to 2.2, and the output/snapshot paths set to the submit folder.
SUBMIT_22 = """
import json, sys, yaml
from pathlib import Path
from dgbowl_schemas.tomato import to_payload
out = {}
for name in json.load(sys.stdin):
    try:
        payload = to_payload(**yaml.full_load(Path(name).read_text()))
        while hasattr(payload, "update"):
            payload = payload.update()
    except Exception as exc:
        out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        continue
    if payload.settings.output.path is None:
        payload.settings.output.path = str(Path().resolve())
    if payload.settings.snapshot is not None and payload.settings.snapshot.path is None:
        payload.settings.snapshot.path = str(Path().resolve())
    out[name] = payload.model_dump(mode="json")
print(json.dumps(out))
"""


def _ours(path: Path, cwd: Path) -> dict:
    payload = complete_payload(load_payload(path), cwd, {"concat-datalab": {}})
    return json.loads(payload.model_dump_json())


@needs_tomato22
@pytest.mark.parametrize("folder", [SCHEMAS, PAYLOADS], ids=["dgbowl-schemas", "tomato"])
def test_payloads_become_what_tomato_22_makes_of_them(folder: Path) -> None:
    """Every test payload upgrades to the 2.2 payload that tomato 2.2 itself makes."""
    names = sorted(p.name for p in folder.glob("*.yml") if not p.name.endswith("_method.yml"))
    theirs = run22(SUBMIT_22, names, cwd=folder)
    compared = 0
    for name in names:
        if "error" in theirs[name]:
            # tomato 2.2 refuses it; we must refuse it with one line, or run it
            pytest.fail(f"tomato 2.2 refused {name}: {theirs[name]['error']}")
        assert _ours(folder / name, folder.resolve()) == theirs[name], name
        compared += 1
    assert compared == len(names) >= 12


@pytest.mark.parametrize("path", TS, ids=lambda p: p.name)
def test_schema_refs_describe_the_same_payload(path: Path) -> None:
    """dgbowl-schemas' ref.<ts>.json (the parsed payload) reads as the same 2.2 payload."""
    ref = json.loads((SCHEMAS / f"ref.{path.stem}.json").read_text())
    assert parse_payload(ref, folder=SCHEMAS) == load_payload(path)


def test_companion_files_are_found_from_any_folder(tmp_path: Path, monkeypatch) -> None:
    """samplefile/methodfile are looked for next to the payload, then in the current folder."""
    monkeypatch.chdir(tmp_path)
    ts3 = load_payload(SCHEMAS / "ts3.yml")
    assert ts3.sample.identifier == "some name" and ts3.sample.model_extra == {"capacity": 3.1415}
    ts4 = load_payload(SCHEMAS / "ts4.yml")
    assert [t.technique_name for t in ts4.method] == ["1", "2"]
    moved = tmp_path / "ts3.yml"
    moved.write_text((SCHEMAS / "ts3.yml").read_text())
    with pytest.raises(ValueError) as err:
        load_payload(moved)
    msg = str(err.value)
    assert "samplefile 'ts3_sample.json' not found in" in msg and "\n" not in msg
    (tmp_path / "ts3_sample.json").write_text("{}")
    with pytest.raises(ValueError, match="holds no 'sample' entry"):
        load_payload(moved)


def test_snapshot_interval_and_its_old_name() -> None:
    base = {"sample": {"identifier": "s"}, "method": [_task()]}
    old = parse_payload({**base, "version": "2.1", "sample": {"name": "s"}, "settings": {}})
    assert old.settings.snapshot is None
    for snapshot, seconds in (
        ({"interval": 10}, 10.0),
        ({"frequency": "1 min"}, 60.0),
        ({"path": "x"}, 3600.0),  # 2.1's default, where tomato 2.2 itself fails
    ):
        for version in ("2.1", "2.2"):
            data = {**base, "version": version, "settings": {"snapshot": snapshot}}
            if version == "2.1":
                data["sample"] = {"name": "s"}
            assert parse_payload(data).settings.snapshot.interval == seconds
    dumped = parse_payload({**base, "settings": {"snapshot": {"frequency": 5}}}).model_dump()
    assert dumped["settings"]["snapshot"] == {"interval": 5.0, "path": None, "prefix": None}
    with pytest.raises(ValueError, match="either 'interval' or 'frequency'"):
        parse_payload({**base, "settings": {"snapshot": {"interval": 5, "frequency": 5}}})


def test_0x_record_every_dt() -> None:
    step = {"device": "pstat", "technique": "OCV", "time": 60, "record_every_dt": 1}
    payload = parse_payload({"version": "0.2", "sample": {"name": "s"}, "method": [step]})
    assert payload.method[0].sampling_interval == 1.0 and payload.method[0].task_params == {}


def _task() -> dict:
    return {
        "component_role": "counter",
        "technique_name": "count",
        "max_duration": 1,
        "sampling_interval": 0.1,
    }


def test_unknown_repository_is_refused_in_one_line(tmp_path: Path) -> None:
    tsb = load_payload(SCHEMAS / "tsb.yml")
    with pytest.raises(ValueError) as err:
        complete_payload(tsb, tmp_path, {"default": {}})
    assert str(err.value) == (
        "settings.output.repositories: unknown repository 'concat-datalab' "
        "(the settings file's [repositories] has: default)"
    )
    done = complete_payload(tsb, tmp_path, {"concat-datalab": {"endpoint": "x"}})
    assert done.user.identifier == "https://orcid.org/0000-0000-1234-1234"
    assert done.settings.output.path == str(tmp_path)


def test_settings_file_of_tomato_22_init(tmp_path: Path) -> None:
    """The file 2.2's `tomato init` writes, with keys appended as its tests do, is read."""
    path = tmp_path / "settings.toml"
    path.write_text(
        (REFERENCE / "settings" / "settings-2.2.toml").read_text()
        + "example_counter.testpar = 1234\n"
    )
    settings = load_settings(path)
    assert settings.jobs.storage == Path("/home/user/.local/share/tomato/2.2/Jobs")
    assert settings.devices.config == Path("/home/user/.config/tomato/2.2/devices.yml")
    assert settings.repositories == {}
    assert settings.drivers == {
        "example_counter": {"idle_measurement_interval": 1, "lpp_timeout": 2, "testpar": 1234}
    }
    assert settings.unused == ["jobs.dbpath"]
    from drivers.example_counter import ExampleCounterDriver

    known = {"example_counter": ExampleCounterDriver.settings_keys}
    assert unused_driver_keys(settings.drivers, known) == [
        "drivers.example_counter.lpp_timeout",
        "drivers.example_counter.testpar",
    ]


def _job_with_snapshot() -> Job:
    payload = parse_payload(
        {
            "version": "2.1",
            "sample": {"name": "s-1", "colour": "red"},
            "method": [_task()],
            "settings": {"snapshot": {"frequency": 7, "prefix": "snap"}, "verbosity": "DEBUG"},
        }
    )
    payload = complete_payload(payload, "/tmp/somewhere", {})
    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    job = Job(id=12, payload=payload, status="r", submitted_at=at, launched_at=at, jobname="x")
    return job.ended("c", None, at=datetime(2026, 1, 2, 3, 5, 0, tzinfo=UTC))


@needs_tomato22
def test_tomato_22_reads_our_job() -> None:
    ours = _job_with_snapshot()
    theirs = run22(
        "import json, sys\nfrom tomato.models import Job\n"
        "job = Job.model_validate_json(json.load(sys.stdin))\n"
        "print(json.dumps(job.model_dump(mode='json')))",
        ours.model_dump_json(),
    )
    assert theirs["status"] == "c" and theirs["id"] == 12 and theirs["jobname"] == "x"
    assert theirs["completed_at"] == "2026-01-02 03:05:00+00:00"
    assert theirs["submitted_at"] == "2026-01-02 03:04:05.678901+00:00"
    snapshot = theirs["payload"]["settings"]["snapshot"]
    assert snapshot == {"interval": 7.0, "path": "/tmp/somewhere", "prefix": "snap"}
    assert theirs["payload"]["user"] == {"identifier": ours.payload.user.identifier}
    assert theirs["payload"] == json.loads(ours.payload.model_dump_json())


MAKE_JOB_22 = """
import json
from tomato.models import Job
payload = {
    "version": "2.2",
    "user": {"identifier": "someone", "group": "lab"},
    "sample": {"identifier": "s-2", "sample_is_parent": False},
    "settings": {"snapshot": {"interval": 30, "path": "/data"},
                 "output": {"path": "/out", "repositories": ["default"]}},
    "method": [{"component_role": "counter", "technique_name": "count",
                "max_duration": "2 min", "sampling_interval": 0.5, "task_name": "a"}],
}
job = Job(id=5, payload=payload, status="ce", pid=42, jobname="mine",
          submitted_at="2026-01-12 09:17:23.905153+00:00",
          launched_at="2026-01-12 09:17:24.373799+00:00",
          connected_at="2026-01-12 09:17:25.768073+00:00",
          completed_at="2026-01-12 09:17:27.925634+00:00",
          jobpath="/jobs/5", respath="/out/results.5.nc", snappath="/data/snapshot.5.nc")
print(json.dumps(job.model_dump_json()))
"""


@needs_tomato22
def test_we_read_tomato_22s_job() -> None:
    theirs = run22(MAKE_JOB_22)
    job = Job.model_validate_json(theirs)
    assert job.status == "ce" and job.pid == 42 and job.jobname == "mine"
    assert job.completed_at == datetime(2026, 1, 12, 9, 17, 27, 925634, tzinfo=UTC)
    snapshot = job.payload.settings.snapshot
    assert (snapshot.interval, snapshot.path) == (30.0, "/data")
    assert job.payload.user.model_extra == {"group": "lab"}
    assert job.payload.method[0].max_duration == 120.0
    # written back, tomato 2.2 reads the same job
    back = run22(
        "import json, sys\nfrom tomato.models import Job\n"
        "print(json.dumps(Job.model_validate_json(json.load(sys.stdin)).model_dump_json()))",
        job.model_dump_json(),
    )
    assert json.loads(back) == json.loads(theirs)


@needs_tomato22
def test_tomato_22_reads_our_final_file(tmp_path: Path) -> None:
    """A final file of ours opens in tomato 2.2's own environment (h5netcdf, no netCDF4)."""
    from tomato_cli.models import Component
    from tomato_cli.store import JobStore
    from tomato_cli.store.netcdf import write_results

    job = _job_with_snapshot()
    comp = Component.make("example_counter", "dev", "addr", "1", "counter")
    with JobStore(tmp_path / "job") as store:
        store.append("counter", [1.7e9, 1.7e9 + 1], {"val": [0, 1], "choice": ["a", "b"]}, {})
        write_results(
            tmp_path / "r.nc",
            store,
            job.model_dump_json(),
            {"counter": comp.model_dump_json()},
            "x",
        )
    seen = run22(
        "import json, sys, xarray as xr\nfrom tomato.models import Job, Component\n"
        "dt = xr.open_datatree(json.load(sys.stdin))\n"
        "job = Job.model_validate_json(dt.attrs['tomato_Job'])\n"
        "comp = Component.model_validate_json(dt['counter'].attrs['tomato_Component'])\n"
        "uts = dt['counter']['uts']\n"
        "print(json.dumps([job.status, job.completed_at, str(uts.dtype), float(uts[1] - uts[0]),"
        " comp.name, list(dt['counter']['choice'].values)]))",
        str(tmp_path / "r.nc"),
    )
    assert seen == ["c", "2026-01-02 03:05:00+00:00", "float64", 1.0, comp.name, ["a", "b"]]


def test_reference_payloads_all_read() -> None:
    for path in REF_PAYLOADS + TS:
        payload = load_payload(path)
        assert yaml.safe_load(path.read_text())["version"] is not None
        assert payload.version == "2.2"


@needs_tomato22
def test_tomato_22_refuses_payloads_with_conditions(tmp_path: Path) -> None:
    """A payload that needs a condition never runs without it: tomato 2.2 refuses our
    version, and a 2.2 payload with the new keys (we refuse that one too)."""
    base = {
        "sample": {"identifier": "s"},
        "user": {"identifier": "u"},
        "method": [
            {
                "component_role": "counter",
                "technique_name": "count",
                "max_duration": 10,
                "sampling_interval": 1,
                "stop_when": "val >= 5",
            }
        ],
    }
    ours = tmp_path / "ours.yml"
    ours.write_text(yaml.safe_dump({"version": "tomato-prefect-1", **base}))
    old = tmp_path / "old.yml"
    old.write_text(yaml.safe_dump({"version": "2.2", **base}))
    theirs = run22(SUBMIT_22, ["ours.yml", "old.yml"], cwd=tmp_path)
    assert "error" in theirs["ours.yml"] and "error" in theirs["old.yml"], theirs
    assert load_payload(ours).method[0].stop_when == ["val >= 5"]
    with pytest.raises(PayloadError, match="stop_when is new in tomato-prefect"):
        load_payload(old)
