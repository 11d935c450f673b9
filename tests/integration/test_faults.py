"""Faults injected into real processes: nothing stored is lost, no pipeline stays stuck."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import psutil
import pytest
import xarray as xr

from drivers.sampler import sample_count
from tests.integration.harness import DATA, Tomato, counter_payload, eventually
from tests.integration.waits import (
    FINAL_STATES,
    check_paused_step,
    prefect_state,
    wait_final,
    wait_stored,
)
from tests.skips import skip_system
from tomato_cli.models.job import FINAL_FILE

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


@contextmanager
def daemon_back(rig: Tomato) -> Iterator[None]:
    """Whatever fails in a test that stops or kills the module's daemon, it runs again
    afterwards: the next tests check their own things, not this test's leftovers."""
    try:
        yield
    finally:
        if rig.run("tomato", "status").code != 0:
            rig.start()
        rig.wait_prefect()


def daemon_pid(rig: Tomato) -> int:
    return int(rig.ok("tomato", "status")["pid"])


def driver_pid(rig: Tomato, name: str) -> int:
    return rig.ok("tomato", "status", "drivers")[name]["pid"]


def test_kill_flow_process_ends_ce_and_keeps_data(rig: Tomato, tmp_path: Path) -> None:
    rig.prepare("pip-counter-1", "kill-flow")
    payload = counter_payload("kill-flow", 60, 0.1, unlock_when_done=True)
    jobid = rig.submit(payload, cwd=tmp_path)
    rig.wait_job(jobid, ("r",), timeout=60)
    stored = wait_stored(rig, jobid, 15)  # killed with data stored, however slow the runner
    job = rig.job(jobid)  # the pid of the job's own process, now that it stores data
    assert job["pid"] is not None and job["pid"] not in rig.runner_pids()
    os.kill(job["pid"], signal.SIGKILL)
    killed = time.time()
    job = rig.wait_job(jobid, timeout=60)
    assert job["status"] == "ce"
    # the daemon noticed by itself: a runner's closed pipe wakes its job monitor at once
    # (else a round every 2 s), and it ends the job after stopping its task on the driver.
    # Measured by the daemon's own end stamp, not by this test's polling; 10 s is 5 rounds.
    assert datetime.fromisoformat(job["completed_at"]).timestamp() - killed < 10
    assert "died" in job["error"]
    deadline = time.monotonic() + 20
    path = tmp_path / f"results.{jobid}.nc"
    while not path.exists():
        assert time.monotonic() < deadline, "no results written by the recovery step"
        time.sleep(0.3)
    # nothing stored is lost, and what the driver still buffered is salvaged on top
    assert samples(path) >= stored
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
    # 20 s: the other job is still sampling when the driver is killed, however long the
    # victim takes to store its first second of data on a busy machine
    other_s, other_every = 20, 0.2
    other = rig.submit(
        {
            "version": "2.2",
            "sample": {"identifier": "other-driver"},
            "method": [
                {
                    "component_role": "psutil",
                    "technique_name": "all_info",
                    "max_duration": other_s,
                    "sampling_interval": other_every,
                }
            ],
        },
        cwd=tmp_path,
    )
    stored = wait_stored(rig, victim, 10)
    wait_stored(rig, other, 1, role="psutil")  # fails if it ended before the kill
    old = driver_pid(rig, "example_counter")
    os.kill(old, signal.SIGKILL)
    job = rig.wait_job(victim, timeout=60)
    assert job["status"] == "ce"
    assert samples(tmp_path / f"results.{victim}.nc") >= stored
    # the other driver's job went on untouched: all its samples but the 2 its sampler may
    # skip when a busy machine makes it late by more than its catch-up window
    job = rig.wait_job(other, timeout=90)
    assert job["status"] == "c", job
    assert (
        samples(tmp_path / f"results.{other}.nc", "psutil")
        >= sample_count(other_s, other_every) - 2
    )
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
    stored = wait_stored(rig, jobid, 10)
    drivers = rig.ok("tomato", "status", "drivers")
    old = drivers["example_counter"]
    try:
        call(old["port"], "debug_hang", timeout=1, seconds=120)  # blocks the whole host
    except Unreachable:
        pass  # it hangs before it answers
    t0 = time.monotonic()
    job = rig.wait_job(jobid, timeout=90)
    assert job["status"] == "ce"
    assert samples(tmp_path / f"results.{jobid}.nc") >= stored
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
    # Each job's length is set by what must happen while it runs, at 0.1 s sampling:
    # - the long job runs through the kill and the restart and is still running after it:
    #   about 15 s on an idle machine, up to ~40 s when another process keeps both cores
    #   busy (every CLI call costs 1-3 s then): 60 s;
    # - the paused job is paused while it runs: 20 s leaves room for the pause to land;
    # - the short job ends while the daemon is away: the daemon is killed as soon as its
    #   first samples are stored (it has about 5 s left then), and restarted only once the
    #   job has left its final word in its folder.
    long_s, paused_s, short_s, every = 60, 20, 5, 0.1
    long_job = rig.submit(counter_payload("kill-daemon", long_s, every), cwd=tmp_path)
    paused = rig.submit(counter_payload("paused-while-away", paused_s, every), cwd=tmp_path)
    queued = rig.submit(counter_payload("nobody-has-this"), cwd=tmp_path)
    long_path = Path(rig.wait_job(long_job, ("r",), timeout=60)["jobpath"])
    paused_path = Path(rig.wait_job(paused, ("r",), timeout=60)["jobpath"])
    rig.ok("ketchup", "pause", str(paused))
    rig.wait_job(queued, ("q", "qw"))
    pid = daemon_pid(rig)
    short_job = rig.submit(counter_payload("ends-while-away", short_s, every), cwd=tmp_path)
    short_path = Path(rig.job(short_job)["jobpath"])
    with daemon_back(rig):
        wait_stored(rig, short_job, 1)  # it is sampling (and fails if it ended first)
        assert not (short_path / FINAL_FILE).exists(), "the short job ended before the kill"
        assert not (long_path / FINAL_FILE).exists(), "the long job ended before the kill"
        os.kill(pid, signal.SIGKILL)
        wait_final(short_path)  # the short job ends while the daemon is away
        rig.start()
        # a restarted daemon reads the folders of its live jobs before it answers: the short
        # job is c at once, the long one runs on
        assert rig.job(short_job)["status"] == "c"
        assert rig.job(long_job)["status"] == "r"
    assert rig.job(queued)["status"] in ("q", "qw")
    pips = rig.pipelines()
    assert pips["pip-counter-3"]["sampleid"] == "kill-daemon"
    assert pips["pip-counter-3"]["jobid"] == long_job
    job = rig.wait_job(long_job, timeout=long_s + 60)
    assert job["status"] == "c"
    # every sample but the 3 its sampler may skip when a busy machine makes it late by
    # more than its catch-up window
    assert samples(tmp_path / f"results.{long_job}.nc") >= sample_count(long_s, every) - 3
    assert samples(tmp_path / f"results.{short_job}.nc") == sample_count(short_s, every)
    assert prefect_state(rig, long_job) == "COMPLETED"
    # the paused job stayed paused through the restart, and resumes
    assert rig.job(paused)["status"] == "rp"
    assert rig.pipelines()["pip-counter-2"]["jobid"] == paused
    assert prefect_state(rig, paused, until=("PAUSED", *FINAL_STATES)) == "PAUSED"
    rig.ok("ketchup", "resume", str(paused))
    assert rig.wait_job(paused, timeout=paused_s + 60)["status"] == "c"
    check_paused_step(tmp_path / f"results.{paused}.nc", paused_path, paused_s, every)
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
    # the daemon restarts the server: ~15 s idle; the harness allows 150 s for a busy machine
    api = rig.wait_prefect()["prefect"]["api_url"]
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
    rig.wait_prefect()
    assert prefect_state(rig, jobid, timeout=60) == "COMPLETED"


