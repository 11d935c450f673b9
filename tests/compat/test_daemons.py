"""tomato 2.2's example files and dgbowl-schemas' payloads through our CLI, and a 2.2-style
lab script run unchanged against both tools (one daemon per tool for the session)."""

from __future__ import annotations

import json
import subprocess
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import xarray as xr

from tests.compat.tomato22 import PYTHON, run22
from tests.compat.world import World
from tests.reference import REFERENCE
from tomato_cli.models import load_payload

pytestmark = pytest.mark.slow
PAYLOADS = REFERENCE / "payloads"
SCHEMAS = REFERENCE / "payloads-schemas"

# payload -> pipeline it runs on (its sample is loaded there)
RUNS = {
    PAYLOADS / "counter_1_0.1.yml": "pip-counter-1",
    PAYLOADS / "counter_5_0.2.yml": "pip-counter-2",
    PAYLOADS / "counter_multistep.yml": "pip-counter-3",
    PAYLOADS / "counter_output_path.yml": "pip-counter-4",
    PAYLOADS / "counter_output_prefix.yml": "pip-counter-5",
    PAYLOADS / "counter_snapshot.yml": "pip-counter-6",
    PAYLOADS / "counter_stresstest.yml": "pip-counter-7",
    PAYLOADS / "rocrate_1_0.1.yml": "pip-counter-8",
    SCHEMAS / "ts7.yml": "pip-counter-9",
    SCHEMAS / "ts8.yml": "pip-counter-10",
    SCHEMAS / "ts0.yml": "pip-worker-1",
    SCHEMAS / "ts2.yml": "pip-worker-2",
    SCHEMAS / "ts3.yml": "pip-worker-3",
    SCHEMAS / "ts5.yml": "pip-worker-4",
    SCHEMAS / "ts6.yml": "pip-worker-5",
    PAYLOADS / "counter_multidev.yml": "pip-multidev-1",
    PAYLOADS / "counter_multistep_multidev.yml": "pip-multidev-2",
    SCHEMAS / "ts9.yml": "pip-multidev-3",
    PAYLOADS / "psutil_1_0.1.yml": "pip-psutil-1",
    PAYLOADS / "psutil_counter.yml": "pip-psutil-2",
    PAYLOADS / "psutil_counter_with_task_start.yml": "pip-psutil-3",
    PAYLOADS / "psutil_counter_with_task_stop.yml": "pip-psutil-4",
}
# accepted, but too long for the suite: queued, then cancelled
ACCEPTED = [
    PAYLOADS / "counter_20_1.yml",
    PAYLOADS / "counter_20_5.yml",
    PAYLOADS / "counter_60_0.1.yml",
    SCHEMAS / "tsa.yml",
    SCHEMAS / "tsb.yml",
]
# refused at submit, with one line: the reason
REFUSED = {
    PAYLOADS / "counter_invalid_1.yml": "unknown technique 'unknown'",
    PAYLOADS / "counter_invalid_2.yml": "param",
    PAYLOADS / "counter_invalid_3.yml": "param",
    PAYLOADS / "counter_invalid_4.yml": "unknown",
    SCHEMAS / "ts1.yml": "sequential",
    SCHEMAS / "ts4.yml": "'1'",
}


@pytest.fixture(scope="module")
def ran(worlds: dict[str, World], checkout: Path) -> dict[Path, dict]:
    """Every runnable payload, all at once on their own pipelines, submitted from the
    driver checkout; returns each payload's job (ketchup status -y) as it ended."""
    ours = worlds["ours"]
    with ThreadPoolExecutor(4) as pool:  # CLI calls in parallel: a fifth of the time
        samples = {path: load_payload(path).sample.identifier for path in RUNS}
        list(pool.map(lambda p: ours.ok("tomato", "pipeline", "load", RUNS[p], samples[p]), RUNS))
        list(pool.map(lambda p: ours.ok("tomato", "pipeline", "ready", RUNS[p]), RUNS))
        submitted = pool.map(lambda p: ours.ok("ketchup", "submit", str(p), cwd=checkout), RUNS)
        ids = {path: int(job["id"]) for path, job in zip(RUNS, submitted, strict=True)}
    jobs = ours.wait_jobs(list(ids.values()), timeout=240)
    return {path: jobs[jobid] for path, jobid in ids.items()}


