"""Prefect is the control plane: every action on a tomato job's flow run in Prefect's API
(what the UI's buttons and the `prefect` CLI do) is a tomato action, or refused visibly.

One daemon with its embedded Prefect server for the module; each test uses its own
pipeline and sample. Prefect is driven through its REST API, its CLI and a real worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import xarray as xr

from tests.integration.harness import (
    BIN,
    Tomato,
    counter_payload,
    eventually,
    kill_leftovers,
    running,
)
from tests.integration.waits import check_paused_step, paused_after, stored, wait_stored

DEVICES = {
    "devices": [
        {
            "name": "dev-ctl",
            "driver": "example_counter",
            "address": "ctl-addr",
            "channels": [str(i) for i in range(1, 9)],
        }
    ],
    "pipelines": [
        {"name": "ctl-*", "devices": [{"role": "counter", "device": "dev-ctl", "channel": "each"}]}
    ],
}


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tomato]:
    with running(tmp_path_factory.mktemp("ctl"), DEVICES) as tomato:
        yield tomato


def flow_run(lab: Tomato, flow_run_id: str) -> httpx.Response:
    return httpx.get(f"{lab.api_url}/flow_runs/{flow_run_id}")


def set_state(lab: Tomato, flow_run_id: str, state: dict[str, Any], force: bool = True) -> None:
    reply = httpx.post(
        f"{lab.api_url}/flow_runs/{flow_run_id}/set_state", json={"state": state, "force": force}
    )
    assert reply.status_code in (200, 201), reply.text


def logs(lab: Tomato, flow_run_id: str) -> str:
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200}
    found = httpx.post(f"{lab.api_url}/logs/filter", json=body).json()
    return "\n".join(r["message"] for r in found)


def state_of(lab: Tomato, flow_run_id: str) -> tuple[str, str]:
    state = flow_run(lab, flow_run_id).json()["state"]
    return state["type"], state["name"]


def deployment(lab: Tomato) -> dict[str, Any]:
    name = lab.ok("tomato", "status")["prefect"]["deployment"]
    return httpx.get(f"{lab.api_url}/deployments/name/{name}").json()


def run_deployment(lab: Tomato, parameters: dict[str, Any]) -> str:
    """What the UI's Run button does."""
    reply = httpx.post(
        f"{lab.api_url}/deployments/{deployment(lab)['id']}/create_flow_run",
        json={"parameters": parameters, "state": {"type": "SCHEDULED"}},
    )
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def job_of_run(lab: Tomato, flow_run_id: str) -> dict[str, Any] | None:
    return next((j for j in lab.ok("ketchup", "status") if j["flow_run_id"] == flow_run_id), None)


def sync_is_healthy(lab: Tomato) -> bool:
    return lab.ok("tomato", "status")["prefect"]["sync"]["state"] == "healthy"


def slot(lab: Tomato, pipeline: str) -> int:
    limit = httpx.get(f"{lab.api_url}/v2/concurrency_limits/pipeline:{pipeline}").json()
    return limit["active_slots"]


