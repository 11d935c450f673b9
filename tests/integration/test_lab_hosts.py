"""Two tomato hosts (127.0.0.2 and 127.0.0.3) share one lab server on PostgreSQL.

Lab-wide jobs are taken by exactly one host; a job can be pinned; the UI's cancel works on
either host; a lab job is followed from the terminal on whichever host takes it; the lab
server and a host can each be killed and restarted mid-job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import xarray as xr
import yaml

from tests.integration.harness import BIN, Tomato, counter_payload, eventually
from tests.integration.lab import LabWorld, configure_host, running_lab
from tests.integration.waits import wait_final, wait_stored

HOSTS = {"bench-a": "127.0.0.2", "bench-b": "127.0.0.3"}


@pytest.fixture(scope="module")
def lab() -> Iterator[LabWorld]:
    with running_lab() as world:
        yield world


@pytest.fixture(scope="module")
def hosts(lab: LabWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Tomato]]:
    out: dict[str, Tomato] = {}
    try:
        for name, address in HOSTS.items():
            host = Tomato(tmp_path_factory.mktemp(name))
            configure_host(host, lab, address, name)
            host.start()
            out[name] = host
        for host in out.values():
            host.wait_prefect()
        yield out
    finally:
        for host in out.values():
            host.stop()


def get(lab: LabWorld, path: str) -> Any:
    reply = httpx.get(f"{lab.api_url}{path}", auth=tuple(lab.auth.split(":", 1)), timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()


def post(lab: LabWorld, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{lab.api_url}{path}", json=body, auth=tuple(lab.auth.split(":", 1)), timeout=10
    )


def payload_file(host: Tomato, payload: dict[str, Any]) -> Path:
    path = host.root / f"lab-{time.monotonic_ns()}.yml"
    path.write_text(yaml.safe_dump(payload))
    return path


def lab_submit(host: Tomato, lab: LabWorld, payload: dict[str, Any], *extra: str) -> str:
    path = payload_file(host, payload)
    data = host.ok("ketchup", "submit", str(path), "--server", lab.api_url, *extra)
    return data["flow_run_id"]


def lab_wait(host: Tomato, lab: LabWorld, payload: dict[str, Any]) -> subprocess.Popen[str]:
    """``ketchup submit --server URL --wait`` in the background, printing text."""
    path = payload_file(host, payload)
    return subprocess.Popen(
        [str(BIN / "ketchup"), "submit", str(path), "--server", lab.api_url, "--wait"] + host.opts,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=host.root,
        env={**os.environ, "COLUMNS": "200"},
    )


def submitted_run(proc: subprocess.Popen[str]) -> str:
    """The flow run id from the first line of a lab submit's text output."""
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("lab job submitted as flow run "), first + proc.stderr.read()
    return first.split("(", 1)[1].split(")", 1)[0]


def lab_runs(lab: LabWorld) -> int:
    return int(post(lab, "/flow_runs/count", {}).json())


def taken_by(hosts: dict[str, Tomato], flow_run_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, job)
        for name, host in hosts.items()
        for job in host.ok("ketchup", "status")
        if job["flow_run_id"] == flow_run_id
    ]


def logs(lab: LabWorld, flow_run_id: str) -> str:
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200}
    return "\n".join(r["message"] for r in post(lab, "/logs/filter", body).json())


def samples(path: Path) -> int:
    with xr.open_datatree(path) as dt:
        return dt["counter"].sizes["uts"]


def test_an_idle_lab_host_keeps_no_job_runner_warm(hosts: dict[str, Tomato]) -> None:
    """A lab host idles lean (a job runner imports Prefect: ~90 MiB); one starts when a job
    is queued."""
    for host in hosts.values():
        runners = []
        for proc in psutil.process_iter(["cmdline", "environ"]):
            try:
                cmdline = " ".join(proc.info["cmdline"] or [])
                where = cmdline + str(proc.info.get("environ") or {})
            except psutil.Error:
                continue
            if "flows.runner" in cmdline and str(host.root) in where:
                runners.append(proc.pid)
        assert runners == [], f"{host.root.name} keeps job runners {runners} while idle"


