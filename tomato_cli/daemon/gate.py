"""The gate: which queued job may run on which pipeline, and starting it there.

A queued job starts on a pipeline that (1) has every role of the payload with every
technique asked of it, (2) holds a sample named as the payload's sample, (3) is ready, and
runs no other job (nor shares a component with a pipeline that does). Jobs are taken by
priority, highest first, then in submission order (:func:`start_order`); a held job keeps
its q/qw status but is passed over. :func:`plan` is the pure part; :class:`Gate` applies it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Protocol

from tomato_cli.daemon.lifecycle import Cause, JobLifecycle
from tomato_cli.daemon.state import PipelineState, StateStore, now
from tomato_cli.models import WAITING_STATUSES, Component, Job

log = logging.getLogger(__name__)

Capabilities = Callable[[Component], list[str]]


class PipelineSlotKeeper(Protocol):
    """Takes and gives back pipelines' slots in Prefect (the Prefect sync does)."""

    @property
    def healthy(self) -> bool:
        """Prefect answers: a job's flow run can run in its engine and hold the slot."""

    def take_slot(self, pipeline: str, flow_run_id: str) -> str: ...

    def give_back_slot(self, lease_id: str) -> None: ...


def can_serve(job: Job, pip: PipelineState, caps: Capabilities) -> bool:
    """The pipeline has every role the job uses, with every technique asked of that role."""
    roles = pip.roles()
    for role, techniques in job.payload.techniques_by_role().items():
        comp = roles.get(role)
        if comp is None or not techniques <= set(caps(comp)):
            return False
    return True


def is_free_for(job: Job, pip: PipelineState) -> bool:
    """Ready, holding the job's sample, and running nothing."""
    return pip.ready and pip.jobid is None and pip.sampleid == job.payload.sample.identifier


def start_order(job: Job) -> tuple[int, int]:
    """The gate's sort key: the highest priority first, then the oldest (lowest id)."""
    return (-job.priority, job.id)


def plan(
    queued: list[Job], pipelines: dict[str, PipelineState], caps: Capabilities
) -> tuple[dict[int, str], list[tuple[int, str]]]:
    """New q/qw statuses, and (jobid, pipeline) assignments in :func:`start_order`; held
    jobs get their status but no pipeline."""
    statuses: dict[int, str] = {}
    assignments: list[tuple[int, str]] = []
    taken: set[str] = set()
    # a component shared by pipelines serves one job at a time
    busy = {c.name for p in pipelines.values() if p.jobid is not None for c in p.components}
    for job in sorted(queued, key=start_order):
        serving = [p for p in pipelines.values() if can_serve(job, p, caps)]
        statuses[job.id] = "qw" if serving else "q"
        if job.held:
            continue
        for pip in serving:
            names = {c.name for c in pip.components}
            if pip.name not in taken and not names & busy and is_free_for(job, pip):
                assignments.append((job.id, pip.name))
                taken.add(pip.name)
                busy |= names
                break
    return statuses, assignments


class Gate:
    """Looks at the queue whenever something changed (and twice a second) and starts jobs.

    While Prefect answers, a job's flow run takes the pipeline's slot in Prefect before
    the job starts (see :mod:`tomato_cli.orchestration.pipeline_slots`), and a job whose
    slot Prefect refuses keeps waiting. While Prefect is away (starting, or restarting),
    the daemon's own record of the pipeline is enough: the job starts outside Prefect's
    flow engine, and the Prefect sync makes its flow run, its states and its slot once
    Prefect is back.
    """

    def __init__(
        self,
        store: StateStore,
        lifecycle: JobLifecycle,
        lock: threading.RLock,
        caps: Capabilities,
        slots: PipelineSlotKeeper,
        launch: Callable[[Job], int],
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.lock = lock  # the daemon's decision lock
        self.caps = caps
        self.slots = slots
        self.launch = launch  # hands the job to a job runner; returns the runner's pid
        self.paused = False  # set while the daemon stops
        self.waiting_for_slot: dict[int, str] = {}  # job id -> why it has not started
        self._wake = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if self.paused:
                continue
            try:
                self.step()
            except Exception:
                log.exception("the gate failed; retrying")
                time.sleep(1)

    def step(self) -> None:
        with self.lock:
            queued = self.store.jobs(WAITING_STATUSES)
            if not queued:
                return
            pipelines = self.store.pipelines()
            statuses, assignments = plan(queued, pipelines, self.caps)
            by_id = {j.id: j for j in queued}
            for jobid, status in statuses.items():
                if by_id[jobid].status != status:
                    self.lifecycle.move(by_id[jobid], status, Cause.GATE)  # type: ignore[arg-type]
        for jobid, name in assignments:
            job = by_id[jobid]
            if not self.slots.healthy:
                self._start(job.id, name, lease=None)  # Prefect away: it follows later
            elif job.flow_run_id is not None:  # else the sync is making it
                self._take_slot_and_start(job.id, name, job.flow_run_id)

    def _take_slot_and_start(self, jobid: int, pipeline: str, flow_run_id: str) -> None:
        try:
            lease = self.slots.take_slot(pipeline, flow_run_id)  # a Prefect call: not locked
        except Exception as exc:
            if self.waiting_for_slot.get(jobid) != str(exc):
                log.warning("job %s: no slot on %s yet: %s", jobid, pipeline, exc)
            self.waiting_for_slot[jobid] = str(exc)
            return
        self.waiting_for_slot.pop(jobid, None)
        self._start(jobid, pipeline, lease)

    def _start(self, jobid: int, pipeline: str, lease: str | None) -> None:
        """Start the job on the pipeline if both are still as planned; ``lease`` is its
        flow run's slot, or None if Prefect is away (the job runs outside its engine)."""
        with self.lock:
            job = self.store.job(jobid)
            pipelines = self.store.pipelines()
            pip = pipelines.get(pipeline)
            busy = {c.name for p in pipelines.values() if p.jobid for c in p.components}
            if (
                self.paused  # the daemon is stopping
                or job is None
                or pip is None
                or job.status not in WAITING_STATUSES
                or job.held
                or not is_free_for(job, pip)
                or busy & {c.name for c in pip.components}
            ):
                if lease is not None:
                    self.slots.give_back_slot(lease)  # the queue changed meanwhile
                return
            with self.lifecycle.transaction() as db:
                pip.jobid = job.id
                self.store.save_pipeline(pip, db)
                job.pipeline, job.launched_at = pip.name, now()
                grant = secrets.token_hex(16)
                self.store.save_launch(job.id, grant, lease, db, in_engine=lease is not None)
                self.lifecycle.move(job, "r", Cause.GATE, db=db)
            self.lifecycle.committed()
            job.pid = self.launch(job)
            self.store.save_job(job)
        how = "" if lease is not None else " outside Prefect's engine (Prefect is away)"
        log.info("job %s started on %s%s (runner pid %s)", job.id, pip.name, how, job.pid)
