"""Jobs end to end: ketchup submit -> Prefect flow run -> NetCDF, on a real daemon."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tests.integration.harness import Tomato, counter_payload
from tests.integration.waits import wait_stored
from tests.reference import REFERENCE
from tomato_cli.models import Component, Job

PAYLOADS = REFERENCE / "payloads"


def prefect_run(lab: Tomato, job: dict) -> dict:
    import httpx

    api = lab.ok("tomato", "status")["prefect"]["api_url"]
    return httpx.get(f"{api}/flow_runs/{job['flow_run_id']}").json()


def task_runs(lab: Tomato, job: dict) -> list[dict]:
    import httpx

    api = lab.ok("tomato", "status")["prefect"]["api_url"]
    body = {"task_runs": {"flow_run_id": {"any_": [job["flow_run_id"]]}}}
    return httpx.post(f"{api}/task_runs/filter", json=body).json()


def pipeline_slot(lab: Tomato, pipeline: str) -> int:
    import httpx

    api = lab.ok("tomato", "status")["prefect"]["api_url"]
    return httpx.get(f"{api}/v2/concurrency_limits/pipeline:{pipeline}").json()["active_slots"]


def open_results(path: Path) -> xr.DataTree:
    return xr.open_datatree(path, engine="netcdf4")


def test_single_step_job_writes_reference_layout(lab: Tomato, tmp_path: Path) -> None:
    lab.prepare("pip-counter-1", "counter_1_0.1")
    jobid = lab.submit(PAYLOADS / "counter_1_0.1.yml", cwd=tmp_path)
    job = lab.wait_job(jobid)
    assert job["status"] == "c", job
    assert job["pipeline"] == "pip-counter-1"
    path = tmp_path / f"results.{jobid}.nc"
    assert Path(job["respath"]) == path
    with open_results(path) as dt:
        assert dt.attrs["tomato_version"]
        back = Job.model_validate_json(dt.attrs["tomato_Job"])
        assert back.id == jobid and back.payload.sample.identifier == "counter_1_0.1"
        # the final file tells how the job ended, as the daemon records it
        assert back.status == "c" and back.error is None and back.completed_at is not None
        # the job stamps its end before it writes its results (a Prefect task: a few API
        # calls) and tells the daemon, which stamps its own: under a second apart on an idle
        # machine, seconds on a busy one; 30 s
        assert (
            abs((back.completed_at - datetime.fromisoformat(job["completed_at"])).total_seconds())
            < 30
        )
        node = dt["counter"]
        comp = Component.model_validate_json(node.attrs["tomato_Component"])
        assert (comp.role, comp.device, comp.channel) == ("counter", "dev-counter", "1")
        assert comp.capabilities == ["count", "random"]
        assert {"val", "max", "min", "param", "choice"} <= set(node.data_vars)
        assert node["param"].attrs["units"] == "s"
        for name, var in node.data_vars.items():
            if var.dtype.kind in "iuf":
                assert "units" in var.attrs, name
        assert 9 <= node.sizes["uts"] <= 11
    with xr.open_datatree(path) as raw:  # uts: float64 Unix seconds, as tomato 2.2 writes it
        uts = raw["counter"]["uts"]
        assert uts.dtype == np.float64 and uts.attrs["units"] == "s"
        assert np.all(np.diff(uts.values) > 0) and 1.7e9 < uts.values[0] < 4e9
    # the pipeline is released and, without unlock_when_done, not ready
    pip = lab.pipelines()["pip-counter-1"]
    assert pip["jobid"] is None and pip["ready"] is False
    # Prefect agrees: one flow run, Completed, with one task run per technique step
    run = prefect_run(lab, job)
    assert run["state"]["type"] == "COMPLETED" and run["name"] == f"job-{jobid}"
    steps = [t for t in task_runs(lab, job) if t["name"].startswith("0-counter")]
    assert len(steps) == 1 and steps[0]["state"]["type"] == "COMPLETED"


def test_job_waits_for_sample_and_ready(lab: Tomato, tmp_path: Path) -> None:
    pip = lab.pipelines()["pip-counter-2"]
    if pip["sampleid"] is not None:
        lab.ok("tomato", "pipeline", "eject", "pip-counter-2")
    jobid = lab.submit(counter_payload("waiting-sample", 0.5), cwd=tmp_path)
    job = lab.wait_job(jobid, ("qw",), timeout=30)
    # waiting is visible in Prefect under a matching state name, never Late (pushed by the
    # daemon's sync, a round every few seconds; 60 s for a busy machine)
    deadline = time.monotonic() + 60
    state: dict = {}
    while time.monotonic() < deadline:
        job = lab.job(jobid)
        state = prefect_run(lab, job)["state"] if job["flow_run_id"] else {}
        if state.get("name") == "Waiting":
            break
        time.sleep(0.3)
    assert (state["type"], state["name"]) == ("PAUSED", "Waiting")
    lab.ok("tomato", "pipeline", "load", "pip-counter-2", "waiting-sample")
    time.sleep(2)
    assert lab.job(jobid)["status"] == "qw"  # right sample, but not ready
    lab.ok("tomato", "pipeline", "ready", "pip-counter-2")
    assert lab.wait_job(jobid)["status"] == "c"


def test_unknown_role_is_rejected_and_nothing_is_queued(lab: Tomato, tmp_path: Path) -> None:
    before = len(lab.ok("ketchup", "status"))
    msg = lab.fails("ketchup", "submit", str(_write(tmp_path, counter_payload("x", role="nope"))))
    assert "no pipeline has a component with role 'nope'" in msg
    assert len(lab.ok("ketchup", "status")) == before


def _write(folder: Path, payload: dict) -> Path:
    import yaml

    path = folder / "payload.yml"
    path.write_text(yaml.safe_dump(payload))
    return path


@pytest.mark.parametrize(
    "name, reason",
    [
        ("counter_invalid_1.yml", "unknown"),
        ("counter_invalid_2.yml", "wrong type"),
        ("counter_invalid_3.yml", "minimum"),
        ("counter_invalid_4.yml", "unknown"),
    ],
)
def test_invalid_reference_payloads_are_rejected(lab: Tomato, name: str, reason: str) -> None:
    before = len(lab.ok("ketchup", "status"))
    msg = lab.fails("ketchup", "submit", str(PAYLOADS / name))
    assert name in msg and reason in msg, msg
    assert len(lab.ok("ketchup", "status")) == before


def test_multistep_job(lab: Tomato, tmp_path: Path) -> None:
    lab.prepare("pip-counter-3", "counter_multistep")
    jobid = lab.submit(PAYLOADS / "counter_multistep.yml", cwd=tmp_path)
    job = lab.wait_job(jobid)
    assert job["status"] == "c", job
    with open_results(tmp_path / f"results.{jobid}.nc") as dt:
        assert dt["counter"].sizes["uts"] == 15  # 10 at 0.1 s, then 5 at 0.2 s
    names = sorted(t["name"] for t in task_runs(lab, job) if "-counter-count" in t["name"])
    assert names == ["0-counter-count", "1-counter-count"]


def test_multidevice_job_runs_roles_in_parallel(lab: Tomato, tmp_path: Path) -> None:
    lab.prepare("pip-multidev", "counter_multistep_multidev")
    t0 = time.monotonic()
    jobid = lab.submit(PAYLOADS / "counter_multistep_multidev.yml", cwd=tmp_path)
    job = lab.wait_job(jobid)
    assert job["status"] == "c", job
    with open_results(tmp_path / f"results.{jobid}.nc") as dt:
        assert set(dt.children) == {"counter-1", "counter-2"}
        one, two = dt["counter-1"], dt["counter-2"]
        assert 9 <= one.sizes["uts"] <= 11  # two steps of 1 s at 0.2 s
        assert 19 <= two.sizes["uts"] <= 21  # one step of 2 s at 0.1 s
        # in parallel: both roles started together (uts: Unix seconds). One after the
        # other, the second would start 2 s after the first (each role's steps take 2 s);
        # together, their first samples are 0.1 s apart, plus a busy machine's delays
        assert one["uts"].dtype == np.float64
        assert abs(one["uts"].values[0] - two["uts"].values[0]) < 1.5
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize(
    "payload", ["psutil_counter_with_task_start.yml", "psutil_counter_with_task_stop.yml"]
)
def test_triggers(lab: Tomato, tmp_path: Path, payload: str) -> None:
    sample = payload.removesuffix(".yml")
    lab.prepare("pip-psutil", sample)
    jobid = lab.submit(PAYLOADS / payload, cwd=tmp_path)
    job = lab.wait_job(jobid)
    assert job["status"] == "c", job
    with open_results(tmp_path / f"results.{jobid}.nc") as dt:
        psutil_uts = dt["psutil"]["uts"].values
        counter_uts = dt["counter"]["uts"].values
        assert dt["psutil"]["cpu_usage"].attrs["units"] == "percent"
    if "start" in payload:
        # the counter starts with the second psutil step, about 1 s after the job began
        assert counter_uts[0] - psutil_uts[0] > 0.8
        assert 9 <= len(counter_uts) <= 11  # 2 s at 0.2 s
    else:
        # the counter (20 s planned, a sample a second) stops when the psutil 'trigger' step
        # starts, after the 6 samples of the 3 s step before it; the trigger's first sample
        # comes 0.5 s after its start. The counter's step looks at the trigger once a second
        # (its polling interval), so its last sample is at most 1 s after the trigger's
        # start, plus a busy machine's delays: 1.5 s.
        trigger_started = psutil_uts[6] - 0.5
        assert counter_uts[-1] - trigger_started < 1.5 + 1.0


def test_output_path_and_prefix(lab: Tomato, tmp_path: Path) -> None:
    lab.prepare("pip-counter-4", "counter_output_path")
    jobid = lab.submit(PAYLOADS / "counter_output_path.yml", cwd=tmp_path)
    assert lab.wait_job(jobid)["status"] == "c"
    assert (tmp_path / "newfolder" / f"results.{jobid}.nc").exists()
    lab.prepare("pip-counter-4", "counter_output_prefix")
    jobid = lab.submit(PAYLOADS / "counter_output_prefix.yml", cwd=tmp_path)
    assert lab.wait_job(jobid)["status"] == "c"
    assert (tmp_path / "data.nc").exists()


def test_cancel_running_job_from_cli_keeps_data(lab: Tomato, tmp_path: Path) -> None:
    lab.prepare("pip-counter-1", "cancel-cli")
    jobid = lab.submit(counter_payload("cancel-cli", 60, 0.1), cwd=tmp_path)
    lab.wait_job(jobid, ("r",), timeout=60)
    stored = wait_stored(lab, jobid, 15)
    assert pipeline_slot(lab, "pip-counter-1") == 1  # the UI shows the pipeline taken
    asked = time.time()
    data = lab.ok("ketchup", "cancel", str(jobid))
    assert data[0]["status"] == "rd"
    job = lab.wait_job(jobid, timeout=60)
    assert job["status"] == "cd"
    # the job ends soon after the cancel, by the daemon's own end stamp (not this test's
    # polling): it looks at its mailbox twice a second, stops its step and writes its
    # results; about a second, 10 s on a busy machine (a job that ignored the cancel would
    # run its 60 s)
    assert datetime.fromisoformat(job["completed_at"]).timestamp() - asked < 10
    # the instrument stopped: the component runs nothing
    assert lab.ok("passata", "status", "example-addr,1")["running"] is False
    with open_results(tmp_path / f"results.{jobid}.nc") as dt:
        assert dt["counter"].sizes["uts"] >= stored  # nothing stored is lost
        final = Job.model_validate_json(dt.attrs["tomato_Job"])
        assert (final.status, final.error) == ("cd", "cancelled") and final.completed_at
    assert prefect_run(lab, job)["state"]["type"] == "CANCELLED"
    msg = lab.fails("ketchup", "cancel", str(jobid))
    assert "finished" in msg
    deadline = time.monotonic() + 60  # given back by the daemon's sync, a round every few s
    while pipeline_slot(lab, "pip-counter-1") != 0:
        assert time.monotonic() < deadline, "the pipeline's slot was not released"
        time.sleep(0.3)


def test_cancel_queued_job(lab: Tomato, tmp_path: Path) -> None:
    jobid = lab.submit(counter_payload("never-loaded"), cwd=tmp_path)
    lab.wait_job(jobid, ("q", "qw"))
    lab.ok("ketchup", "cancel", str(jobid))
    job = lab.wait_job(jobid)
    assert job["status"] == "cd"
    deadline = time.monotonic() + 60  # pushed by the daemon's sync, a round every few s
    state: dict = {}
    while state.get("type") != "CANCELLED":
        assert time.monotonic() < deadline, state
        time.sleep(0.3)
        job = lab.job(jobid)
        state = prefect_run(lab, job)["state"] if job["flow_run_id"] else {}
    assert job["status"] == "cd"


def test_cancel_from_prefect_ui(lab: Tomato, tmp_path: Path) -> None:
    """What the UI's cancel button does: set the flow run to Cancelling through the API."""
    import httpx

    lab.prepare("pip-counter-2", "cancel-ui")
    jobid = lab.submit(counter_payload("cancel-ui", 60, 0.1), cwd=tmp_path)
    job = lab.wait_job(jobid, ("r",), timeout=60)
    stored = wait_stored(lab, jobid, 10)
    api = lab.ok("tomato", "status")["prefect"]["api_url"]
    reply = httpx.post(
        f"{api}/flow_runs/{job['flow_run_id']}/set_state",
        json={"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": False},
    )
    assert reply.status_code in (200, 201), reply.text
    job = lab.wait_job(jobid, timeout=60)  # the daemon's watch sees it in a round or two
    assert job["status"] == "cd"
    with open_results(tmp_path / f"results.{jobid}.nc") as dt:
        assert dt["counter"].sizes["uts"] >= stored  # nothing stored is lost
    assert prefect_run(lab, job)["state"]["type"] == "CANCELLED"