def test_each_lab_job_is_taken_by_exactly_one_host(lab: LabWorld, hosts: dict[str, Tomato]) -> None:
    for host in hosts.values():
        host.prepare("pip-counter-1", "shared")
    payload = counter_payload("shared", 0.5, 0.1, unlock_when_done=True)
    runs = [lab_submit(hosts["bench-a"], lab, payload) for _ in range(6)]
    takers = {r: eventually(lambda r=r: taken_by(hosts, r), 90, f"{r} taken") for r in runs}
    ids = []
    for run, taken in takers.items():
        assert len(taken) == 1, f"{run} was taken by {len(taken)} hosts"
        name, job = taken[0]
        done = hosts[name].wait_job(job["id"], timeout=90)
        assert done["status"] == "c", done
        assert samples(Path(done["respath"])) == 5
        flow_run = get(lab, f"/flow_runs/{run}")
        assert flow_run["name"] == f"job-{job['id']}" and f"host:{name}" in flow_run["tags"]
        ids.append(job["id"])
    assert len(set(ids)) == len(ids), "job ids are unique across the lab"
    # each host numbers its jobs k * 100 + its lab number
    numbers = {n: {j["id"] % 100 for j in h.ok("ketchup", "status")} for n, h in hosts.items()}
    assert all(len(n) <= 1 for n in numbers.values())
    assert numbers["bench-a"].isdisjoint(numbers["bench-b"])
    for host in hosts.values():
        host.ok("tomato", "pipeline", "eject", "pip-counter-1")


def test_a_pinned_job_waits_for_its_host_and_a_job_nobody_can_run_says_why(
    lab: LabWorld, hosts: dict[str, Tomato]
) -> None:
    hosts["bench-a"].prepare("pip-counter-2", "pinned")  # ready, but not the pinned host
    pinned = lab_submit(
        hosts["bench-a"], lab, counter_payload("pinned", 0.5, 0.1), "--pin", "bench-b"
    )
    nobody = lab_submit(hosts["bench-a"], lab, counter_payload("x", 0.5, 0.1, role="nope"))
    time.sleep(6)
    assert taken_by(hosts, pinned) == [] and taken_by(hosts, nobody) == []
    assert get(lab, f"/flow_runs/{nobody}")["state"]["type"] == "SCHEDULED"
    why = eventually(lambda: logs(lab, nobody).count("no pipeline has the roles") >= 2, 30)
    assert why
    hosts["bench-b"].prepare("pip-counter-2", "pinned")
    name, job = eventually(lambda: taken_by(hosts, pinned), 60, "the pinned host took it")[0]
    assert name == "bench-b"
    assert hosts["bench-b"].wait_job(job["id"])["status"] == "c"
    post(lab, f"/flow_runs/{nobody}/set_state", {"state": {"type": "CANCELLED"}, "force": True})
    for host in hosts.values():
        host.ok("tomato", "pipeline", "eject", "pip-counter-2")


def test_cancel_in_the_lab_ui_on_either_host(lab: LabWorld, hosts: dict[str, Tomato]) -> None:
    jobs = {}
    for name, host in hosts.items():
        host.prepare("pip-counter-3", f"cancel-{name}")
        jobid = host.submit(counter_payload(f"cancel-{name}", 60, 0.1), cwd=host.root)
        jobs[name] = host.wait_job(jobid, ("r",), timeout=60)
    kept = {name: wait_stored(hosts[name], job["id"], 10) for name, job in jobs.items()}
    for job in jobs.values():
        reply = post(
            lab,
            f"/flow_runs/{job['flow_run_id']}/set_state",
            {"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": False},
        )
        assert reply.status_code in (200, 201), reply.text
    for name, job in jobs.items():
        done = hosts[name].wait_job(job["id"], timeout=60)  # seen in a sync round or two
        assert done["status"] == "cd"
        assert samples(Path(done["respath"])) >= kept[name]  # nothing stored is lost
        hosts[name].ok("tomato", "pipeline", "eject", "pip-counter-3")


