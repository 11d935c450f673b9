"""Steering the queue: priorities, hold and release, cancel --all, unready, and the pipeline
work queues' Pause/Resume in Prefect, against a real daemon and its Prefect server.

One daemon for the module; each test uses its own pipeline and sample. Waits are bounded
by the job's or Prefect's state, with generous limits (120 s for a job to end, 60 s for a
sync round to show a change: a round takes well under 5 s, but this 2-core machine is
shared and a Prefect call can stall for tens of seconds under load).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import BIN, Tomato, counter_payload, eventually, running

DEVICES = {
    "devices": [
        {
            "name": "dev-qc",
            "driver": "example_counter",
            "address": "qc-addr",
            "channels": [str(i) for i in range(1, 7)],
        }
    ],
    "pipelines": [
        {"name": "qc-*", "devices": [{"role": "counter", "device": "dev-qc", "channel": "each"}]}
    ],
}
SYNC_S = 60.0  # a change shows in Prefect (or comes back from it) within this


@pytest.fixture(scope="module")
def qc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tomato]:
    with running(tmp_path_factory.mktemp("qc"), DEVICES) as tomato:
        yield tomato


def flow_run(lab: Tomato, jobid: int) -> dict[str, Any] | None:
    frid = lab.job(jobid)["flow_run_id"]
    return httpx.get(f"{lab.api_url}/flow_runs/{frid}").json() if frid else None


def submit(lab: Tomato, payload: dict[str, Any], folder: Path, *extra: str) -> int:
    path = folder / f"payload-{time.monotonic_ns()}.yml"
    import yaml

    path.write_text(yaml.safe_dump(payload))
    return int(lab.ok("ketchup", "submit", str(path), *extra, cwd=folder)["id"])


def queue_url(lab: Tomato, pipeline: str) -> str:
    pool = lab.ok("tomato", "status")["prefect"]["work_pool"]
    return f"{lab.api_url}/work_pools/{pool}/queues/pipeline:{pipeline}"


def queue_paused(lab: Tomato, pipeline: str) -> bool:
    return bool(httpx.get(queue_url(lab, pipeline)).json()["is_paused"])


def set_queue_paused(lab: Tomato, pipeline: str, paused: bool) -> None:
    """What the Pause/Resume buttons of a work queue in the Prefect UI do."""
    reply = httpx.patch(queue_url(lab, pipeline), json={"is_paused": paused})
    assert reply.status_code == 204, reply.text


def pipeline_events(lab: Tomato, pipeline: str) -> list[dict[str, Any]]:
    body = {"filter": {"event": {"prefix": ["tomato.pipeline."]}}, "limit": 50}
    events = httpx.post(f"{lab.api_url}/events/filter", json=body).json()["events"]
    return [e for e in events if e["resource"]["prefect.resource.name"] == pipeline]


def test_the_highest_priority_starts_first_then_the_oldest(qc: Tomato, tmp_path: Path) -> None:
    qc.prepare("qc-1", "prio")
    blocker = submit(qc, counter_payload("prio", 120, 0.5, unlock_when_done=True), tmp_path)
    qc.wait_job(blocker, ("r",))
    short = counter_payload("prio", 0.3, 0.1, unlock_when_done=True)
    low = submit(qc, short, tmp_path)  # priority 0, the default
    high = submit(qc, short, tmp_path, "--priority", "5")
    mid = submit(qc, counter_payload("prio", 0.3, 0.1, unlock_when_done=True, priority=1), tmp_path)
    late = submit(qc, short, tmp_path)
    assert qc.ok("ketchup", "priority", str(late), "9")["priority"] == 9
    jobs = {j["id"]: j for j in qc.ok("ketchup", "status")}
    assert [jobs[j]["priority"] for j in (low, high, mid, late)] == [0, 5, 1, 9]
    assert [jobs[j]["status"] for j in (low, high, mid, late)] == ["qw"] * 4
    text = qc.run("ketchup", "status").out
    assert any("held" in line and "priority" in line for line in text.splitlines()), text
    # Prefect shows each priority as a tag, the changed one too
    eventually(
        lambda: "priority:9" in (flow_run(qc, late) or {}).get("tags", []),
        SYNC_S,
        "the changed priority shows in Prefect",
    )
    assert "priority:5" in (flow_run(qc, high) or {})["tags"]
    qc.ok("ketchup", "cancel", str(blocker))
    ended = [qc.wait_job(j) for j in (low, high, mid, late)]
    assert all(j["status"] == "c" for j in ended), ended
    order = sorted(ended, key=lambda j: j["launched_at"])
    assert [j["id"] for j in order] == [late, high, mid, low]
    qc.ok("tomato", "pipeline", "eject", "qc-1")


def test_a_held_job_is_passed_over_and_starts_after_release(qc: Tomato, tmp_path: Path) -> None:
    qc.ok("tomato", "pipeline", "load", "qc-2", "hold")  # not ready yet
    payload = counter_payload("hold", 0.3, 0.1, unlock_when_done=True)
    held, other = submit(qc, payload, tmp_path), submit(qc, payload, tmp_path)
    data = qc.ok("ketchup", "hold", str(held))
    assert data[0]["held"] is True
    job = qc.job(held)
    assert job["held"] is True and job["status"] in ("q", "qw")  # a flag, not a status
    assert "held" in qc.run("ketchup", "status", str(held)).out

    def held_in_prefect() -> bool:
        run = flow_run(qc, held) or {}
        return run.get("state", {}).get("name") == "Held" and "held" in run.get("tags", [])

    eventually(held_in_prefect, SYNC_S, "the held job's run shows Held")
    assert flow_run(qc, held)["state"]["type"] == "PAUSED"  # type: ignore[index]
    qc.ok("tomato", "pipeline", "ready", "qc-2")
    assert qc.wait_job(other)["status"] == "c"
    # the pipeline is ready and free again; the held job still waits (gate rounds: 0.5 s)
    assert qc.pipelines()["qc-2"]["ready"] is True
    time.sleep(3)
    assert qc.job(held)["status"] == "qw"
    assert qc.ok("ketchup", "release", str(held))[0]["held"] is False
    job = qc.wait_job(held)
    assert job["status"] == "c" and job["held"] is False
    assert job["launched_at"] > qc.job(other)["completed_at"]
    qc.ok("tomato", "pipeline", "eject", "qc-2")


def test_cancel_all_queued_leaves_running_jobs_alone(qc: Tomato, tmp_path: Path) -> None:
    qc.prepare("qc-3", "cancel-all")
    running = submit(qc, counter_payload("cancel-all", 120, 0.5), tmp_path)
    qc.wait_job(running, ("r",))
    queued = [submit(qc, counter_payload("cancel-all", 1), tmp_path) for _ in range(2)]
    for jobid in queued:
        qc.wait_job(jobid, ("qw",))
    # asked first: "no" cancels nothing
    proc = subprocess.run(
        [str(BIN / "ketchup"), "cancel", "--all", "--sample", "cancel-all", *qc.opts],
        input="n\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    for jobid in queued:
        assert str(jobid) in proc.stdout  # it said what it would cancel
    assert {qc.job(j)["status"] for j in queued} == {"qw"}
    assert qc.job(running)["status"] == "r"
    # -y asks nothing
    data = qc.ok("ketchup", "cancel", "--all", "--status", "q,qw", "--sample", "cancel-all")
    assert sorted(j["id"] for j in data) == sorted(queued)
    assert all(qc.wait_job(j)["status"] == "cd" for j in queued)
    assert qc.job(running)["status"] == "r"
    # filtered by the pipeline it runs on, with --yes
    res = qc.run("ketchup", "cancel", "--all", "--pipeline", "qc-3", "--yes")
    assert res.code == 0 and str(running) in res.out, res.out + res.err
    assert qc.wait_job(running)["status"] == "cd"
    assert "nothing cancelled" in qc.run("ketchup", "cancel", "--all", "--sample", "none").out


def test_unready_keeps_the_sample_and_the_running_job(qc: Tomato, tmp_path: Path) -> None:
    qc.prepare("qc-4", "unready")
    running = submit(qc, counter_payload("unready", 8, 0.1, unlock_when_done=True), tmp_path)
    qc.wait_job(running, ("r",))
    pip = qc.ok("tomato", "pipeline", "unready", "qc-4")
    assert (pip["ready"], pip["sampleid"]) == (False, "unready")
    waiting = submit(qc, counter_payload("unready", 0.3, 0.1), tmp_path)
    assert qc.wait_job(running)["status"] == "c"  # the running job went on
    # and its unlock_when_done did not make the pipeline ready again
    assert qc.pipelines()["qc-4"]["ready"] is False
    eventually(lambda: queue_paused(qc, "qc-4"), SYNC_S, "the queue shows Paused in Prefect")
    time.sleep(2)
    assert qc.job(waiting)["status"] == "qw"
    # Resume of the pipeline's work queue in Prefect makes it ready: the job starts
    set_queue_paused(qc, "qc-4", False)
    assert qc.wait_job(waiting)["status"] == "c"
    assert qc.pipelines()["qc-4"]["sampleid"] == "unready"


def test_pause_and_resume_of_the_work_queue_in_prefect(qc: Tomato, tmp_path: Path) -> None:
    qc.prepare("qc-5", "wq")
    eventually(lambda: not queue_paused(qc, "qc-5"), SYNC_S, "the ready queue shows Ready")
    set_queue_paused(qc, "qc-5", True)
    eventually(lambda: qc.pipelines()["qc-5"]["ready"] is False, SYNC_S, "Pause unreadies")
    assert qc.pipelines()["qc-5"]["sampleid"] == "wq"
    jobid = submit(qc, counter_payload("wq", 0.3, 0.1), tmp_path)
    qc.wait_job(jobid, ("qw",))
    time.sleep(2)
    assert qc.job(jobid)["status"] == "qw" and queue_paused(qc, "qc-5")
    set_queue_paused(qc, "qc-5", False)
    eventually(
        lambda: qc.pipelines()["qc-5"]["ready"] is True or qc.job(jobid)["status"] != "qw",
        SYNC_S,
        "Resume readies",
    )
    assert qc.wait_job(jobid)["status"] == "c"
    # a Resume with no sample loaded is refused: the queue is paused again, and says why
    qc.ok("tomato", "pipeline", "eject", "qc-5")
    eventually(lambda: queue_paused(qc, "qc-5"), SYNC_S, "the emptied queue shows Paused")
    set_queue_paused(qc, "qc-5", False)

    def refused() -> dict[str, Any] | None:
        found = [e for e in pipeline_events(qc, "qc-5") if e["event"] == "tomato.pipeline.refused"]
        return found[0] if found else None

    event = eventually(refused, SYNC_S, "the refusal is an event in Prefect")
    assert "no sample" in event["payload"]["reason"]
    eventually(lambda: queue_paused(qc, "qc-5"), SYNC_S, "the queue is put back Paused")
    pip = qc.pipelines()["qc-5"]
    assert (pip["ready"], pip["sampleid"]) == (False, None)


def test_bad_input_says_why_and_changes_nothing(qc: Tomato, tmp_path: Path) -> None:
    qc.ok("tomato", "pipeline", "load", "qc-6", "bad-input")  # not ready: the job waits
    waiting = submit(qc, counter_payload("bad-input", 0.3, 0.1), tmp_path)
    done = submit(qc, counter_payload("bad-input", 0.3, 0.1), tmp_path)
    qc.ok("ketchup", "cancel", str(done))
    qc.wait_job(done)

    def world() -> tuple[Any, Any]:
        jobs = {
            j["id"]: (j["status"], j["priority"], j["held"]) for j in qc.ok("ketchup", "status")
        }
        return jobs, qc.pipelines()

    before = world()
    cases = [
        (("ketchup", "priority", "99999", "3"), "does not exist"),
        (("ketchup", "priority", str(done), "3"), "not queued"),
        (("ketchup", "priority", str(waiting), "-1"), "0 or more"),
        (("ketchup", "priority", str(waiting), "1.5"), "whole number"),
        (("ketchup", "priority", str(waiting), "high"), "whole number"),
        (("ketchup", "hold", "99999"), "does not exist"),
        (("ketchup", "hold", str(waiting), str(done)), "not queued"),
        (("ketchup", "release", str(done)), "not queued"),
        (("ketchup", "cancel", "--all", "--pipeline", "nope"), "does not exist"),
        (("ketchup", "cancel", "--all", "--status", "x"), "unknown status"),
        (("ketchup", "cancel", "--all", "--status", "c"), "cannot be chosen"),
        (("ketchup", "cancel", "--status", "q"), "go with --all"),
        (("tomato", "pipeline", "unready", "nope"), "does not exist"),
        (("tomato", "pipeline", "unready", "qc-6"), "not ready"),
    ]
    for args, reason in cases:
        msg = qc.fails(*args)
        assert reason in msg, (args, msg)
    path = tmp_path / "p.yml"
    import yaml

    path.write_text(yaml.safe_dump(counter_payload("bad-input", 0.3, 0.1)))
    assert "0 or more" in qc.fails("ketchup", "submit", str(path), "--priority", "-1")
    path.write_text(yaml.safe_dump(counter_payload("bad-input", 0.3, 0.1, priority=-2)))
    assert "priority" in qc.fails("ketchup", "submit", str(path))
    path.write_text(yaml.safe_dump(counter_payload("bad-input", 0.3, 0.1, priority="high")))
    assert "priority" in qc.fails("ketchup", "submit", str(path))
    assert world() == before
    qc.ok("ketchup", "cancel", str(waiting))
    qc.ok("tomato", "pipeline", "eject", "qc-6")


def test_a_run_of_the_deployment_may_carry_a_priority(qc: Tomato) -> None:
    """What the UI's Run button does, with a `priority` parameter."""
    name = qc.ok("tomato", "status")["prefect"]["deployment"]
    deployment = httpx.get(f"{qc.api_url}/deployments/name/{name}").json()
    payload = counter_payload("run-priority", 0.3, 0.1)
    reply = httpx.post(
        f"{qc.api_url}/deployments/{deployment['id']}/create_flow_run",
        json={"parameters": {"payload": payload, "priority": 3}, "state": {"type": "SCHEDULED"}},
    )
    assert reply.status_code == 201, reply.text
    frid = reply.json()["id"]

    def job_of_run() -> dict[str, Any] | None:
        return next((j for j in qc.ok("ketchup", "status") if j["flow_run_id"] == frid), None)

    job = eventually(job_of_run, SYNC_S, "the run becomes a job")
    assert job["priority"] == 3
    eventually(
        lambda: "priority:3" in httpx.get(f"{qc.api_url}/flow_runs/{frid}").json()["tags"],
        SYNC_S,
        "its run shows the priority",
    )
    qc.ok("ketchup", "cancel", str(job["id"]))


