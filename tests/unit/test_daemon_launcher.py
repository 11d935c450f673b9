"""Closing the job launcher at stop, with stand-in runners (small Python processes that
speak the runner's protocol) instead of Prefect-importing ones."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tomato_cli.daemon.launcher import JobLauncher

# says "ready", then "done <id>" for each job line; exits at EOF, as flows.runner does
RUNNER = """
import json, sys
print("ready", flush=True)
for line in sys.stdin:
    print("done", json.loads(line)["jobid"], flush=True)
"""
# a runner that never exits on its own: what a stop used to leave behind
STUCK = """
import sys, time
print("ready", flush=True)
sys.stdin.read()
time.sleep(600)
"""
# Stand-ins start in well under a second; 30 s allows for a busy 2-core machine.
START_S = 30.0


class Context:
    """The part of a job context the launcher uses: it only serializes it."""

    def __init__(self, jobid: int) -> None:
        self.jobid = jobid

    def model_dump_json(self) -> str:
        return f'{{"jobid": {self.jobid}}}'


def _context(jobid: int) -> Any:
    return Context(jobid)


def launcher(tmp_path: Path, code: str) -> JobLauncher:
    launcher = JobLauncher(tmp_path, {})
    launcher.command = [sys.executable, "-c", code]
    return launcher


@pytest.fixture
def cleanup() -> Iterator[list[JobLauncher]]:
    made: list[JobLauncher] = []
    yield made
    for each in made:
        for runner in each.runners:
            if runner.alive():
                runner.proc.kill()
                runner.proc.wait()


def test_close_waits_for_runners_and_starts_none(
    tmp_path: Path, cleanup: list[JobLauncher]
) -> None:
    jobs = launcher(tmp_path, RUNNER)
    cleanup.append(jobs)
    jobs.fill()
    runner = jobs.runners[0]
    assert runner.ready.wait(START_S)
    jobs.close(keep=set(), timeout=START_S)
    assert runner.proc.returncode == 0  # it read the end of its pipe and exited
    jobs.fill(wanted=True)  # a late fill (a job ended, or was queued) starts nothing
    assert [r for r in jobs.runners if r.alive()] == []
    with pytest.raises(RuntimeError, match="stopping"):
        jobs.launch(_context(1))


def test_close_kills_a_runner_that_stays(tmp_path: Path, cleanup: list[JobLauncher]) -> None:
    jobs = launcher(tmp_path, STUCK)
    cleanup.append(jobs)
    jobs.fill()
    runner = jobs.runners[0]
    assert runner.ready.wait(START_S)
    t0 = time.monotonic()
    jobs.close(keep=set(), timeout=1.0)
    assert time.monotonic() - t0 < START_S
    assert runner.proc.returncode is not None and runner.proc.returncode < 0  # killed


def test_close_leaves_the_runner_of_a_job_left_running(
    tmp_path: Path, cleanup: list[JobLauncher]
) -> None:
    jobs = launcher(tmp_path, STUCK)
    cleanup.append(jobs)
    jobs.launch(_context(7))  # STUCK never says "done": job 7 runs on
    runner = jobs.runners[0]
    assert runner.ready.wait(START_S)
    jobs.close(keep={7}, timeout=1.0)
    assert runner.alive()
    assert runner.proc.stdin is not None and runner.proc.stdin.closed  # no more jobs for it
