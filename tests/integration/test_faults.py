"""Faults injected into real processes: nothing stored is lost, no pipeline stays stuck."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import xarray as xr

from tests.integration.harness import DATA, Tomato, counter_payload
from tests.skips import skip_system

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tomato]:
    tomato = Tomato(tmp_path_factory.mktemp("rig"))
    os.environ["TOMATO_DEBUG_COMMANDS"] = "1"  # driver hosts accept debug_hang/debug_crash
    try:
        tomato.init(DATA / "devices_rig.yml")
        tomato.start()
        del os.environ["TOMATO_DEBUG_COMMANDS"]
        tomato.wait_prefect()
        yield tomato
    finally:
        tomato.stop()


def samples(path: Path, role: str = "counter") -> int:
    with xr.open_datatree(path, decode_times=False) as dt:
        return dt[role].sizes["uts"]


def prefect_state(rig: Tomato, jobid: int, timeout: float = 20) -> str:
    """The flow run's state type once it is final (or the last seen)."""
    import httpx

    api = rig.ok("tomato", "status")["prefect"]["api_url"]
    deadline = time.monotonic() + timeout
    while True:
        job = rig.job(jobid)
        state = httpx.get(f"{api}/flow_runs/{job['flow_run_id']}").json()["state"]["type"]
        if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") or time.monotonic() > deadline:
            return state
        time.sleep(0.3)


def daemon_pid(rig: Tomato) -> int:
    return int(rig.ok("tomato", "status")["pid"])


def driver_pid(rig: Tomato, name: str) -> int:
    return rig.ok("tomato", "status", "drivers")[name]["pid"]


def test_kill_flow_process_ends_ce_and_keeps_data(rig: Tomato, tmp_path: Path) -> None:
    rig.prepare("pip-counter-1", "kill-flow")
    payload = counter_payload("kill-flow", 60, 0.1, unlock_when_done=True)
    jobid = rig.submit(payload, cwd=tmp_path)
    job = rig.wait_job(jobid, ("r",), timeout=60)
    time.sleep(3)
    os.kill(job["pid"], signal.SIGKILL)
    t0 = time.monotonic()
    job = rig.wait_job(jobid, timeout=30)
    assert job["status"] == "ce"
    assert time.monotonic() - t0 < 10
    assert "died" in job["error"]
    deadline = time.monotonic() + 20
    path = tmp_path / f"results.{jobid}.nc"
    while not path.exists():
        assert time.monotonic() < deadline, "no results written by the recovery step"
        time.sleep(0.3)
    assert samples(path) >= 15  # ~3 s at 0.1 s, at most one polling interval lost
    with xr.open_datatree(path) as dt:  # the recovered file says how the job ended
        final = json.loads(dt.attrs["tomato_Job"])
    assert (final["status"], final["error"]) == ("ce", job["error"]) and final["completed_at"]
    assert prefect_state(rig, jobid) == "CRASHED"
    # the pipeline is released and the next job runs on it
    assert rig.pipelines()["pip-counter-1"]["jobid"] is None
    nxt = rig.submit(counter_payload("kill-flow", 0.5, 0.1), cwd=tmp_path)
    assert rig.wait_job(nxt)["status"] == "c"


def test_kill_driver_mid_job(rig: Tomato, tmp_path: Path) -> None:
    rig.prepare("pip-counter-2", "kill-driver")
    rig.prepare("pip-psutil", "other-driver")
    victim = rig.submit(counter_payload("kill-driver", 60, 0.1), cwd=tmp_path)
    other = rig.submit(
        {
            "version": "2.2",
            "sample": {"identifier": "other-driver"},
            "method": [
                {
                    "component_role": "psutil",
                    "technique_name": "all_info",
                    "max_duration": 8,
                    "sampling_interval": 0.2,
                }
            ],
        },
        cwd=tmp_path,
    )
    rig.wait_job(victim, ("r",), timeout=60)
    rig.wait_job(other, ("r",), timeout=60)
    time.sleep(2)
    old = driver_pid(rig, "example_counter")
    os.kill(old, signal.SIGKILL)
    job = rig.wait_job(victim, timeout=60)
    assert job["status"] == "ce"
    assert samples(tmp_path / f"results.{victim}.nc") >= 10
    # the other driver's job went on untouched
    job = rig.wait_job(other, timeout=60)
    assert job["status"] == "c", job
    assert samples(tmp_path / f"results.{other}.nc", "psutil") >= 38
    # the driver came back, and says it was restarted
    deadline = time.monotonic() + 30
    while True:
        drivers = rig.ok("tomato", "status", "drivers")
        drv = drivers["example_counter"]
        if drv["state"] == "running" and drv["pid"] != old:
            break
        assert time.monotonic() < deadline, drv
        time.sleep(0.5)
    assert drv["restarts"] >= 1
    rig.prepare("pip-counter-2", "after-driver")
    after = rig.submit(counter_payload("after-driver", 0.5, 0.1), cwd=tmp_path)
    assert rig.wait_job(after)["status"] == "c"