def test_snapshots_on_demand_and_periodic(lab: Tomato, tmp_path: Path) -> None:
    lab.prepare("pip-counter-3", "counter_snapshot")
    jobid = lab.submit(PAYLOADS / "counter_snapshot.yml", cwd=tmp_path)
    lab.wait_job(jobid, ("r",), timeout=60)
    stored = wait_stored(lab, jobid, 10)
    here = tmp_path / "elsewhere"
    here.mkdir()
    lab.ok("ketchup", "snapshot", str(jobid), cwd=here)
    with open_results(here / f"snapshot.{jobid}.nc") as dt:
        assert dt["counter"].sizes["uts"] >= stored
    # the periodic snapshot (every 5 s) lands in the submit folder while the job runs: it is
    # there before the job's end (by the daemon's end stamp, however slow this test's polls)
    periodic = tmp_path / f"snapshot.{jobid}.nc"
    deadline = time.monotonic() + 60
    while not periodic.exists():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    written = periodic.stat().st_mtime
    job = lab.wait_job(jobid, timeout=60)
    assert job["status"] == "c"
    assert written < datetime.fromisoformat(job["completed_at"]).timestamp()
    with open_results(tmp_path / f"results.{jobid}.nc") as dt:
        assert dt["counter"].sizes["uts"] >= 148
    # every 5 s is more often than Prefect's automations fire: the daemon writes them, and
    # says so in the job's log
    log = (Path(job["jobpath"]) / "job.log").read_text()
    assert "more frequent than Prefect's automations can fire" in log
    assert "does not exist" in lab.fails("ketchup", "snapshot", "99999")


