"""Pushing the statuses the daemon decided into Prefect: each job's flow run, then its state.

Statuses a job's flow run writes itself (running, and how it ended) are recorded as pushed
by the daemon when it hears of them. A job started while Prefect was away runs outside
Prefect's flow engine: every state of its flow run, Running and the end included, is
pushed from here, as soon as Prefect answers. The id of every state tomato sets is recorded as
tomato's own, so that watching Prefect (:mod:`tomato_cli.daemon.prefect_watch`) never
mistakes it for a user's action. A failing push is retried on later rounds, and given up
after ``MAX_TRIES``, without holding up the others; a deleted flow run cancels its job.
A queued job's priority and hold are no statuses, but are mirrored here the same way: the
store says which jobs' flow runs lag (:meth:`StateStore.jobs_unmarked`), and each gets its
tags (``priority:<n>``, ``held``) and, when held, a waiting state named Held.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tomato_cli.daemon.prefect_watch import PrefectWatch, WatchHost
from tomato_cli.daemon.state import job_marks
from tomato_cli.models import LIVE_STATUSES, WAITING_STATUSES, Job

if TYPE_CHECKING:
    from tomato_cli.orchestration.flow_runs import FlowRuns

log = logging.getLogger(__name__)

MAX_TRIES = 5


class StatePush:
    def __init__(self, host: WatchHost, watch: PrefectWatch) -> None:
        self.host = host
        self.store = host.store
        self.watch = watch
        self._failures: dict[int, int] = {}  # job id -> consecutive failed pushes

    def create(self, flow_runs: FlowRuns, job: Job) -> str:
        """The job's flow run, made now; returns its id."""
        frid, state_id = flow_runs.create(job)
        self.host.attach_flow_run(job.id, frid, state_id)
        return frid

    def push_all(self, flow_runs: FlowRuns) -> list[str]:
        """Push every job Prefect is behind on; returns what went wrong, one line per job."""
        from prefect.exceptions import ObjectNotFound

        problems: list[str] = []
        for job, pushed in self.store.jobs_unsynced():
            try:
                self.push(flow_runs, job, pushed)
                self._failures.pop(job.id, None)
            except ObjectNotFound:
                self.watch.deleted(job)
            except Exception as exc:
                count = self._failures[job.id] = self._failures.get(job.id, 0) + 1
                log.warning("job %s: Prefect refused its state (%d): %s", job.id, count, exc)
                problems.append(f"job {job.id}: {type(exc).__name__}: {exc}")
                if count >= MAX_TRIES:
                    # give up on this record: Prefect keeps what it has, tomato says why
                    self.store.set_prefect_status(
                        job.id, job.status, "refused", while_status=job.status
                    )
                    log.error("job %s: state %s not mirrored in Prefect", job.id, job.status)
        for job, shown in self.store.jobs_unmarked():
            try:
                self.push_marks(flow_runs, job, shown)
            except ObjectNotFound:
                self.watch.deleted(job)
            except Exception as exc:
                log.warning("job %s: Prefect refused its priority or hold: %s", job.id, exc)
                problems.append(f"job {job.id}: {type(exc).__name__}: {exc}")
        return problems

    def push_marks(self, flow_runs: FlowRuns, job: Job, shown: str | None) -> None:
        """Show a queued job's priority and hold on its flow run (``shown``: what it shows)."""
        assert job.flow_run_id is not None
        marks = job_marks(job)
        flow_runs.tag(job.flow_run_id, job)
        was_held = shown is not None and shown.endswith(":1")
        if job.held != was_held:
            state_id = flow_runs.set_status(job.flow_run_id, job.status, held=job.held)
            self.store.set_prefect_status(job.id, job.status, state_id, while_status=job.status)
        self.store.set_prefect_marks(job.id, marks)

    def push(self, flow_runs: FlowRuns, job: Job, pushed: str | None) -> None:
        """Bring the job's flow run from ``pushed`` (what Prefect shows) to its status."""
        if job.flow_run_id is None:
            job.flow_run_id, pushed = self.create(flow_runs, job), "q"
        if pushed == job.status:
            return
        in_engine = self.store.runs_in_engine(job.id)
        if job.status == "rp" and job.connected_at is None and in_engine:
            return  # its engine is yet to write Running, which would undo the Paused
        if job.status in WAITING_STATUSES and self._moved_on(job):
            return  # started meanwhile: a waiting state now would hide its Running
        frid = job.flow_run_id
        if job.status == "r" and pushed in WAITING_STATUSES and in_engine:
            flow_runs.tag(frid, job)  # its engine writes Running; show the pipeline
            state_id = None
        elif job.status == "ce" and pushed in LIVE_STATUSES and in_engine:
            state_id = flow_runs.mark_crashed(frid, job.error or "the job's process died")
        else:
            force = job.status == "r" or not in_engine  # resumed; or no engine to race
            state_id = flow_runs.set_status(frid, job.status, job.error, force=force, held=job.held)
        self.store.set_prefect_status(job.id, job.status, state_id, while_status=job.status)
        if not in_engine and pushed in WAITING_STATUSES:
            flow_runs.tag(frid, job)  # show the pipeline
            flow_runs.log(frid, outside_engine_note(job))

    def _moved_on(self, job: Job) -> bool:
        """The job's status is no longer the one this round read (the next round pushes it)."""
        current = self.store.job(job.id)
        return current is None or current.status != job.status


def outside_engine_note(job: Job) -> str:
    """The line in the flow run's log of a job that runs outside Prefect's flow engine."""
    return (
        f"tomato: job {job.id} started on {job.pipeline} while Prefect was away, so it runs "
        "outside Prefect's flow engine: tomato writes its states here, and its steps' log "
        f"is in {job.jobpath}/job.log. Cancel, pause and resume work as usual."
    )
