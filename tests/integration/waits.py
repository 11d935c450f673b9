"""Waits and checks bounded by what a job's own files say, not by wall time.

A test that needs "some data stored" or "the job has ended" waits for exactly that, read
from the job folder (the store, ``final.json``), however slow a busy machine makes the
job runner; the bounds here only keep a broken run from hanging, and are generous. A
count that depends on when something happened is taken from the job's own record of it.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import numpy as np
import xarray as xr

from drivers.sampler import sample_count
from tests.integration.harness import Tomato
from tomato_cli.models.job import FINAL_FILE

# A job runner on a 2-core machine whose cores another process keeps busy needs several
# seconds to collect and store its first batch; 120 s fails only a run that is stuck.
STORE_WAIT_S = 120.0


def stored(jobpath: str | Path, role: str = "counter") -> int:
    """The number of samples of ``role`` in the job's store now (read only)."""
    from tomato_cli.store import JobStore

    return JobStore(Path(jobpath), durable=False).count(role)


def wait_stored(
    tomato: Tomato, jobid: int, at_least: int, role: str = "counter", timeout: float = STORE_WAIT_S
) -> int:
    """Wait until the job's store holds ``at_least`` samples of ``role``; their number.

    The job must be live meanwhile: a job that ends first fails the wait with its status.
    """
    jobpath = tomato.job(jobid)["jobpath"]
    deadline = time.monotonic() + timeout
    while (n := stored(jobpath, role)) < at_least:
        assert time.monotonic() < deadline, f"job {jobid}: {n} of {at_least} samples stored"
        assert not (Path(jobpath) / FINAL_FILE).exists(), (
            f"job {jobid} ended with {n} samples stored, before {at_least} were"
        )
        time.sleep(0.1)
    return n


def wait_final(jobpath: str | Path, timeout: float = STORE_WAIT_S) -> None:
    """Wait until the job has left its final word in its folder (its process has ended it)."""
    final = Path(jobpath) / FINAL_FILE
    deadline = time.monotonic() + timeout
    while not final.exists():
        assert time.monotonic() < deadline, f"no {final} after {timeout} s"
        time.sleep(0.1)


def paused_after(jobpath: str | Path, role: str = "counter") -> list[float]:
    """How long the step on ``role`` had run at each pause, as the job logged it (once its
    data up to the pause is stored)."""
    log = (Path(jobpath) / "job.log").read_text()
    return [float(x) for x in re.findall(rf"{role}: paused after ([0-9.e+-]+) s", log)]


def check_paused_step(
    results: Path, jobpath: str | Path, duration: float, every: float, role: str = "counter"
) -> None:
    """A step of ``duration`` paused once ran for that long in all, in two parts: before the
    pause, and after the resume for what was left. How long the first part ran is the job's
    own figure (its log), not the test's: the pause lands whenever a busy machine lets it."""
    with xr.open_datatree(results, decode_times=False) as dt:
        uts = dt[role]["uts"].values
    log = (Path(jobpath) / "job.log").read_text()
    ran = paused_after(jobpath, role)
    left = list(
        dict.fromkeys(re.findall(rf"{role}: resumed for the remaining ([0-9.e+-]+) s", log))
    )
    if not ran:  # paused before its step began sampling: the whole step ran after the resume
        assert len(uts) == sample_count(duration, every)
        return
    assert len(ran) == len(left) == 1, (ran, left)
    ran_s, left_s = ran[0], float(left[0])
    assert abs(ran_s + left_s - duration) < 1e-3
    # the two parts are apart by the pause (seconds; samples are `every` apart)
    gap = int(np.argmax(np.diff(uts)))
    before, after = gap + 1, len(uts) - gap - 1
    assert uts[gap + 1] - uts[gap] > 1.0
    # after the resume: exactly the samples of the time left
    assert after == sample_count(left_s, every), (after, left_s)
    # before the pause: those of the time it ran, bar the last ones before the step's
    # task_stop reply and its last collection, which the job counts as run time too; they
    # take milliseconds, up to ~1 s on a busy machine: 10 samples at 0.1 s. One more at
    # most: the job's clock for "ran" starts milliseconds after the sampler's, so a sample
    # due at 3.0 s on the sampler's clock lands at 2.998 s on the job's (seen in CI)
    low, high = sample_count(ran_s, every) - round(1.0 / every), sample_count(ran_s, every) + 1
    assert low <= before <= high, (before, ran_s)
    assert len(uts) <= sample_count(duration, every)  # the resume did not start afresh


FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def prefect_state(
    rig: Tomato, jobid: int, until: tuple[str, ...] = FINAL_STATES, timeout: float = 60
) -> str:
    """The flow run's state type once it is one of ``until`` (or the last seen).

    60 s: the state is written by the job's engine or pushed by the daemon's sync (a round
    every few seconds); after a restart the daemon first waits for Prefect, which takes
    several seconds more on a busy machine. Passing runs return as soon as it is there.
    """
    api = rig.wait_prefect()["prefect"]["api_url"]
    deadline = time.monotonic() + timeout
    while True:
        job = rig.job(jobid)
        state = httpx.get(f"{api}/flow_runs/{job['flow_run_id']}").json()["state"]["type"]
        if state in until or time.monotonic() > deadline:
            return state
        time.sleep(0.3)
