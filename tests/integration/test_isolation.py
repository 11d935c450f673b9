"""One crash ends one job: each job runs in a process of its own, forked by the job runner.

Four jobs run at once; one of them loses its process (``kill -9``, or a call that
segfaults), or its driver host segfaults. Exactly that job ends ``ce``, with its stored
data in its results file and the reason in its log and in Prefect; the others end ``c``
with all their samples.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import xarray as xr

from drivers.sampler import sample_count
from tests.integration.harness import DATA, Tomato, counter_payload
from tests.integration.waits import prefect_state, wait_stored
from tomato_cli.rpc import Unreachable, call

pytestmark = pytest.mark.slow

# 60 s at 0.2 s: the jobs are still sampling when the fault comes, however long a busy
# machine takes to submit four of them (a CLI call can take seconds there) and store the
# victim's first samples.
DURATION_S, EVERY_S = 60.0, 0.2
# A sampler late by more than its catch-up window on a busy machine skips up to 2 slots
# (as in test_faults' driver test): "all their samples" is the ideal count less those.
LATE_SLOTS = 2


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tomato]:
    tomato = Tomato(tmp_path_factory.mktemp("isolation"))
    # jobs' processes answer SIGUSR1 with a segfault, driver hosts answer debug_segfault
    os.environ["TOMATO_DEBUG_COMMANDS"] = "1"
    try:
        tomato.init(DATA / "devices_rig.yml")
        tomato.start()
        del os.environ["TOMATO_DEBUG_COMMANDS"]
        tomato.wait_prefect()
        yield tomato
    finally:
        os.environ.pop("TOMATO_DEBUG_COMMANDS", None)
        tomato.stop()


def samples(path: Path, role: str = "counter") -> int:
    with xr.open_datatree(path, decode_times=False) as dt:
        return dt[role].sizes["uts"]


def four_jobs(rig: Tomato, tmp_path: Path, name: str) -> list[int]:
    """Four counter jobs, running at once, each with samples stored."""
    for n in range(1, 5):  # all ready first: the jobs start as fast as they are submitted
        rig.prepare(f"pip-counter-{n}", f"{name}-{n}")
    jobs = []
    for n in range(1, 5):
        payload = counter_payload(f"{name}-{n}", DURATION_S, EVERY_S, unlock_when_done=True)
        jobs.append(rig.submit(payload, cwd=tmp_path))
    for jobid in jobs:
        rig.wait_job(jobid, ("r",), timeout=90)
    for jobid in jobs:
        wait_stored(rig, jobid, 5)  # fails if a job ended before the fault
    return jobs


def job_process(rig: Tomato, jobid: int) -> int:
    """The pid of the job's own process: not a runner's, not shared with another job."""
    pid = rig.job(jobid)["pid"]
    assert pid is not None and pid not in rig.runner_pids()
    return int(pid)


def assert_only_victim_crashed(
    rig: Tomato, tmp_path: Path, jobs: list[int], victim: int, stored: int, reason: str
) -> None:
    ended = {jobid: rig.wait_job(jobid, timeout=120) for jobid in jobs}
    assert ended[victim]["status"] == "ce", ended[victim]
    assert reason in ended[victim]["error"], ended[victim]["error"]
    path = tmp_path / f"results.{victim}.nc"
    deadline = time.monotonic() + 30
    while not path.exists():
        assert time.monotonic() < deadline, "no results written for the crashed job"
        time.sleep(0.3)
    assert samples(path) >= stored  # its data kept
    job_log = (Path(ended[victim]["jobpath"]) / "job.log").read_text()
    assert reason in job_log
    assert prefect_state(rig, victim) == "CRASHED"
    api = rig.wait_prefect()["prefect"]["api_url"]
    state = httpx.get(f"{api}/flow_runs/{ended[victim]['flow_run_id']}").json()["state"]
    assert reason in state["message"]
    for jobid in jobs:
        if jobid == victim:
            continue
        assert ended[jobid]["status"] == "c", ended[jobid]
        got = samples(tmp_path / f"results.{jobid}.nc")
        assert got >= sample_count(DURATION_S, EVERY_S) - LATE_SLOTS, (jobid, got)
        assert prefect_state(rig, jobid) == "COMPLETED"


def crash_one(
    rig: Tomato, tmp_path: Path, name: str, crash: Callable[[int], None], reason: str
) -> None:
    jobs = four_jobs(rig, tmp_path, name)
    pids = {jobid: job_process(rig, jobid) for jobid in jobs}
    assert len(set(pids.values())) == len(jobs)  # a process each
    victim = jobs[1]
    stored = wait_stored(rig, victim, 5)
    crash(pids[victim])
    assert_only_victim_crashed(rig, tmp_path, jobs, victim, stored, reason)


def test_kill_9_of_one_jobs_process_ends_that_job_alone(rig: Tomato, tmp_path: Path) -> None:
    crash_one(
        rig,
        tmp_path,
        "kill9",
        lambda pid: os.kill(pid, signal.SIGKILL),
        "killed by signal 9 (SIGKILL)",
    )


def test_a_segfault_in_one_jobs_process_ends_that_job_alone(rig: Tomato, tmp_path: Path) -> None:
    # SIGUSR1 makes the job's process call ctypes.string_at(0) (flows.fault_injection)
    crash_one(
        rig,
        tmp_path,
        "segv",
        lambda pid: os.kill(pid, signal.SIGUSR1),
        "killed by signal 11 (SIGSEGV)",
    )


def test_a_driver_call_that_segfaults_ends_only_its_drivers_job(
    rig: Tomato, tmp_path: Path
) -> None:
    """A segfault in a driver's vendor library takes its driver host down: the job on
    that driver ends ce, the jobs on another driver run on."""
    for n in range(1, 4):
        rig.prepare(f"pip-counter-{n}", f"drv-{n}")
    rig.prepare("pip-psutil", "drv-psutil")
    counters = []
    for n in range(1, 4):
        payload = counter_payload(f"drv-{n}", DURATION_S, EVERY_S, unlock_when_done=True)
        counters.append(rig.submit(payload, cwd=tmp_path))
    victim = rig.submit(
        {
            "version": "2.2",
            "sample": {"identifier": "drv-psutil"},
            "settings": {"unlock_when_done": True},
            "method": [
                {
                    "component_role": "psutil",
                    "technique_name": "all_info",
                    "max_duration": DURATION_S,
                    "sampling_interval": EVERY_S,
                }
            ],
        },
        cwd=tmp_path,
    )
    for jobid in counters:
        wait_stored(rig, jobid, 5)
    stored = wait_stored(rig, victim, 5, role="psutil")
    host = rig.ok("tomato", "status", "drivers")["psutil"]
    with pytest.raises(Unreachable):  # it never answers: it segfaults
        call(host["port"], "debug_segfault", timeout=5)
    ended = {jobid: rig.wait_job(jobid, timeout=120) for jobid in [*counters, victim]}
    assert ended[victim]["status"] == "ce", ended[victim]
    assert samples(tmp_path / f"results.{victim}.nc", "psutil") >= stored
    for jobid in counters:
        assert ended[jobid]["status"] == "c", ended[jobid]
        got = samples(tmp_path / f"results.{jobid}.nc")
        assert got >= sample_count(DURATION_S, EVERY_S) - LATE_SLOTS, (jobid, got)