def test_started_on_a_22_settings_file_from_a_driver_checkout(
    worlds: dict[str, World], checkout: Path, ran: dict[Path, dict]
) -> None:
    """2.2's settings file is accepted as it is, unused keys warned about in one line;
    every process of ours runs from the checkout without importing its packages (after
    jobs ran: a job runner is started for ready pipelines and queued jobs only)."""
    ours = worlds["ours"]
    warnings = [line for line in ours.started.err.splitlines() if line.strip()]
    assert warnings == [
        f"warning: settings file {ours.app / 'settings.toml'}: not used by tomato-prefect, "
        "ignored: jobs.dbpath, drivers.example_counter.lpp_timeout"
    ]
    status = ours.ok("tomato", "status")
    assert status["status"] == "running" and status["port"] == ours.port
    assert status["drvs"]["example_counter"]["settings"]["idle_measurement_interval"] == 1
    assert status["settings_file"] == str(ours.app / "settings.toml")
    assert status["settings"]["jobs"]["storage"] == str(ours.root / "data" / "Jobs")
    assert set(status["cmps"]) == {c["name"] for c in status["components"]}
    daemon = psutil.Process(status["pid"])
    procs = [daemon, *daemon.children()]
    started = {arg for p in procs for arg in p.cmdline() if "." in arg and "/" not in arg}
    # the daemon, its Prefect server, both driver hosts and a job runner
    assert {"tomato_cli.daemon", "tomato_cli.orchestration.prefect_server"} <= started
    assert {"drivers.host", "flows.runner"} <= started
    for proc in procs:
        assert Path(proc.cwd()) == checkout
        assert proc.cmdline()[1] == "-P", proc.cmdline()


def test_idle_measurements_every_interval(worlds: dict[str, World]) -> None:
    """example_counter.idle_measurement_interval = 1 (2.2's setting): passata status shows
    a fresh idle measurement each second."""
    ours = worlds["ours"]
    first = ours.ok("passata", "status", "pip-counter-11.counter")
    time.sleep(2.2)
    second = ours.ok("passata", "status", "pip-counter-11.counter")
    assert first["idle"] and second["idle_uts"] - first["idle_uts"] >= 1.0
    assert time.time() - second["idle_uts"] < 2.5


def test_reference_payloads_run_and_say_how_they_ended(
    worlds: dict[str, World], ran: dict[Path, dict], checkout: Path
) -> None:
    failed = {p.name: (j["status"], j["error"]) for p, j in ran.items() if j["status"] != "c"}
    assert not failed
    files = []
    by_file: dict[str, list[int]] = {}  # ts2 and ts5 both write outfile.nc: the last stays
    for job in ran.values():
        by_file.setdefault(job["respath"], []).append(job["id"])
    for path, job in ran.items():
        respath = Path(job["respath"])
        assert respath.is_file(), path.name
        if str(respath) in files:
            continue
        with xr.open_datatree(respath) as dt:
            meta = json.loads(dt.attrs["tomato_Job"])
            assert meta["id"] in by_file[job["respath"]], path.name
            assert (meta["status"], meta["error"]) == ("c", None)
            assert meta["pid"] and meta["connected_at"] and meta["launched_at"]
            assert meta["completed_at"] is not None
            assert meta["payload"]["user"]["identifier"]
            for role in {t["component_role"] for t in meta["payload"]["method"]}:
                uts = dt[role]["uts"]
                assert uts.dtype == "float64" and uts.size > 0, (path.name, role)
        files.append(str(respath))
    # where 2.2 puts them: the submit folder, or the payload's output path / prefix
    assert Path(ran[PAYLOADS / "counter_output_path.yml"]["respath"]).parent == (
        checkout / "newfolder"
    )
    assert Path(ran[PAYLOADS / "counter_output_prefix.yml"]["respath"]).name == "data.nc"
    assert Path(ran[SCHEMAS / "ts2.yml"]["respath"]).name == "outfile.nc"
    assert Path(ran[PAYLOADS / "counter_snapshot.yml"]["snappath"]).is_file()
    # tomato 2.2 reads the tomato_Job of every final file
    seen = run22(
        "import json, sys, xarray as xr\nfrom tomato.models import Job\nout = []\n"
        "for path in json.load(sys.stdin):\n"
        "    with xr.open_datatree(path) as dt:\n"
        "        job = Job.model_validate_json(dt.attrs['tomato_Job'])\n"
        "    out.append([job.status, job.completed_at is not None])\n"
        "print(json.dumps(out))",
        files,
    )
    assert seen == [["c", True]] * len(files)


