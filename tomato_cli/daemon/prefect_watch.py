"""What users did in Prefect to the jobs' flow runs, and handing it to the daemon.

Called by the Prefect sync every ``WATCH_INTERVAL_S``. A state no job's status expects and
tomato did not set itself is a user's action: the table in
:mod:`tomato_cli.daemon.prefect_actions` says what it becomes. Runs of the job deployment
that are no job yet (a Run, or a Retry of a finished job) are submitted as new jobs; a
deleted flow run cancels its job.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from tomato_cli.daemon.prefect_actions import EXPECTED, Reaction, reaction_to
from tomato_cli.daemon.state import StateStore, now
from tomato_cli.models import FINAL_STATUSES, Job

if TYPE_CHECKING:
    from tomato_cli.orchestration.flow_runs import FlowRuns

log = logging.getLogger(__name__)

# how long a job's engine may take to write the end it reported (slow under load)
ENGINE_END_GRACE_S = 120.0


class WatchHost(Protocol):
    """What watching Prefect may ask of the daemon."""

    store: StateStore

    def attach_flow_run(self, jobid: int, flow_run_id: str, state_id: str) -> None:
        """The job's flow run exists in Prefect now, waiting in the state ``state_id``."""

    def act_from_prefect(self, jobid: int, reaction: Reaction, reason: str) -> None:
        """Do what a user did to the job's flow run in Prefect (cancel, fail, pause...)."""

    def submit_from_prefect(
        self, flow_run_id: str | None, parameters: dict[str, Any], retry_of: Job | None
    ) -> Job:
        """A run made in Prefect (or a Retry of ``retry_of``) becomes a new job, without a
        flow run yet; raises ValueError with the reason."""

    def has_ended(self, job: Job) -> bool:
        """The job's flow run left its final word (its own end is no user action)."""


class PrefectWatch:
    def __init__(self, host: WatchHost) -> None:
        self.host = host
        self.store = host.store

    def look(self, flow_runs: FlowRuns) -> None:
        """Deleted runs, unexpected states and new runs of the job deployment."""
        refs = self.store.job_refs(("q", "qw", "r", "rp", "rd"))
        synced = {r.id for r in refs} - {job.id for job, _ in self.store.jobs_unsynced()}
        by_run = {r.flow_run_id: r for r in refs if r.flow_run_id and r.id in synced}
        for frid in flow_runs.missing(list(by_run)):
            job = self.store.job(by_run.pop(frid).id)
            if job is not None:
                self.deleted(job)
        expected: dict[tuple[str, ...], list[str]] = {}
        for frid, ref in by_run.items():
            expected.setdefault(EXPECTED[ref.status], []).append(frid)
        own = self.store.own_state_ids()
        for frid, (stype, sname, state_id) in flow_runs.unexpected(expected).items():
            ref = by_run[frid]
            if own.get(ref.id) == state_id:
                continue  # the state tomato set itself
            self._react(flow_runs, ref.id, stype, sname)
        unsynced = {job.id for job, _ in self.store.jobs_unsynced()}
        for run in flow_runs.new_runs([r.flow_run_id for r in refs if r.flow_run_id]):
            self._new_run(flow_runs, run, unsynced)

    def deleted(self, job: Job) -> None:
        """The job's flow run was deleted in Prefect: a live job is cancelled."""
        log.info("job %s: its flow run was deleted in Prefect", job.id)
        self.store.set_prefect_status(job.id, job.status, "deleted")
        if job.status not in FINAL_STATUSES:
            self.host.act_from_prefect(job.id, Reaction.CANCEL, "its flow run was deleted")

    def _react(self, flow_runs: FlowRuns, jobid: int, stype: str, sname: str) -> None:
        job = self.store.job(jobid)
        if job is None or job.flow_run_id is None or self.host.has_ended(job):
            return  # its flow run wrote its own end: the daemon hears of it anyway
        reaction, why = reaction_to(job.status, stype)
        if reaction is Reaction.IGNORE:
            return
        log.info("job %s (%s): %s %s in Prefect: %s", jobid, job.status, stype, sname, reaction)
        if reaction is Reaction.PUT_BACK:
            state_id = flow_runs.set_status(job.flow_run_id, job.status, force=True, held=job.held)
            self.store.set_prefect_status(job.id, job.status, state_id)
            flow_runs.log(
                job.flow_run_id,
                f"tomato refused {sname or stype} for job {job.id} ({job.status}): {why}",
                logging.WARNING,
            )
            return
        self.host.act_from_prefect(jobid, reaction, f"{why} ({sname or stype})")
        flow_runs.log(job.flow_run_id, f"tomato: job {job.id}: {reaction.value}: {why}")

    def _new_run(self, flow_runs: FlowRuns, run: dict[str, Any], unsynced: set[int]) -> None:
        """A run of the job deployment that is no live job: a Run or a Retry in Prefect."""
        params = run["parameters"]
        old = self._job_of_run(run["id"], params)
        if old is not None:
            if old.status not in FINAL_STATUSES or old.id in unsynced:
                return  # its end is not in Prefect yet: the next push settles it
            retry = _moved_after_the_end(run, old)
            if not retry and not _engine_overdue(old):
                return  # its engine is writing the end the job reported
            # the run gets the job's end: a Retry's old run keeps it, and an engine that
            # never wrote it (its process died first) has it written by tomato
            state_id = flow_runs.set_status(run["id"], old.status, old.error, force=True)
            self.store.set_prefect_status(old.id, old.status, state_id)
            if not retry:
                return
            # a Retry: the payload runs again as a new job
            params = {"payload": old.payload.model_dump(mode="json", exclude_none=True)}
            run = {**run, "id": None}
        try:
            job = self.host.submit_from_prefect(run["id"], params, old)
        except ValueError as exc:
            if run["id"] is None:
                flow_runs.log(old.flow_run_id, f"tomato: the retry was refused: {exc}")
            else:
                flow_runs.refuse(run["id"], f"tomato refused this run: {exc}")
            return
        if old is not None and old.flow_run_id:
            flow_runs.log(
                old.flow_run_id,
                f"tomato: job {old.id} ended as {old.status} and does not run again; "
                f"its payload was submitted again as job {job.id} (flow run job-{job.id})",
            )
        if run["id"] is not None:
            job.flow_run_id = run["id"]
            state_id = flow_runs.adopt(run["id"], job)
            # only now may the gate start it: its run waits, named and parametrised
            self.host.attach_flow_run(job.id, run["id"], state_id)
            flow_runs.log(run["id"], f"tomato: this run is job {job.id}; it waits in the queue")

    def _job_of_run(self, flow_run_id: str, params: dict[str, Any]) -> Job | None:
        jobid = params.get("jobid")
        if not isinstance(jobid, int):
            return None
        job = self.store.job(jobid)
        return job if job is not None and job.flow_run_id == flow_run_id else None


def _moved_after_the_end(run: dict[str, Any], job: Job) -> bool:
    """The ended job's run entered its current (active) state after the job ended: a Retry
    (Scheduled, then Pending and Running if a worker takes it). A state from before the end
    is the job's own: its engine has yet to write the end the job reported."""
    since = run.get("state_time")
    return since is None or job.completed_at is None or since > job.completed_at


def _engine_overdue(job: Job) -> bool:
    """The job ended longer ago than its engine may take to write that end in Prefect."""
    ended = job.completed_at
    return ended is not None and (now() - ended).total_seconds() > ENGINE_END_GRACE_S
