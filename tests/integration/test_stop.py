"""`tomato stop` leaves no process of its daemon behind, and no job runner outlives its
daemon idle. Asserted on the processes themselves (psutil), before the harness's
kill_leftovers safety net.

The stops race a job runner that is still ending its last flow run: a job's status
changes as soon as its final word is in its folder, while its runner still reports the
flow run's end to Prefect and flushes its logs. A runner caught there by a stop used to
stay, idle, retrying a Prefect server that the stop had taken away.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.integration.harness import (
    Tomato,
    assert_nothing_left,
    counter_payload,
    eventually,
    processes_of,
    running,
)
from tests.integration.waits import wait_stored
from tests.reference import REFERENCE

# A job of 5 s at 1 ms keeps a runner and its driver busy, as in the report; on a busy
# 2-core machine it takes up to ~15 s, so 120 s fails only a stuck job.
JOB_S, EVERY = 5.0, 0.001
JOB_WAIT_S = 120.0
# An idle runner reads the end of its control pipe at once and has nothing left to send:
# it exits within a second; 30 s allows for a busy machine.
RUNNER_GONE_S = 30.0


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Tomato]:
    """A daemon of its own with one driver host; whatever a failed test left is killed
    afterwards. One driver host to stop: the stop takes the Prefect server away soonest
    after the jobs' end (each further host gave the runner time to flush, hiding the race).
    """
    with running(tmp_path, REFERENCE / "devices" / "devices_counter.json") as tomato:
        yield tomato


def runners(tomato: Tomato) -> list[psutil.Process]:
    found = []
    for proc in processes_of(tomato.root):
        try:
            if "flows.runner" in proc.cmdline():
                found.append(proc)
        except psutil.Error:
            continue
    return found


def alive(procs: list[psutil.Process]) -> list[int]:
    """The pids of ``procs`` still running (an orphan's zombie, left unreaped, is not)."""
    left = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc.pid)
        except psutil.Error:
            continue
    return left


def no_runner_was_killed(tomato: Tomato) -> None:
    """Runners ended on their own: the daemon's kill after a bound is a last resort."""
    log = (tomato.root / "log" / f"daemon_{tomato.port}.log").read_text()
    assert "after the stop: killed" not in log


def test_stop_right_after_jobs_end_leaves_nothing(rig: Tomato, tmp_path: Path) -> None:
    payload = counter_payload("stop-after", JOB_S, EVERY)
    for _ in range(2):  # back to back, as a user would: the second reuses the warm runner
        rig.prepare("pip-counter-1", "stop-after")  # ready again after the first job
        jobid = rig.submit(payload, cwd=tmp_path)
        assert rig.wait_job(jobid, timeout=JOB_WAIT_S)["status"] == "c"
    assert runners(rig)
    rig.ok("tomato", "stop", "--cancel-jobs")  # at once: the runner may still be ending it
    assert_nothing_left(rig.root)
    no_runner_was_killed(rig)


def test_stop_cancelling_a_job_leaves_nothing(rig: Tomato, tmp_path: Path) -> None:
    rig.prepare("pip-counter-1", "stop-cancel")
    jobid = rig.submit(counter_payload("stop-cancel", 60, EVERY), cwd=tmp_path)
    wait_stored(rig, jobid, 100)  # sampling: the cancel ends a flow run at work
    rig.ok("tomato", "stop", "--cancel-jobs")
    assert_nothing_left(rig.root)
    no_runner_was_killed(rig)


def test_a_runner_is_warm_only_once_a_pipeline_is_ready(rig: Tomato) -> None:
    """An idle instance pays for no job runner (about 100 MiB); a ready pipeline gets one
    imported ahead of its first job."""
    rig.wait_prefect()  # the daemon is all up: a runner it wanted would exist by now
    assert runners(rig) == []
    rig.prepare("pip-counter-1", "warm")
    eventually(lambda: runners(rig), timeout=RUNNER_GONE_S, what="a runner for the ready pipeline")


def test_a_runner_does_not_outlive_a_killed_daemon(rig: Tomato) -> None:
    """A daemon killed outright leaves its drivers and Prefect server to the next start
    (docs/usage.md, Stopping and faults), but not an idle runner: its control pipe closes."""
    rig.prepare("pip-counter-1", "warm")  # a runner is kept warm while a pipeline is ready
    warm = eventually(lambda: runners(rig), timeout=RUNNER_GONE_S, what="a warm job runner")
    os.kill(rig.ok("tomato", "status")["pid"], signal.SIGKILL)
    eventually(lambda: not alive(warm), timeout=RUNNER_GONE_S, what="no runner left")
    # the next daemon adopts the drivers and Prefect server, and its stop ends them all
    rig.start()
    rig.wait_prefect()
    rig.ok("tomato", "stop")
    assert_nothing_left(rig.root)