def test_sampling_fidelity_10s_at_100ms(lab: Tomato, tmp_path: Path) -> None:
    lab.prepare("pip-counter-4", "fidelity")
    jobid = lab.submit(counter_payload("fidelity", 10, 0.1), cwd=tmp_path)
    assert lab.wait_job(jobid)["status"] == "c"
    with xr.open_datatree(tmp_path / f"results.{jobid}.nc", decode_times=False) as dt:
        uts = dt["counter"]["uts"].values
    assert len(uts) >= 0.99 * 100, len(uts)
    assert np.all(np.diff(uts) > 0)


def test_twenty_jobs_on_four_pipelines(lab: Tomato, tmp_path: Path) -> None:
    sample = "stress"
    for i in range(1, 5):
        lab.prepare(f"pip-counter-{i}", sample)
    payload = counter_payload(sample, 0.5, 0.1, unlock_when_done=True)
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: lab.submit(payload, cwd=tmp_path), range(20)))
    assert len(set(ids)) == 20
    jobs = [lab.wait_job(j, timeout=300) for j in ids]
    assert all(j["status"] == "c" for j in jobs), [(j["id"], j["status"]) for j in jobs]
    by_pip: dict[str, list[tuple[datetime, datetime]]] = {}
    for job in jobs:
        assert job["pipeline"] in {f"pip-counter-{i}" for i in range(1, 5)}
        span = (
            datetime.fromisoformat(job["launched_at"]),
            datetime.fromisoformat(job["completed_at"]),
        )
        by_pip.setdefault(job["pipeline"], []).append(span)
    for spans in by_pip.values():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end, "two jobs overlapped on one pipeline"
    # each job ran exactly once: one flow run each, each Completed with one step task
    for job in jobs:
        assert prefect_run(lab, job)["state"]["type"] == "COMPLETED"
    for i in range(1, 5):
        lab.ok("tomato", "pipeline", "eject", f"pip-counter-{i}")
