"""Closed loops from Prefect: docs/examples/closed_loop.py, run as a real Prefect flow run
against a real daemon and its embedded Prefect server, submits a counter job, reads its data
and submits a second job with a parameter chosen from it; the jobs' flow runs are sub-runs
of the flow's run. Also the Python API's answers to bad input, against the real daemon.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import xarray as xr
import yaml

from tests.integration import browser
from tests.integration.harness import Tomato, counter_payload, eventually, running
from tests.skips import system_mark
from tomato_cli.client import Daemon, SubmitError, TomatoError, WaitTimeout, connect

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "closed_loop.py"
DEVICES = {
    "devices": [
        {
            "name": "dev-loop",
            "driver": "example_counter",
            "address": "loop-addr",
            "channels": ["1", "2"],
        }
    ],
    "pipelines": [
        {
            "name": "loop-*",
            "devices": [{"role": "counter", "device": "dev-loop", "channel": "each"}],
        }
    ],
}


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tomato]:
    with running(tmp_path_factory.mktemp("loop"), DEVICES) as tomato:
        yield tomato


@pytest.fixture
def daemon(loop: Tomato, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Daemon:
    monkeypatch.chdir(tmp_path)  # where results go by default, as for `ketchup submit`
    return connect(port=loop.port, appdir=loop.root / "app")


def api(loop: Tomato, method: str, path: str, **kwargs: Any) -> Any:
    reply = httpx.request(method, f"{loop.api_url}{path}", timeout=30, **kwargs)
    assert reply.status_code in (200, 201), reply.text
    return reply.json()


def run_example(loop: Tomato, sample: str, cwd: Path) -> dict[str, Any]:
    """The example file as a user runs it, with Prefect's API set to the daemon's."""
    env = {**os.environ, "PREFECT_API_URL": loop.api_url, "PREFECT_HOME": str(cwd / "home")}
    args = ["--sample", sample, "--port", str(loop.port), "--appdir", str(loop.root / "app")]
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def test_the_example_flow_chooses_the_next_job_from_the_last_ones_data(
    loop: Tomato, tmp_path: Path
) -> None:
    loop.prepare("loop-1", "loop-sample")
    out = run_example(loop, "loop-sample", tmp_path)
    first, second = (loop.job(jobid) for jobid in out["jobs"])
    assert (first["status"], second["status"]) == ("c", "c"), (first["error"], second["error"])

    # the second job's parameter is one more than the highest count of the first's data
    with xr.open_datatree(first["respath"]) as tree:
        peak = float(tree["counter"]["val"].max())
    assert peak == out["peak"] >= 1
    step = second["payload"]["method"][0]
    assert (step["technique_name"], step["task_params"]["max"]) == ("random", peak + 1)
    with xr.open_datatree(second["respath"]) as tree:
        counter = tree["counter"]
        assert counter["val"].size > 0 and float(counter["val"].max()) <= peak + 1
        assert set(counter["max"].values.tolist()) == {peak + 1}  # the driver ran with it

    # the flow's run is the parent of both jobs' flow runs, in Prefect's API and graph
    [user_run] = api(
        loop, "POST", "/flow_runs/filter", json={"flows": {"name": {"any_": ["closed-loop"]}}}
    )
    assert user_run["state"]["type"] == "COMPLETED"
    for job in (first, second):
        assert job["parent_flow_run_id"] == user_run["id"]
        run = api(loop, "GET", f"/flow_runs/{job['flow_run_id']}")
        assert run["parent_task_run_id"] is not None, run
        wrapper_url = f"/task_runs/{run['parent_task_run_id']}"
        wrapper = api(loop, "GET", wrapper_url)
        assert wrapper["flow_run_id"] == user_run["id"]
        assert wrapper["name"] == f"job-{job['id']}"
        # Prefect's server gives the wrapper each state of the job's flow run (whose engine
        # writes Completed just after the daemon heard of the end)
        eventually(
            lambda url=wrapper_url: api(loop, "GET", url)["state"]["type"] == "COMPLETED",
            120,
            f"job {job['id']}'s task run in the flow's run Completed",
        )
    graph = api(loop, "GET", f"/flow_runs/{user_run['id']}/graph-v2")
    shown = {node["id"]: node["kind"] for _, node in graph["nodes"]}
    assert shown[first["flow_run_id"]] == shown[second["flow_run_id"]] == "flow-run"


def test_a_parent_this_server_does_not_hold_is_named_in_the_jobs_log(
    loop: Tomato, daemon: Daemon
) -> None:
    stranger = str(uuid.uuid4())
    job = daemon.submit(counter_payload("nobody-holds-this"), parent_flow_run_id=stranger)
    record = eventually(lambda: (j := job.job()).flow_run_id and j, 120, "the job's flow run")
    assert record.parent_flow_run_id == stranger
    assert api(loop, "GET", f"/flow_runs/{record.flow_run_id}")["parent_task_run_id"] is None
    body = {"logs": {"flow_run_id": {"any_": [record.flow_run_id]}}}

    def note() -> bool:
        return any(
            stranger in r["message"] and "not linked" in r["message"]
            for r in api(loop, "POST", "/logs/filter", json=body)
        )

    eventually(note, 120, "a log line on the job's flow run naming its unknown parent")
    job.cancel()
    assert job.wait(timeout=120) == "cd"


def test_a_bad_payload_is_refused_as_ketchup_refuses_it_and_nothing_is_queued(
    loop: Tomato, daemon: Daemon, tmp_path: Path
) -> None:
    bad = counter_payload("s", role="thermometer")  # no pipeline has that role
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(bad))
    before = loop.ok("ketchup", "status", "--all")
    with pytest.raises(SubmitError) as err:
        daemon.submit(path)
    assert loop.fails("ketchup", "submit", str(path), cwd=tmp_path) == f"error: {err.value}"
    assert "no pipeline has a component with role 'thermometer'" in str(err.value)
    with pytest.raises(SubmitError, match="thermometer"):
        daemon.submit(bad)
    assert loop.ok("ketchup", "status", "--all") == before


def test_wait_times_out_then_a_cancel_ends_the_job(daemon: Daemon) -> None:
    job = daemon.submit(counter_payload("no-pipeline-holds-this"))
    with pytest.raises(WaitTimeout, match=f"job {job.jobid} had not ended after 1 s"):
        job.wait(timeout=1, poll=0.2)
    assert job.status() in ("q", "qw")  # waiting was all that stopped
    job.cancel()
    assert job.wait(timeout=120) == "cd"
    with pytest.raises(TomatoError, match=f"job {job.jobid} ended cd without a results file"):
        job.results()
    with pytest.raises(TomatoError, match=rf"cannot cancel finished job\(s\): {job.jobid} \(cd\)"):
        job.cancel()


def test_a_finished_job_cannot_be_cancelled(loop: Tomato, daemon: Daemon) -> None:
    loop.prepare("loop-2", "loop-done")
    job = daemon.submit(counter_payload("loop-done", duration=0.5))
    assert job.wait(timeout=300) == "c"
    assert int(job.results()["counter"]["val"].size) > 0
    with pytest.raises(TomatoError, match=rf"cannot cancel finished job\(s\): {job.jobid} \(c\)"):
        job.cancel()
    assert job.status() == "c"


def run_state(loop: Tomato, flow_run_id: str) -> tuple[str, str]:
    state = api(loop, "GET", f"/flow_runs/{flow_run_id}")["state"]
    return state["type"], state["name"]


def test_a_linked_job_pauses_from_the_new_ui_but_the_classic_ui_is_refused(
    loop: Tomato, daemon: Daemon
) -> None:
    flow = api(loop, "POST", "/flows/", json={"name": "my-own-loop"})
    body = {"flow_id": flow["id"], "state": {"type": "RUNNING"}}
    parent = api(loop, "POST", "/flow_runs/", json=body)
    loop.prepare("loop-1", "loop-paused")
    job = daemon.submit(
        counter_payload("loop-paused", duration=600), parent_flow_run_id=parent["id"]
    )
    eventually(lambda: job.status() == "r", 120, "the job runs")
    frid = job.job().flow_run_id
    run = api(loop, "GET", f"/flow_runs/{frid}")
    assert (
        api(loop, "GET", f"/task_runs/{run['parent_task_run_id']}")["flow_run_id"] == parent["id"]
    )
    eventually(lambda: run_state(loop, frid)[0] == "RUNNING", 60, "its engine writes Running")
    # the Suspend of Prefect's classic UI (not forced): Prefect's rules refuse it for a sub-run
    timeout = (datetime.now(UTC) + timedelta(seconds=300)).isoformat()
    details = {"pause_timeout": timeout, "pause_reschedule": True}
    suspend = {"type": "PAUSED", "name": "Suspended", "state_details": details}
    reply = api(loop, "POST", f"/flow_runs/{frid}/set_state", json={"state": suspend})
    assert reply["status"] == "ABORT" and "Cannot suspend subflows" in reply["details"]["reason"]
    assert run_state(loop, frid) == ("RUNNING", "Running")
    # the Pause of the new UI (the default) is forced: the job pauses as any other
    reply = api(
        loop, "POST", f"/flow_runs/{frid}/set_state", json={"state": suspend, "force": True}
    )
    assert reply["status"] == "ACCEPT", reply
    eventually(lambda: job.status() == "rp", 60, "paused")
    eventually(lambda: run_state(loop, frid) == ("PAUSED", "Paused"), 60, "shown paused")
    loop.ok("ketchup", "resume", str(job.jobid))
    eventually(lambda: job.status() == "r", 60, "resumed")
    job.cancel()
    assert job.wait(timeout=120) == "cd"


@system_mark(browser.missing())
def test_the_ui_names_the_parent_run_on_a_linked_jobs_page(loop: Tomato, daemon: Daemon) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    flow = api(loop, "POST", "/flows/", json={"name": "my-own-loop"})
    body = {"flow_id": flow["id"], "name": "loop-run-in-the-ui", "state": {"type": "RUNNING"}}
    parent = api(loop, "POST", "/flow_runs/", json=body)
    job = daemon.submit(counter_payload("nobody-holds-this"), parent_flow_run_id=parent["id"])
    try:
        frid = eventually(lambda: job.job().flow_run_id, 120, "the job's flow run")
        ui = loop.ok("tomato", "status")["prefect"]["ui_url"]
        with browser.chromium() as driver:
            driver.get(f"{ui}/v2/runs/flow-run/{frid}")
            shown = WebDriverWait(driver, 60, poll_frequency=0.5).until(
                lambda d: (
                    "Parent Run" in (text := d.find_element(By.TAG_NAME, "body").text)
                    and "loop-run-in-the-ui" in text
                )
            )
            assert shown
    finally:
        job.cancel()
        job.wait(timeout=120)