def test_a_lab_job_is_followed_from_the_terminal_on_whichever_host_takes_it(
    lab: LabWorld, hosts: dict[str, Tomato]
) -> None:
    a, b = hosts["bench-a"], hosts["bench-b"]
    proc = lab_wait(a, lab, counter_payload("follow", 5.0, 0.1))  # r for ~10 polls
    try:
        run = submitted_run(proc)
        # no host holds the sample yet: it waits in the lab queue, and the terminal says why
        eventually(lambda: "cannot start it" in logs(lab, run), 60, "a host says why it waits")
        b.prepare("pip-counter-2", "follow")
        out, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    lines = out.splitlines()
    assert lines[0].startswith("waiting in the lab queue ("), out
    cannot = "cannot start it: no pipeline that can run it is ready, free and holds sample 'follow'"
    assert any(line.startswith("  tomato host bench-") and cannot in line for line in lines), out
    [(name, job)] = taken_by(hosts, run)
    jobid = job["id"]
    assert name == "bench-b"
    assert f"job {jobid} on host bench-b: r on pipeline pip-counter-2" in lines, out
    assert lines[-1] == f"job {jobid} on host bench-b ended with status c", out
    assert b.job(jobid)["flow_run_id"] == run
    # `ketchup status --lab` finds it by flow run id and by job id, from the other host
    by_run = a.ok("ketchup", "status", "--lab", run, "--server", lab.api_url)
    by_job = a.ok("ketchup", "status", "--lab", str(jobid), "--server", lab.api_url)
    assert by_run == by_job and len(by_run) == 1
    assert by_run[0] | {"message": None} == {
        "flow_run_id": run,
        "name": f"job-{jobid}",
        "jobid": jobid,
        "host": "bench-b",
        "pinned": None,
        "status": "c",
        "state": "Completed",
        "message": None,
        "pipeline": "pip-counter-2",
        "sample": "follow",
        "priority": 0,
        "server": lab.api_url,
    }
    text = a.run("ketchup", "status", "--lab", str(jobid), "--server", lab.api_url)
    assert text.code == 0 and "bench-b" in text.out and run in text.out, text
    b.ok("tomato", "pipeline", "eject", "pip-counter-2")


def test_lab_submit_wait_with_yaml_gives_the_host_and_job_id_and_exits_as_wait(
    lab: LabWorld, hosts: dict[str, Tomato]
) -> None:
    a, b = hosts["bench-a"], hosts["bench-b"]
    # without --wait: the flow run id at once; no host and no job id yet
    nobody = lab_submit(a, lab, counter_payload("follow-nobody", 0.5, 0.1, role="nope"))
    queued = a.ok("ketchup", "status", "--lab", nobody, "--server", lab.api_url)[0]
    assert (queued["status"], queued["host"], queued["jobid"]) == ("q", None, None), queued
    post(lab, f"/flow_runs/{nobody}/set_state", {"state": {"type": "CANCELLED"}, "force": True})
    b.prepare("pip-counter-2", "follow-y")
    path = payload_file(a, counter_payload("follow-y", 0.5, 0.1))
    res = a.run("ketchup", "submit", str(path), "--server", lab.api_url, "--wait", "-y")
    assert res.code == 0, res
    doc = res.doc
    assert doc["success"] is True and doc["data"]["status"] == "c", doc
    view = doc["data"]
    assert view["host"] == "bench-b" and view["pipeline"] == "pip-counter-2", view
    assert doc["msg"] == f"job {view['jobid']} on host bench-b ended with status c"
    assert b.job(view["jobid"])["flow_run_id"] == view["flow_run_id"]
    assert samples(Path(b.job(view["jobid"])["respath"])) == 5
    b.ok("tomato", "pipeline", "eject", "pip-counter-2")


def test_lab_submit_wait_of_a_job_cancelled_in_prefect_before_any_host_took_it(
    lab: LabWorld, hosts: dict[str, Tomato]
) -> None:
    proc = lab_wait(hosts["bench-a"], lab, counter_payload("never", 1.0, 0.1, role="nope"))
    try:
        run = submitted_run(proc)
        eventually(lambda: "no pipeline has the roles" in logs(lab, run), 60, "hosts say why")
        # what the UI's Cancel sends; Prefect cancels a run that never started at once
        reply = post(
            lab,
            f"/flow_runs/{run}/set_state",
            {"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": False},
        )
        assert reply.status_code in (200, 201), reply.text
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 4, out + err  # as `ketchup submit --wait` of a cancelled job
    assert "no pipeline has the roles and techniques nope (count)" in out, out
    assert out.splitlines()[-1].startswith(f"lab job {run} ended with status cd"), out
    assert all(j["flow_run_id"] != run for h in hosts.values() for j in h.ok("ketchup", "status"))