def test_hung_driver_is_restarted_and_its_job_ends_ce(rig: Tomato, tmp_path: Path) -> None:
    from tomato_cli.rpc import Unreachable, call

    rig.prepare("pip-counter-4", "hang-driver")
    jobid = rig.submit(counter_payload("hang-driver", 60, 0.1), cwd=tmp_path)
    rig.wait_job(jobid, ("r",), timeout=60)
    time.sleep(2)
    drivers = rig.ok("tomato", "status", "drivers")
    old = drivers["example_counter"]
    try:
        call(old["port"], "debug_hang", timeout=1, seconds=120)  # blocks the whole host
    except Unreachable:
        pass  # it hangs before it answers
    t0 = time.monotonic()
    job = rig.wait_job(jobid, timeout=90)
    assert job["status"] == "ce"
    assert samples(tmp_path / f"results.{jobid}.nc") >= 10
    deadline = time.monotonic() + 60
    while True:
        drv = rig.ok("tomato", "status", "drivers")["example_counter"]
        if drv["state"] == "running" and drv["pid"] != old["pid"]:
            break
        assert time.monotonic() < deadline, drv
        time.sleep(0.5)
    assert drv["restarts"] > old["restarts"]
    assert time.monotonic() - t0 < 90
    assert not psutil.pid_exists(old["pid"]) or psutil.Process(old["pid"]).status() == "zombie"


def test_kill_daemon_mid_job_then_restart(rig: Tomato, tmp_path: Path) -> None:
    rig.prepare("pip-counter-3", "kill-daemon")
    rig.prepare("pip-counter-4", "ends-while-away")
    rig.prepare("pip-counter-2", "paused-while-away")
    long_job = rig.submit(counter_payload("kill-daemon", 30, 0.1), cwd=tmp_path)
    short_job = rig.submit(counter_payload("ends-while-away", 2, 0.1), cwd=tmp_path)
    paused = rig.submit(counter_payload("paused-while-away", 4, 0.1), cwd=tmp_path)
    queued = rig.submit(counter_payload("nobody-has-this"), cwd=tmp_path)
    rig.wait_job(long_job, ("r",), timeout=60)
    rig.wait_job(short_job, ("r",), timeout=60)
    rig.wait_job(paused, ("r",), timeout=60)
    rig.ok("ketchup", "pause", str(paused))
    rig.wait_job(queued, ("q", "qw"))
    os.kill(daemon_pid(rig), signal.SIGKILL)
    time.sleep(5)  # the short job ends while the daemon is away
    rig.start()
    # the short job ended while the daemon was away (its runner may still be saying so)
    assert rig.wait_job(short_job, timeout=10)["status"] == "c"
    assert rig.job(long_job)["status"] == "r"
    assert rig.job(queued)["status"] in ("q", "qw")
    pips = rig.pipelines()
    assert pips["pip-counter-3"]["sampleid"] == "kill-daemon"
    assert pips["pip-counter-3"]["jobid"] == long_job
    job = rig.wait_job(long_job, timeout=60)
    assert job["status"] == "c"
    assert samples(tmp_path / f"results.{long_job}.nc") >= 297
    assert samples(tmp_path / f"results.{short_job}.nc") == 20
    assert prefect_state(rig, long_job) == "COMPLETED"
    # the paused job stayed paused through the restart, and resumes
    assert rig.job(paused)["status"] == "rp"
    assert rig.pipelines()["pip-counter-2"]["jobid"] == paused
    assert prefect_state(rig, paused) == "PAUSED"
    rig.ok("ketchup", "resume", str(paused))
    assert rig.wait_job(paused, timeout=60)["status"] == "c"
    assert 35 <= samples(tmp_path / f"results.{paused}.nc") <= 40
    rig.ok("ketchup", "cancel", str(queued))


