"""Recovery of live jobs whose runner is through with them, on a real state store.

The job runner and the driver supervisor are stand-ins here (no processes): what is tested
is the daemon's decision, from what the runner said and what the job folder holds.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tomato_cli.daemon.lifecycle import Cause, JobLifecycle
from tomato_cli.daemon.recovery import Recovery
from tomato_cli.daemon.state import StateStore, now
from tomato_cli.models import Job, parse_payload
from tomato_cli.models.context import JobContext
from tomato_cli.models.job import write_final
from tomato_cli.rpc import Unreachable


class SaidDone:
    """A launcher whose runner (this very process: alive) said "done" for some jobs."""

    def __init__(self, done: set[int]) -> None:
        self.done = done

    def reap(self) -> None:
        pass

    def forget_ended(self, live: set[int]) -> None:
        self.done &= live

    def said_done(self, jobid: int) -> bool:
        return jobid in self.done

    def exited(self, jobid: int) -> bool:
        return False  # the job's process lives on

    def unforked(self, jobid: int) -> str | None:
        return None

    def exit_code(self, jobid: int) -> int | None:
        return None


class NoDrivers:
    def call(self, *args: object, **kwargs: object) -> None:
        raise Unreachable("no driver host in this test")


def _running_job(store: StateStore, lifecycle: JobLifecycle, tmp_path: Path) -> Job:
    payload = parse_payload(
        {
            "sample": {"identifier": "s1"},
            "method": [
                {
                    "component_role": "counter",
                    "technique_name": "count",
                    "max_duration": 60,
                    "sampling_interval": 1,
                }
            ],
        }
    )
    with store.transaction() as db:
        jobid = store.new_job_id(db)
    jobdir = tmp_path / "Jobs" / str(jobid)
    jobdir.mkdir(parents=True)
    job = Job(
        id=jobid,
        payload=payload,
        status="qw",
        submitted_at=now(),
        pid=os.getpid(),  # alive: only what the runner said can end it
        jobpath=str(jobdir),
    )
    store.save_job(job)
    assert lifecycle.move(job, "r", Cause.GATE)
    return job


@pytest.fixture
def world(tmp_path: Path) -> tuple[StateStore, JobLifecycle]:
    store = StateStore(tmp_path / "tomato.db")
    return store, JobLifecycle(store)


def _recovery(store: StateStore, lifecycle: JobLifecycle, launcher: SaidDone) -> Recovery:
    def context_of(job: Job) -> JobContext:
        return JobContext(jobid=job.id, daemon_port=1, job=job, components={})

    return Recovery(
        store,
        lifecycle,
        threading.RLock(),
        launcher,
        NoDrivers(),
        context_of,  # type: ignore[arg-type]
    )


def test_a_job_its_runner_is_done_with_but_without_a_final_word_ends_ce(
    world: tuple[StateStore, JobLifecycle], tmp_path: Path
) -> None:
    store, lifecycle = world
    stuck = _running_job(store, lifecycle, tmp_path)
    running = _running_job(store, lifecycle, tmp_path)
    launcher = SaidDone({stuck.id})
    recovery = _recovery(store, lifecycle, launcher)
    recovery.check_live_jobs()
    ended = store.job(stuck.id)
    assert ended is not None and ended.status == "ce"
    assert ended.error is not None and "without its final word" in ended.error
    assert "job-runners.log" in ended.error
    assert store.job_status(running.id) == "r"  # its runner said nothing: it runs on
    recovery.check_live_jobs()  # the next look
    assert launcher.done == set()  # what the runner said is forgotten once the job ended
    assert store.job_status(running.id) == "r"


def test_a_final_word_counts_over_the_runners_done(
    world: tuple[StateStore, JobLifecycle], tmp_path: Path
) -> None:
    store, lifecycle = world
    job = _running_job(store, lifecycle, tmp_path)
    write_final(Path(job.jobpath or ""), "c", None)
    _recovery(store, lifecycle, SaidDone({job.id})).check_live_jobs()
    ended = store.job(job.id)
    assert ended is not None and ended.status == "c" and ended.error is None


class Exited(SaidDone):
    """A launcher whose runner reported jobs' processes exited with these codes."""

    def __init__(self, codes: dict[int, int], unforked: dict[int, str] | None = None) -> None:
        super().__init__(set())
        self.codes = codes
        self.never = unforked or {}

    def exited(self, jobid: int) -> bool:
        return jobid in self.codes

    def exit_code(self, jobid: int) -> int | None:
        return self.codes.get(jobid) or None

    def unforked(self, jobid: int) -> str | None:
        return self.never.get(jobid)


def test_a_killed_jobs_process_ends_it_ce_with_the_signal_in_its_error_and_log(
    world: tuple[StateStore, JobLifecycle], tmp_path: Path
) -> None:
    store, lifecycle = world
    killed = _running_job(store, lifecycle, tmp_path)
    segv = _running_job(store, lifecycle, tmp_path)
    running = _running_job(store, lifecycle, tmp_path)
    (Path(killed.jobpath or "") / "pid").write_text(str(os.getpid()))  # as the runner does
    _recovery(store, lifecycle, Exited({killed.id: -9, segv.id: -11})).check_live_jobs()
    for job, says in ((killed, "killed by signal 9 (SIGKILL)"), (segv, "(SIGSEGV)")):
        ended = store.job(job.id)
        assert ended is not None and ended.status == "ce"
        assert ended.error is not None and says in ended.error
        assert says in (Path(job.jobpath or "") / "job.log").read_text()
    ended = store.job(killed.id)
    assert ended is not None and f"(pid {os.getpid()})" in (ended.error or "")  # its own pid
    assert store.job_status(running.id) == "r"


def test_a_job_its_runner_never_forked_says_so(
    world: tuple[StateStore, JobLifecycle], tmp_path: Path
) -> None:
    store, lifecycle = world
    job = _running_job(store, lifecycle, tmp_path)
    why = "its job runner (pid 77) exited with code 3 before starting it"
    _recovery(store, lifecycle, Exited({job.id: 3}, {job.id: why})).check_live_jobs()
    ended = store.job(job.id)
    assert ended is not None and ended.status == "ce" and ended.error == why
