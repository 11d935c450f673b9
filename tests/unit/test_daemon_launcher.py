"""Closing the job launcher at stop, with stand-in runners (small Python processes that
speak the runner's protocol) instead of Prefect-importing ones."""

from __future__ import annotations

import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tomato_cli.daemon.launcher import JobLauncher

# says "ready", then for each job line what a fork and its child say; exits at EOF, as
# flows.runner does
RUNNER = """
import json, sys
print("ready", flush=True)
for line in sys.stdin:
    jobid = json.loads(line)["jobid"]
    print("started", jobid, 4000 + jobid, flush=True)
    print("done", jobid, flush=True)
    print("exit", jobid, 0, flush=True)
"""
# job 1's process is killed by SIGKILL before its flow returns; job 2's ends normally
KILLED = """
import sys
print("ready", flush=True)
for line, jobid in zip(sys.stdin, (1, 2)):
    print("started", jobid, 4000 + jobid, flush=True)
    if jobid == 2:
        print("done", jobid, flush=True)
    print("exit", jobid, -9 if jobid == 1 else 0, flush=True)
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
    """The part of a job context the launcher uses: it serializes it, and keeps the job's
    folder (where a forked job's pid is written)."""

    def __init__(self, jobid: int, jobdir: Path) -> None:
        self.jobid = jobid
        self.job = types.SimpleNamespace(jobpath=str(jobdir))

    def model_dump_json(self) -> str:
        return f'{{"jobid": {self.jobid}}}'


def _context(jobid: int, root: Path | None = None) -> Any:
    return Context(jobid, (root or Path("/nonexistent")) / str(jobid))


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


def test_each_job_has_its_pid_and_its_exit_code(tmp_path: Path, cleanup: list[JobLauncher]) -> None:
    jobs = launcher(tmp_path, KILLED)
    cleanup.append(jobs)
    pids: dict[int, int] = {}
    ended: list[int] = []
    jobs.on_job_pid = lambda jobid, pid: pids.__setitem__(jobid, pid)
    jobs.on_job_end = lambda: ended.append(1)
    runner_pid = jobs.launch(_context(1))
    assert jobs.launch(_context(2)) == runner_pid  # the runner's, until it has forked
    assert runner_pid == jobs.runners[0].pid
    deadline = time.monotonic() + START_S
    while len(ended) < 3 and time.monotonic() < deadline:  # done 2, exit 1, exit 2
        time.sleep(0.05)
    assert pids == {1: 4001, 2: 4002}
    assert jobs.exit_code(1) == -9  # killed: the code the recovery reports
    assert jobs.exit_code(2) is None  # exited 0: nothing to report
    assert jobs.exited(1) and jobs.exited(2)
    assert not jobs.said_done(1) and jobs.said_done(2)
    assert jobs.runners[0].jobs == {}
    jobs.forget_ended(live={1})
    assert jobs.exit_code(1) == -9 and not jobs.said_done(2)


def test_a_runner_is_kept_warm_only_while_asked(tmp_path: Path, cleanup: list[JobLauncher]) -> None:
    warm = [False]
    jobs = launcher(tmp_path, RUNNER)
    jobs.warm = lambda: warm[0]
    cleanup.append(jobs)
    jobs.fill()
    assert jobs.runners == []  # no pipeline ready, no job queued: no runner
    warm[0] = True
    jobs.fill()
    assert len(jobs.runners) == 1
    jobs.fill()
    assert len(jobs.runners) == 1  # one is enough


def test_a_job_a_runner_died_before_forking_ends_with_the_reason(
    tmp_path: Path, cleanup: list[JobLauncher]
) -> None:
    jobs = launcher(tmp_path, STUCK)
    cleanup.append(jobs)
    ended = threading.Event()
    jobs.on_job_end = ended.set
    jobs.launch(_context(3, tmp_path))  # STUCK never forks
    runner = jobs.runners[0]
    assert runner.ready.wait(START_S)
    assert not jobs.exited(3)
    runner.proc.kill()
    assert ended.wait(START_S)
    assert jobs.exited(3) and jobs.exit_code(3) == -9  # the runner's code stands for it
    why = jobs.unforked(3)
    assert why is not None and f"job runner (pid {runner.pid})" in why and "before" in why


# forks job 5 (its pid in its folder, as flows.runner writes it) and dies before saying so
DIES_AFTER_FORK = """
import json, sys, time
from pathlib import Path
print("ready", flush=True)
job = json.loads(sys.stdin.readline())
Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
(Path(sys.argv[1]) / "pid").write_text("4242")
raise SystemExit(9)
"""


def test_a_job_forked_before_its_runner_died_is_not_taken_for_unforked(
    tmp_path: Path, cleanup: list[JobLauncher]
) -> None:
    jobs = launcher(tmp_path, DIES_AFTER_FORK)
    jobs.command.append(str(tmp_path / "5"))
    cleanup.append(jobs)
    ended = threading.Event()
    jobs.on_job_end = ended.set
    jobs.launch(_context(5, tmp_path))
    assert ended.wait(START_S)  # the runner's pipe closed
    jobs.reap()
    assert not jobs.exited(5) and jobs.unforked(5) is None  # its pid decides, not the runner
    assert 5 in jobs.runners[0].jobs  # still followed, so that a stop does not kill it
    jobs.forget_ended(live=set())
    assert jobs.runners[0].jobs == {}