def test_rocrate_next_to_the_results(ran: dict[Path, dict]) -> None:
    """rocrate_1_0.1 names the 'default' repository (set in [repositories]): a crate zip."""
    job = ran[PAYLOADS / "rocrate_1_0.1.yml"]
    crate = Path(job["respath"]).with_suffix(".zip")
    assert job["cratepath"] == str(crate)
    with zipfile.ZipFile(crate) as zf:
        names = set(zf.namelist())
        meta = json.loads(zf.read("ro-crate-metadata.json"))
        inner = json.loads(zf.read("tomato_Job.json"))
    assert names == {"ro-crate-metadata.json", Path(job["respath"]).name, "tomato_Job.json"}
    graph = {e["@id"]: e for e in meta["@graph"]}
    assert graph["user.identifier"]["@type"] == "Person"
    assert graph["rocrate_1_0.1"]["@type"] == "RepositoryObject"
    assert graph[Path(job["respath"]).name]["encodingFormat"] == "application/netcdf"
    assert inner["status"] == "c" and inner["id"] == job["id"]


def test_too_long_payloads_are_accepted_and_cancelled(
    worlds: dict[str, World], ran: dict[Path, dict], checkout: Path
) -> None:
    ours = worlds["ours"]
    ids = [int(ours.ok("ketchup", "submit", str(p), cwd=checkout)["id"]) for p in ACCEPTED]
    ours.ok("ketchup", "cancel", *map(str, ids))
    jobs = ours.wait_jobs(ids, timeout=60)
    assert {j["status"] for j in jobs.values()} == {"cd"}


@pytest.mark.parametrize("path", list(REFUSED), ids=lambda p: p.name)
def test_payloads_that_cannot_run_are_refused(
    worlds: dict[str, World], path: Path, checkout: Path
) -> None:
    ours = worlds["ours"]
    before = ours.ok("ketchup", "status")
    res = ours.run("ketchup", "submit", str(path), cwd=checkout)
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert res.code == 1 and len(lines) == 1 and "Traceback" not in res.err, res.err
    assert REFUSED[path] in lines[0] and str(path) in lines[0], lines[0]
    assert ours.ok("ketchup", "status") == before  # nothing queued, nothing changed


def test_cli_surface_of_22(worlds: dict[str, World], ran: dict[Path, dict], tmp_path: Path):
    ours = worlds["ours"]
    for app in ("tomato", "ketchup", "passata"):
        res = ours.run(app, "--version")
        assert res.code == 0 and res.out.startswith(f"{app} version ")
    assert ours.ok("tomato", "status", "tomato")["pips"]
    assert set(ours.ok("tomato", "status", "-v", "-q", "--timeout", "5000")["pips"]) == set(
        ours.ok("tomato", "status", "pipelines")
    )
    a, b = (ran[PAYLOADS / n]["id"] for n in ("counter_1_0.1.yml", "counter_multistep.yml"))
    data = ours.ok("ketchup", "snapshot", str(a), str(b), cwd=tmp_path)
    assert data["paths"] == [str(tmp_path / f"snapshot.{i}.nc") for i in (a, b)]
    assert all(Path(p).is_file() for p in data["paths"])
    comp = "pip-counter-11.counter"
    ours.ok("passata", "set", comp, "max", "20")
    assert ours.ok("passata", "get", comp, "max", "min") == {"max": 20.0, "min": 0.0}
    assert ours.ok("passata", "reset", comp, "-f")  # nothing runs: reset as usual
    assert ours.ok("passata", "get", comp, "max") == {"max": 10.0}


def test_force_reset_of_a_running_component(worlds: dict[str, World], checkout: Path) -> None:
    ours = worlds["ours"]
    ours.prepare("pip-counter-11", "forced")
    payload = checkout / "forced.yml"
    payload.write_text(
        json.dumps(
            {
                "version": "2.2",
                "sample": {"identifier": "forced"},
                "method": [
                    {
                        "component_role": "counter",
                        "technique_name": "count",
                        "max_duration": 60,
                        "sampling_interval": 0.1,
                    }
                ],
            }
        )
    )
    jobid = int(ours.ok("ketchup", "submit", str(payload), cwd=checkout)["id"])
    deadline = time.monotonic() + 60
    while ours.jobs(jobid)[jobid]["status"] != "r" and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)
    res = ours.run("passata", "reset", "pip-counter-11.counter")
    assert res.code == 1 and "used by running job" in res.err
    ours.ok("passata", "reset", "pip-counter-11.counter", "-f")
    job = ours.wait_jobs([jobid], timeout=30)[jobid]
    assert job["status"] == "c"  # its step ended there; its data is kept
    with xr.open_datatree(job["respath"]) as dt:
        assert 5 <= dt["counter"]["uts"].size < 300