def test_bad_lab_status_requests_say_why_and_change_nothing(
    lab: LabWorld, hosts: dict[str, Tomato]
) -> None:
    a, url = hosts["bench-a"], lab.api_url
    before = lab_runs(lab)
    unknown = str(uuid.uuid4())
    cases = {
        ("--lab", "not-a-run", "--server", url): "'not-a-run' is neither a flow run id",
        ("--lab", "99999", "--server", url): "the lab server has no job 99999",
        ("--lab", unknown, "--server", url): f"the lab server has no flow run {unknown}",
        ("--lab", "x" * 5000, "--server", url): "is neither a flow run id",
        ("--lab", unknown, "5", "--server", url): "--lab shows one lab job",
        ("--server", url): "--server goes with --lab",
        ("--lab", unknown, "--server", "http://127.0.0.1:9/api"): "does not answer",
        ("--lab", unknown, "--server", "ftp://x"): "--server must start with http",
    }
    for args, reason in cases.items():
        assert reason in a.fails("ketchup", "status", *args), args
    assert lab_runs(lab) == before  # a status asks; it never makes or moves a run


def test_lab_server_killed_mid_job(lab: LabWorld, hosts: dict[str, Tomato]) -> None:
    """The job samples on, the daemon keeps the periodic snapshots going and says so;
    once the lab server is back, Prefect learns how the job ended."""
    host = hosts["bench-a"]
    host.prepare("pip-counter-4", "server-away")
    payload = counter_payload("server-away", 30, 0.1, snapshot={"interval": 10, "prefix": "away"})
    jobid = host.submit(payload, cwd=host.root)
    job = host.wait_job(jobid, ("r",), timeout=60)
    wait_stored(host, jobid, 1)  # it samples before the server goes
    server = psutil.Process(int((lab.dir / "prefect" / "server.pid").read_text()))
    for proc in [server, *server.children(recursive=True)]:
        proc.kill()
    eventually(
        lambda: host.ok("tomato", "status")["prefect"]["sync"]["state"] == "failing",
        20,
        "the host says its sync is failing",
    )
    snapshot = host.root / "away.nc"
    log = Path(job["jobpath"]) / "job.log"
    eventually(
        lambda: snapshot.exists() and "Prefect is away" in log.read_text(),
        30,
        "the daemon writes the periodic snapshots while the lab server is away",
    )
    lab.start(db="tcp")
    done = host.wait_job(jobid, timeout=90)
    assert done["status"] == "c", done
    assert samples(Path(done["respath"])) == 300
    eventually(
        lambda: get(lab, f"/flow_runs/{job['flow_run_id']}")["state"]["type"] == "COMPLETED",
        90,
        "Prefect learns the end once it is back",
    )
    host.wait_prefect()  # 150 s: the lab server restarted on a busy machine
    host.ok("tomato", "pipeline", "eject", "pip-counter-4")


def test_a_host_killed_mid_job_loses_nothing_and_others_take_lab_jobs(
    lab: LabWorld, hosts: dict[str, Tomato]
) -> None:
    b, a = hosts["bench-b"], hosts["bench-a"]
    b.prepare("pip-counter-1", "host-away")
    jobid = b.submit(counter_payload("host-away", 8, 0.1), cwd=b.root)
    jobpath = Path(b.wait_job(jobid, ("r",), timeout=60)["jobpath"])
    os.kill(b.ok("tomato", "status")["pid"], signal.SIGKILL)
    # meanwhile a lab job goes to the host that is there
    a.prepare("pip-counter-1", "while-b-away")
    run = lab_submit(a, lab, counter_payload("while-b-away", 0.5, 0.1))
    name, job = eventually(lambda: taken_by({"bench-a": a}, run), 60, "bench-a took it")[0]
    assert a.wait_job(job["id"])["status"] == "c"
    wait_final(jobpath)  # b's job ends while its daemon is away
    b.start()
    done = b.wait_job(jobid, timeout=60)
    assert done["status"] == "c", done
    assert samples(Path(done["respath"])) == 80
    b.wait_prefect()  # 150 s: the harness bound for a busy machine
    for host in hosts.values():
        host.ok("tomato", "pipeline", "eject", "pip-counter-1")