def test_output_folder_gone_falls_back_to_job_folder(rig: Tomato, tmp_path: Path) -> None:
    rig.prepare("pip-counter-2", "no-output")
    payload = counter_payload("no-output", 2, 0.1, output={"path": "out"})
    jobid = rig.submit(payload, cwd=tmp_path)
    # at once: the 2 s job cannot have ended yet (waiting for it to run could see it end)
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
    # 20 s at 0.1 s: the job still runs through the refused stop and the stop that leaves it
    # running (three CLI calls, 1-3 s each on a busy machine); checked before it may end
    first_s, every = 20, 0.1
    payload = counter_payload("stop-modes", first_s, every, unlock_when_done=True)
    first = rig.submit(payload, cwd=tmp_path)
    first_path = Path(rig.wait_job(first, ("r",), timeout=60)["jobpath"])
    with daemon_back(rig):
        msg = rig.fails("tomato", "stop")
        assert f"jobs {first} are running" in msg and "--cancel-jobs" in msg
        assert rig.job(first)["status"] == "r"
        # leave it running: the daemon goes, the job finishes, the restarted daemon tells
        # the truth
        rig.ok("tomato", "stop", "--leave-running")
        assert not (first_path / FINAL_FILE).exists(), "the job ended before the daemon went"
        assert "no tomato daemon answers" in rig.fails("ketchup", "status")
        wait_final(first_path)
        rig.start()
        # a restarted daemon reads the folders of its live jobs before it answers
        assert rig.job(first)["status"] == "c"
        assert samples(tmp_path / f"results.{first}.nc") == sample_count(first_s, every)
        # cancel on stop: the job ends cd with its data written
        second = rig.submit(counter_payload("stop-modes", 60, every), cwd=tmp_path)
        stored = wait_stored(rig, second, 15)
        rig.ok("tomato", "stop", "--cancel-jobs")
        assert samples(tmp_path / f"results.{second}.nc") >= stored  # nothing stored is lost
        rig.start()
        assert rig.job(second)["status"] == "cd"


def test_every_socket_binds_to_loopback(rig: Tomato) -> None:
    # everything of the daemon is up first (after the tests above restarted it, its driver
    # hosts may still be starting on a busy machine); a daemon that is not running at all
    # fails here, saying so
    rig.wait_prefect()
    eventually(
        lambda: all(
            d["state"] == "running" for d in rig.ok("tomato", "status", "drivers").values()
        ),
        timeout=60,
        what="every driver host running",
    )
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