def test_a_22_lab_script_runs_unchanged_on_both(worlds: dict[str, World], tmp_path: Path):
    """The same script, with tomato 2.2's python (a 2.2 user's analysis environment), against
    each tool: it sees the same shapes and the same outcome."""
    payload = tmp_path / "payload.yml"
    payload.write_text(
        "version: '2.2'\nsample:\n  identifier: script-sample\nuser:\n  identifier: me\n"
        "method:\n  - component_role: counter\n    technique_name: count\n"
        "    max_duration: 2\n    sampling_interval: 0.2\n"
    )
    script = Path(__file__).with_name("lab_script.py")
    seen = {}
    for kind, pipeline in (("ours", "pip-counter-11"), ("theirs", "pip-counter-1")):
        world = worlds[kind]
        (tmp_path / kind).mkdir()
        proc = subprocess.run(
            [str(PYTHON), str(script), str(world.port), pipeline, str(payload), f"job-{kind}"],
            capture_output=True,
            text=True,
            env=world.env,
            cwd=tmp_path / kind,
            timeout=240,
        )
        assert proc.returncode == 0, f"{kind}: {proc.stdout} {proc.stderr[-3000:]}"
        seen[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
    ours, theirs = seen["ours"], seen["theirs"]
    assert ours["status"] == theirs["status"] == "c"
    assert ours["uts_dtype"] == theirs["uts_dtype"] == "float64"
    assert abs(ours["samples"] - theirs["samples"]) <= 2
    samples = ours.pop("samples"), theirs.pop("samples")
    # ours frees the pipeline with the job's end; 2.2 a moment later (its script polls)
    assert ours.pop("freed_at_once") is True
    theirs.pop("freed_at_once")
    assert ours == theirs, samples


def _bad_payloads(folder: Path) -> dict[str, Path]:
    base = (
        "version: '2.2'\nsample: {identifier: s}\nmethod:\n  - {component_role: counter, "
        "technique_name: count, max_duration: 1, sampling_interval: 0.1}\n"
    )
    files = {
        "repository": base + "settings: {output: {repositories: [nope]}}\n",
        "samplefile": "version: '0.1'\nsamplefile: missing.json\nmethod: []\n",
        "snapshot": base + "settings: {snapshot: {interval: 5, frequency: 5}}\n",
    }
    out = {}
    for name, text in files.items():
        out[name] = folder / f"{name}.yml"
        out[name].write_text(text)
    return out


BAD = [
    (("ketchup", "search", "no-such-name"), "no job matching 'no-such-name' found"),
    (("ketchup", "snapshot", "1", "99999"), "job 99999 does not exist"),
    (("passata", "get", "pip-counter-11.counter", "max", "nope"), "nope"),
    (("passata", "reset", "-f", "nope"), "component 'nope' does not exist"),
    (("tomato", "init", "--force", "--from", "/nonexistent/2.2"), "does not exist"),
    (("tomato", "status", "--timeout", "soon"), "Invalid value for '--timeout'"),
    (("ketchup", "submit", "{repository}"), "unknown repository 'nope'"),
    (("ketchup", "submit", "{samplefile}"), "samplefile 'missing.json' not found"),
    (("ketchup", "submit", "{snapshot}"), "either 'interval' or 'frequency'"),
]


@pytest.mark.parametrize(
    "args, reason", BAD, ids=[" ".join(b[0][:2]) + f"-{i}" for i, b in enumerate(BAD)]
)
def test_bad_input_to_the_22_surface(
    worlds: dict[str, World], ran: dict[Path, dict], tmp_path: Path, args: tuple, reason: str
) -> None:
    """One clean line, a non-zero exit, and nothing changed (no job, no file, no setting)."""
    ours = worlds["ours"]
    files = _bad_payloads(tmp_path)
    args = tuple(str(files[a[1:-1]]) if a.startswith("{") else a for a in args)
    if args[:2] == ("tomato", "init"):
        args = (*args, "-A", str(ours.app))
    before = ours.ok("ketchup", "status"), (ours.app / "settings.toml").read_text()
    for yaml_flag in ((), ("-y",)):
        res = ours.run(*args, *yaml_flag, cwd=tmp_path)
        assert res.code != 0 and "Traceback" not in res.out + res.err, res.err
        if yaml_flag:
            assert res.doc["success"] is False and reason in res.doc["msg"]
        else:
            lines = [line for line in res.err.splitlines() if line.strip()]
            assert len(lines) == 1 and reason in lines[0], res.err
    assert (ours.ok("ketchup", "status"), (ours.app / "settings.toml").read_text()) == before
    assert not list(tmp_path.glob("*.nc"))