def job_events(lab: Tomato, jobid: int) -> list[dict[str, Any]]:
    """The job's events in Prefect's event feed."""
    body = {
        "filter": {
            "event": {"prefix": ["tomato.job."]},
            "resource": {"labels": {"tomato.job.id": [str(jobid)]}},
        },
        "limit": 50,
    }
    reply = httpx.post(f"{lab.api_url}/events/filter", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()["events"]


def samples(path: Path) -> int:
    with xr.open_datatree(path) as dt:
        return dt["counter"].sizes["uts"]


def queue_status(lab: Tomato, pool: str, name: str) -> str:
    queues = httpx.post(f"{lab.api_url}/work_pools/{pool}/queues/filter", json={}).json()
    return next(q["status"] for q in queues if q["name"] == name)


# pipelines in Prefect
def test_pipelines_are_work_queues_and_a_running_job_holds_its_slot(
    ctl: Tomato, tmp_path: Path
) -> None:
    info = ctl.ok("tomato", "status")["prefect"]
    queues = httpx.post(f"{ctl.api_url}/work_pools/{info['work_pool']}/queues/filter", json={})
    by_name = {q["name"]: q for q in queues.json()}
    assert {f"pipeline:ctl-{i}" for i in range(1, 9)} <= set(by_name)
    assert all(by_name[f"pipeline:ctl-{i}"]["concurrency_limit"] == 1 for i in range(1, 9))
    ctl.prepare("ctl-1", "slot-sample")
    queue = eventually(
        lambda: next(
            q
            for q in httpx.post(
                f"{ctl.api_url}/work_pools/{info['work_pool']}/queues/filter", json={}
            ).json()
            if q["name"] == "pipeline:ctl-1" and not q["is_paused"]
        ),
        what="the queue of a ready pipeline is not paused",
    )
    assert "sample slot-sample" in queue["description"] and "ready" in queue["description"]
    eventually(
        lambda: queue_status(ctl, info["work_pool"], "pipeline:ctl-1") == "READY",
        40,
        "the ready pipeline's queue shows Ready (the daemon polls it)",
    )
    assert queue_status(ctl, info["work_pool"], "pipeline:ctl-2") == "PAUSED"  # no sample
    jobid = ctl.submit(counter_payload("slot-sample", 8, 0.1), cwd=tmp_path)
    job = ctl.wait_job(jobid, ("r",), timeout=60)
    eventually(lambda: slot(ctl, "ctl-1") == 1, what="the running job holds the slot")
    # Prefect itself refuses a second holder of the pipeline's slot
    second = httpx.post(
        f"{ctl.api_url}/v2/concurrency_limits/increment-with-lease",
        json={"names": ["pipeline:ctl-1"], "slots": 1, "mode": "concurrency"},
    )
    assert second.status_code == 423, second.text

    def tagged() -> dict[str, Any] | None:
        run = flow_run(ctl, job["flow_run_id"]).json()
        return run if "pipeline:ctl-1" in run["tags"] else None

    run = eventually(tagged, what="the flow run shows its pipeline")
    assert run["name"] == f"job-{jobid}"
    assert ctl.wait_job(jobid)["status"] == "c"
    eventually(lambda: slot(ctl, "ctl-1") == 0, what="the slot is released at the end")
    # the pool, its queues and the deployment show Ready while the daemon is up
    pool = httpx.get(f"{ctl.api_url}/work_pools/{info['work_pool']}").json()
    assert pool["status"] == "READY"
    assert eventually(lambda: deployment(ctl)["status"] == "READY", 40, "deployment Ready")
    # after a job the pipeline wants `tomato pipeline ready` again (as in tomato 2.2)
    assert queue_status(ctl, info["work_pool"], "pipeline:ctl-1") == "PAUSED"


# jobs started from Prefect
@pytest.mark.parametrize("as_text", [False, True], ids=["mapping", "yaml-text"])
def test_a_run_of_the_deployment_is_a_job(ctl: Tomato, as_text: bool) -> None:
    import yaml

    ctl.prepare("ctl-2", "from-prefect")
    payload: Any = counter_payload("from-prefect", 1, 0.1)
    frid = run_deployment(ctl, {"payload": yaml.safe_dump(payload) if as_text else payload})
    job = eventually(lambda: job_of_run(ctl, frid), what="the run became a job")
    assert eventually(lambda: flow_run(ctl, frid).json()["name"] == f"job-{job['id']}")
    done = ctl.wait_job(job["id"])
    assert done["status"] == "c", done
    assert Path(done["respath"]).parent == ctl.root / "data" / "results"
    assert samples(Path(done["respath"])) == 10
    assert eventually(lambda: state_of(ctl, frid)[0] == "COMPLETED")
    assert f"this run is job {job['id']}" in logs(ctl, frid)


def test_the_prefect_cli_submits_a_payload(ctl: Tomato, tmp_path: Path) -> None:
    """`prefect deployment run tomato-job/tomato --param payload="$(cat payload.json)"`"""
    import json

    ctl.prepare("ctl-3", "from-cli")
    text = json.dumps(counter_payload("from-cli", 0.5, 0.1))
    name = ctl.ok("tomato", "status")["prefect"]["deployment"]
    env = {**os.environ, "PREFECT_API_URL": ctl.api_url, "PREFECT_HOME": str(tmp_path)}
    out = subprocess.run(
        [str(BIN / "prefect"), "deployment", "run", name, "--param", f"payload={text}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    frid = next(w for w in out.stdout.split() if len(w) == 36 and w.count("-") == 4)
    job = eventually(lambda: job_of_run(ctl, frid), what="the CLI's run became a job")
    assert ctl.wait_job(job["id"])["status"] == "c"


@pytest.mark.parametrize(
    "parameters, reason",
    [
        ({}, "no `payload` parameter"),
        ({"payload": {"sample": {"identifier": "x"}, "method": []}}, "method"),
        ({"payload": "version: '2.2'\nmethod: [\n"}, "malformed YAML"),
        ({"payload": counter_payload("x", role="nope")}, "role 'nope'"),
    ],
)
def test_an_invalid_run_fails_at_once_saying_why(
    ctl: Tomato, parameters: dict[str, Any], reason: str
) -> None:
    before = len(ctl.ok("ketchup", "status"))
    frid = run_deployment(ctl, parameters)
    eventually(lambda: state_of(ctl, frid)[0] == "FAILED", what="the run failed")
    assert reason in logs(ctl, frid)
    assert reason in flow_run(ctl, frid).json()["state"]["message"]
    assert len(ctl.ok("ketchup", "status")) == before  # no job was made
    assert sync_is_healthy(ctl)


# actions on a job's flow run
def test_deleting_a_waiting_job_run_cancels_the_job(ctl: Tomato, tmp_path: Path) -> None:
    jobid = ctl.submit(counter_payload("never-loaded-delete"), cwd=tmp_path)
    job = ctl.wait_job(jobid, ("q", "qw"))
    frid = eventually(lambda: ctl.job(jobid)["flow_run_id"])
    assert httpx.delete(f"{ctl.api_url}/flow_runs/{frid}").status_code == 204
    assert ctl.wait_job(jobid, timeout=30)["status"] == "cd"
    assert "deleted" in ctl.job(jobid)["error"]
    eventually(lambda: sync_is_healthy(ctl), what="the sync is healthy again")
    assert job["status"] in ("q", "qw")


def test_deleting_a_running_job_run_cancels_it_with_its_data(ctl: Tomato, tmp_path: Path) -> None:
    ctl.prepare("ctl-4", "delete-running")
    jobid = ctl.submit(counter_payload("delete-running", 60, 0.1), cwd=tmp_path)
    job = ctl.wait_job(jobid, ("r",), timeout=60)
    kept = wait_stored(ctl, jobid, 10)
    assert httpx.delete(f"{ctl.api_url}/flow_runs/{job['flow_run_id']}").status_code == 204
    done = ctl.wait_job(jobid, timeout=60)  # the daemon's watch sees it in a round or two
    assert done["status"] == "cd"
    assert samples(tmp_path / f"results.{jobid}.nc") >= kept  # nothing stored is lost
    assert ctl.ok("passata", "status", "ctl-addr,4")["running"] is False
    assert ctl.pipelines()["ctl-4"]["jobid"] is None
    eventually(lambda: sync_is_healthy(ctl), what="the sync is healthy again")
    # and the next job on that pipeline runs
    ctl.prepare("ctl-4", "after-delete")
    assert (
        ctl.wait_job(ctl.submit(counter_payload("after-delete", 0.5, 0.1), cwd=tmp_path))["status"]
        == "c"
    )


# the automation of docs/usage.md ("Using the Prefect UI"), with an action that needs no block
FAILED_AUTOMATION = """
name: tomato job failed
trigger:
  type: event
  posture: Reactive
  expect: [tomato.job.failed]
  match: {prefect.resource.id: "tomato.job.*"}
  threshold: 1
  within: 0
actions:
  - type: do-nothing
"""


def test_failed_set_on_a_running_job_stops_it_as_ce(ctl: Tomato, tmp_path: Path) -> None:
    """... and a user's automation on tomato's events fires (the example of the docs)."""
    (tmp_path / "failed.yaml").write_text(FAILED_AUTOMATION)
    env = {**os.environ, "PREFECT_API_URL": ctl.api_url, "PREFECT_HOME": str(tmp_path / "h")}
    out = subprocess.run(
        [str(BIN / "prefect"), "automation", "create", "--from-file", "failed.yaml"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    ctl.prepare("ctl-5", "fail-running")
    jobid = ctl.submit(counter_payload("fail-running", 60, 0.1), cwd=tmp_path)
    job = ctl.wait_job(jobid, ("r",), timeout=60)
    kept = wait_stored(ctl, jobid, 10)
    set_state(ctl, job["flow_run_id"], {"type": "FAILED", "name": "Failed", "message": "by me"})
    done = ctl.wait_job(jobid, timeout=60)  # the daemon's watch sees it in a round or two
    assert done["status"] == "ce" and "Failed" in done["error"]
    assert samples(tmp_path / f"results.{jobid}.nc") >= kept  # nothing stored is lost
    assert ctl.ok("passata", "status", "ctl-addr,5")["running"] is False
    assert state_of(ctl, job["flow_run_id"])[0] == "FAILED"

    def failed_event() -> dict[str, Any] | None:
        events = job_events(ctl, jobid)
        return next((e for e in events if e["event"] == "tomato.job.failed"), None)

    failed = eventually(failed_event, 30, "tomato.job.failed in the event feed")
    assert "Failed" in failed["payload"]["error"]
    found = httpx.post(f"{ctl.api_url}/automations/filter", json={}).json()
    automation = next(a for a in found if a["name"] == "tomato job failed")
    body = {
        "filter": {
            "event": {"name": ["prefect.automation.triggered"]},
            "resource": {"id": [f"prefect.automation.{automation['id']}"]},
        },
        "limit": 10,
    }
    eventually(
        lambda: httpx.post(f"{ctl.api_url}/events/filter", json=body).json()["events"],
        30,
        "the user's automation fired on tomato.job.failed",
    )


def test_retry_of_a_finished_job_submits_its_payload_again(ctl: Tomato, tmp_path: Path) -> None:
    ctl.prepare("ctl-6", "retry")
    jobid = ctl.submit(counter_payload("retry", 0.5, 0.1, unlock_when_done=True), cwd=tmp_path)
    job = ctl.wait_job(jobid)
    assert job["status"] == "c"
    frid = job["flow_run_id"]
    eventually(lambda: state_of(ctl, frid)[0] == "COMPLETED")
    # what the UI's Retry does
    set_state(ctl, frid, {"type": "SCHEDULED", "name": "AwaitingRetry"})
    eventually(lambda: state_of(ctl, frid)[0] == "COMPLETED", what="the old run keeps its end")
    again = eventually(
        lambda: next((j for j in ctl.ok("ketchup", "status") if j["id"] > jobid), None)
    )
    assert again["payload"] == job["payload"]
    assert f"submitted again as job {again['id']}" in logs(ctl, frid)
    assert ctl.job(jobid)["status"] == "c"
    assert ctl.wait_job(again["id"])["status"] == "c"
    assert (tmp_path / f"results.{again['id']}.nc").exists()


def test_starting_a_waiting_job_in_prefect_is_refused(ctl: Tomato, tmp_path: Path) -> None:
    jobid = ctl.submit(counter_payload("never-loaded-resume"), cwd=tmp_path)
    ctl.wait_job(jobid, ("q", "qw"))
    frid = eventually(lambda: ctl.job(jobid)["flow_run_id"])
    eventually(lambda: state_of(ctl, frid)[0] == "PAUSED")
    set_state(ctl, frid, {"type": "RUNNING", "name": "Running"})
    eventually(lambda: state_of(ctl, frid)[0] == "PAUSED", what="the run is put back")
    assert "only the tomato gate starts a job" in logs(ctl, frid)
    assert ctl.job(jobid)["status"] in ("q", "qw")
    ctl.ok("ketchup", "cancel", str(jobid))


# pause and resume
def test_pause_and_resume_from_the_cli(ctl: Tomato, tmp_path: Path) -> None:
    ctl.prepare("ctl-7", "pause-cli")
    # paused once 2 s of data are stored; 20 s leave room for the pause to land while the
    # step runs, however busy the machine
    duration, every = 20, 0.1
    jobid = ctl.submit(counter_payload("pause-cli", duration, every), cwd=tmp_path)
    job = ctl.wait_job(jobid, ("r",), timeout=60)
    wait_stored(ctl, jobid, 20)
    assert ctl.ok("ketchup", "pause", str(jobid))[0]["status"] == "rp"
    eventually(lambda: not ctl.ok("passata", "status", "ctl-addr,7")["running"], 30, "stopped")
    assert eventually(lambda: state_of(ctl, job["flow_run_id"]) == ("PAUSED", "Paused"))
    eventually(lambda: paused_after(job["jobpath"]), 30, "the step's data up to the pause")
    at_pause = stored(job["jobpath"])
    time.sleep(4)  # a pause holds: nothing is sampled meanwhile
    assert ctl.job(jobid)["status"] == "rp"
    assert stored(job["jobpath"]) == at_pause
    assert ctl.pipelines()["ctl-7"]["jobid"] == jobid  # the pipeline stays reserved
    ctl.ok("ketchup", "snapshot", str(jobid), cwd=tmp_path)  # snapshots still work
    assert samples(tmp_path / f"snapshot.{jobid}.nc") == at_pause
    assert "not running" in ctl.fails("ketchup", "pause", str(jobid))
    ctl.ok("ketchup", "resume", str(jobid))
    done = ctl.wait_job(jobid, timeout=duration + 60)
    assert done["status"] == "c", done
    # the interrupted step ran for the rest of its 20 s
    check_paused_step(tmp_path / f"results.{jobid}.nc", job["jobpath"], duration, every)
    assert "not paused" in ctl.fails("ketchup", "resume", str(jobid))


def test_pause_and_resume_from_the_ui_and_cancel_while_paused(ctl: Tomato, tmp_path: Path) -> None:
    ctl.prepare("ctl-8", "pause-ui")
    jobid = ctl.submit(counter_payload("pause-ui", 60, 0.1), cwd=tmp_path)
    job = ctl.wait_job(jobid, ("r",), timeout=60)
    frid = job["flow_run_id"]
    kept = wait_stored(ctl, jobid, 15)
    # what the UI's Pause button sets
    timeout = (datetime.now(UTC) + timedelta(seconds=300)).isoformat()
    details = {"pause_timeout": timeout, "pause_reschedule": True}
    set_state(ctl, frid, {"type": "PAUSED", "name": "Suspended", "state_details": details})
    # the daemon's watch sees a state set in Prefect in a round or two: 60 s for a busy
    # machine, here and below; the step stops on the driver within a second or two: 30 s
    assert ctl.wait_job(jobid, ("rp",), timeout=60)["status"] == "rp"
    eventually(lambda: not ctl.ok("passata", "status", "ctl-addr,8")["running"], 30, "stopped")
    eventually(lambda: state_of(ctl, frid) == ("PAUSED", "Paused"), what="never expires")
    # the UI's Resume
    assert httpx.post(f"{ctl.api_url}/flow_runs/{frid}/resume", json={}).status_code in (200, 201)
    assert ctl.wait_job(jobid, ("r",), timeout=60)["status"] == "r"
    eventually(lambda: ctl.ok("passata", "status", "ctl-addr,8")["running"], 30, "sampling")
    ctl.ok("ketchup", "pause", str(jobid))
    ctl.wait_job(jobid, ("rp",), timeout=60)
    ctl.ok("ketchup", "cancel", str(jobid))
    done = ctl.wait_job(jobid, timeout=60)
    assert done["status"] == "cd"
    assert samples(tmp_path / f"results.{jobid}.nc") >= kept  # nothing stored is lost


# no bypass
def test_a_stock_worker_never_runs_a_tomato_job(ctl: Tomato, tmp_path: Path) -> None:
    """A real `prefect worker` on the tomato pool, polling every second, races the daemon
    for runs made in Prefect: whoever wins, each becomes one job that runs once, through
    the gate."""
    pool = ctl.ok("tomato", "status")["prefect"]["work_pool"]
    env = {
        **os.environ,
        "PREFECT_API_URL": ctl.api_url,
        "PREFECT_HOME": str(tmp_path / "worker-home"),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    worker = subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process"],
        cwd=tmp_path,
        env=env,
        stdout=open(tmp_path / "worker.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        time.sleep(8)  # the worker is polling
        ctl.prepare("ctl-1", "raced")
        payload = counter_payload("raced", 0.5, 0.1, unlock_when_done=True)
        runs = [run_deployment(ctl, {"payload": payload}) for _ in range(4)]
        jobs = [eventually(lambda f=f: job_of_run(ctl, f), 60, "became a job") for f in runs]
        ended = [ctl.wait_job(j["id"], timeout=120) for j in jobs]
        assert [j["status"] for j in ended] == ["c"] * 4, ended
        assert len({j["id"] for j in ended}) == 4
        for job in ended:
            path = Path(job["respath"])
            assert samples(path) == 5  # ran once, on the gate's pipeline
    finally:
        os.killpg(worker.pid, 2)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:  # Prefect's own shutdown is slow under load
            os.killpg(worker.pid, 9)
            worker.wait(10)
    text = (tmp_path / "worker.log").read_text()
    refused = "not started by the tomato daemon's gate" in text
    print("the worker took a run first:", refused)
    kill_leftovers(tmp_path)


def test_a_flow_run_started_elsewhere_touches_nothing(ctl: Tomato, tmp_path: Path) -> None:
    """The job flow run outside the gate (here, in-process by a script, with the id of a
    running job) refuses before it touches an instrument or a file."""
    ctl.prepare("ctl-2", "bypass")
    jobid = ctl.submit(counter_payload("bypass", 4, 0.1), cwd=tmp_path)
    job = ctl.wait_job(jobid, ("r",), timeout=60)
    script = (
        f"from flows.job import tomato_job\nstate = tomato_job(jobid={jobid}, return_state=True)\n"
    )
    env = {**os.environ, "PREFECT_API_URL": ctl.api_url, "PREFECT_HOME": str(tmp_path / "h")}
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert "not started by the tomato daemon's gate" in out.stdout + out.stderr
    done = ctl.wait_job(jobid)
    assert done["status"] == "c" and samples(tmp_path / f"results.{jobid}.nc") == 40
    final = (Path(job["jobpath"]) / "final.json").read_text()
    assert '"c"' in final


# the event feed and periodic snapshots
def test_events_and_snapshot_automation(ctl: Tomato, tmp_path: Path) -> None:
    ctl.prepare("ctl-3", "automated")
    payload = counter_payload("automated", 25, 0.5)
    payload["settings"]["snapshot"] = {"frequency": 10, "prefix": "auto"}
    jobid = ctl.submit(payload, cwd=tmp_path)
    ctl.wait_job(jobid, ("r",), timeout=60)

    def automation() -> dict[str, Any] | None:
        found = httpx.post(f"{ctl.api_url}/automations/filter", json={}).json()
        return next((a for a in found if f"of job {jobid} " in a["name"]), None)

    # the daemon makes it in a sync round after the start (a few seconds; 60 s for a busy
    # machine)
    made = eventually(automation, 60, "the job's automation is on the Automations page")
    assert made["trigger"]["posture"] == "Proactive" and made["trigger"]["within"] == 10
    snap = tmp_path / "auto.nc"
    eventually(snap.exists, 30, "an automation-triggered snapshot")
    job = ctl.wait_job(jobid, timeout=60)
    assert job["status"] == "c"
    eventually(lambda: automation() is None, 60, "the automation is gone after the end")
    written = snap.stat().st_mtime
    time.sleep(15)
    assert snap.stat().st_mtime == written, "no snapshot after the end"
    names = [e["event"] for e in job_events(ctl, jobid)]
    for name in ("submitted", "started", "completed"):
        assert names.count(f"tomato.job.{name}") == 1, names  # one event per change
    assert "tomato.job.snapshot" in names, names
    log = (Path(job["jobpath"]) / "job.log").read_text()
    assert "the daemon writes" not in log  # Prefect's automation made them