def test_prefect_server_killed_mid_job(rig: Tomato, tmp_path: Path) -> None:
    """The job samples on; the sync says it is failing while Prefect is away; the daemon
    restarts the server, and the job's snapshot automation fires again (re-armed: a new
    server forgot the open window)."""
    info = rig.ok("tomato", "status")
    home = Path(info["datadir"]) / f"prefect-{info['prefect']['api_url'].split(':')[-1][:-4]}"
    server = psutil.Process(int((home / "server.pid").read_text()))
    rig.prepare("pip-counter-1", "kill-prefect")
    payload = counter_payload("kill-prefect", 60, 0.1, snapshot={"interval": 10, "prefix": "s"})
    jobid = rig.submit(payload, cwd=tmp_path)
    job = rig.wait_job(jobid, ("r",), timeout=60)
    time.sleep(2)
    for proc in [server, *server.children(recursive=True)]:
        proc.kill()
    deadline = time.monotonic() + 20
    while (sync := rig.ok("tomato", "status")["prefect"]["sync"])["state"] != "failing":
        assert time.monotonic() < deadline, sync
        time.sleep(0.3)
    assert sync["error"]
    assert "failing:" in rig.run("tomato", "status").out
    killed = time.time()
    snapshot = tmp_path / "s.nc"
    deadline = time.monotonic() + 30
    while not snapshot.exists() or snapshot.stat().st_mtime < killed:
        assert time.monotonic() < deadline, "no periodic snapshot after the server died"
        time.sleep(0.5)
    api = rig.wait_prefect(timeout=60)["prefect"]["api_url"]
    # the job's automation outlives the restart (the daemon keeps it, does not remove it)
    name = f"tomato snapshots of job {jobid} ("
    found = httpx.post(f"{api}/automations/filter", json={}).json()
    automation = next((a for a in found if a["name"].startswith(name)), None)
    assert automation is not None, [a["name"] for a in found]
    # on the new server it fires while the job runs (nothing could fire before the kill,
    # 2 s into a 10 s interval)
    body = {
        "filter": {
            "event": {"name": ["prefect.automation.triggered"]},
            "resource": {"id": [f"prefect.automation.{automation['id']}"]},
        },
        "limit": 10,
    }
    while not httpx.post(f"{api}/events/filter", json=body).json()["events"]:
        assert rig.job(jobid)["status"] == "r", "the job ended before its automation fired"
        time.sleep(1)
    job = rig.wait_job(jobid, timeout=120)
    log = (Path(job["jobpath"]) / "job.log").read_text()
    assert "did not fire in time" not in log
    assert job["status"] == "c", job
    assert samples(tmp_path / f"results.{jobid}.nc") >= 597
    rig.wait_prefect(timeout=120)
    assert prefect_state(rig, jobid, timeout=60) == "COMPLETED"


def test_output_folder_gone_falls_back_to_job_folder(rig: Tomato, tmp_path: Path) -> None:
    rig.prepare("pip-counter-2", "no-output")
    payload = counter_payload("no-output", 2, 0.1, output={"path": "out"})
    jobid = rig.submit(payload, cwd=tmp_path)
    rig.wait_job(jobid, ("r",), timeout=60)
    (tmp_path / "out").write_text("a file where the output folder should go")
    job = rig.wait_job(jobid, timeout=60)
    assert job["status"] == "ce"
    assert "results are in" in job["error"]
    assert samples(Path(job["jobpath"]) / f"results.{jobid}.nc") == 20


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A tiny filesystem that is already full (needs root to mount a tmpfs)."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        skip_system(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        with open(mount / "filler", "wb") as filler:
            try:
                filler.write(b"x" * (1 << 20))
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_disk_full_results_go_to_job_folder(rig: Tomato, tmp_path: Path, full_disk: Path) -> None:
    rig.prepare("pip-counter-2", "disk-full")
    payload = counter_payload("disk-full", 2, 0.1, output={"path": str(full_disk)})
    jobid = rig.submit(payload, cwd=tmp_path)
    job = rig.wait_job(jobid, timeout=60)
    assert job["status"] == "ce"
    assert "no space left" in job["error"] and "results are in" in job["error"]
    assert samples(Path(job["jobpath"]) / f"results.{jobid}.nc") == 20
    assert not list(full_disk.glob("*.nc")) and not list(full_disk.glob(".*.tmp"))


def test_stop_refuses_then_leaves_running_then_cancels(rig: Tomato, tmp_path: Path) -> None:
    rig.prepare("pip-counter-3", "stop-modes")
    first = rig.submit(counter_payload("stop-modes", 6, 0.1, unlock_when_done=True), cwd=tmp_path)
    rig.wait_job(first, ("r",), timeout=60)
    msg = rig.fails("tomato", "stop")
    assert f"jobs {first} are running" in msg and "--cancel-jobs" in msg
    assert rig.job(first)["status"] == "r"
    # leave it running: the daemon goes, the job finishes, the restarted daemon tells the truth
    rig.ok("tomato", "stop", "--leave-running")
    assert "no tomato daemon answers" in rig.fails("ketchup", "status")
    time.sleep(8)
    rig.start()
    assert rig.wait_job(first, timeout=30)["status"] == "c"
    assert samples(tmp_path / f"results.{first}.nc") == 60
    # cancel on stop: the job ends cd with its data written
    second = rig.submit(counter_payload("stop-modes", 60, 0.1), cwd=tmp_path)
    rig.wait_job(second, ("r",), timeout=60)
    time.sleep(2)
    rig.ok("tomato", "stop", "--cancel-jobs")
    assert samples(tmp_path / f"results.{second}.nc") >= 15
    rig.start()
    assert rig.job(second)["status"] == "cd"
    rig.wait_prefect()


def test_every_socket_binds_to_loopback(rig: Tomato) -> None:
    root = str(rig.root)
    ours = []
    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + str(proc.info.get("environ") or {})
        except psutil.Error:
            continue
        if root in text:
            ours.append(proc)
    listening = []
    for proc in ours:
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    listening.append((proc.pid, conn.laddr.ip, conn.laddr.port))
        except psutil.Error:
            continue
    ports = {p for _, _, p in listening}
    assert rig.port in ports  # the daemon, the Prefect server and drivers were all found
    assert len(ports) >= 3
    assert all(ip == "127.0.0.1" for _, ip, _ in listening), listening