def test_status_lists_live_jobs_and_the_last_ended(qc: Tomato, tmp_path: Path) -> None:
    payload = counter_payload("short-list", 0.3, 0.1)  # no pipeline holds it: they wait
    first = submit(qc, payload, tmp_path, "-j", "old-one")
    second, live = submit(qc, payload, tmp_path), submit(qc, payload, tmp_path)
    for jobid in (first, second):  # one after the other: second ended last
        qc.ok("ketchup", "cancel", str(jobid))
        qc.wait_job(jobid)
    ids = lambda jobs: {j["id"] for j in jobs}  # noqa: E731
    short = qc.run("ketchup", "status", "--ended", "1", "-y").doc
    assert {second, live} <= ids(short["data"]) and first not in ids(short["data"])
    assert "not shown" in short["msg"] and "--all" in short["msg"]
    text = qc.run("ketchup", "status", "--ended", "1").out
    assert "not shown" in text
    listed = {line.split()[0] for line in text.splitlines()[2:] if line.strip()}
    assert str(live) in listed and str(first) not in listed
    assert first in ids(qc.ok("ketchup", "status", "--all"))
    # -y without ids lists every job, as tomato 2.2 does: its scripts see what they saw
    assert {first, second, live} <= ids(qc.ok("ketchup", "status"))
    assert ids(qc.ok("ketchup", "search", "old-one", "-c")) == {first}
    before = qc.ok("ketchup", "status")
    assert "0 or more" in qc.fails("ketchup", "status", "--ended", "-1")
    assert qc.ok("ketchup", "status") == before
    qc.ok("ketchup", "cancel", str(live))
