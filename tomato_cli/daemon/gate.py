"""The gate: which queued job may run on which pipeline, and starting it there.

A queued job starts on a pipeline that (1) has every role of the payload with every
technique asked of it, (2) holds a sample named as the payload's sample, (3) is ready, and
runs no other job (nor shares a component with a pipeline that does). Jobs are taken in
submission order. :func:`plan` is the pure part; :class:`Gate` applies it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable

from tomato_cli.daemon.lifecycle import Cause, JobLifecycle
from tomato_cli.daemon.state import PipelineState, StateStore, now
from tomato_cli.models import WAITING_STATUSES, Component, Job

log = logging.getLogger(__name__)

Capabilities = Callable[[Component], list[str]]


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


def plan(
    queued: list[Job], pipelines: dict[str, PipelineState], caps: Capabilities
) -> tuple[dict[int, str], list[tuple[int, str]]]:
    """New q/qw statuses, and (jobid, pipeline) assignments in submission order."""
    statuses: dict[int, str] = {}
    assignments: list[tuple[int, str]] = []
    taken: set[str] = set()
    # a component shared by pipelines serves one job at a time
    busy = {c.name for p in pipelines.values() if p.jobid is not None for c in p.components}
    for job in sorted(queued, key=lambda j: j.id):
        serving = [p for p in pipelines.values() if can_serve(job, p, caps)]
        statuses[job.id] = "qw" if serving else "q"
        for pip in serving:
            names = {c.name for c in pip.components}
            if pip.name not in taken and not names & busy and is_free_for(job, pip):
                assignments.append((job.id, pip.name))
                taken.add(pip.name)
                busy |= names
                break
    return statuses, assignments


class Gate:
    """Looks at the queue whenever something changed (and twice a second) and starts jobs."""

    def __init__(
        self,
        store: StateStore,
        lifecycle: JobLifecycle,
        lock: threading.RLock,
        caps: Capabilities,
        launch: Callable[[Job], int],
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.lock = lock  # the daemon's decision lock
        self.caps = caps
        self.launch = launch  # hands the job to a job runner; returns its process id
        self.paused = False  # set while the daemon stops
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
                if job.flow_run_id is None:
                    continue  # its flow run does not exist yet: Prefect is still starting
                self._start(job, pipelines[name])

    def _start(self, job: Job, pip: PipelineState) -> None:
        with self.store.transaction() as db:
            pip.jobid = job.id
            self.store.save_pipeline(pip, db)
            job.pipeline, job.launched_at = pip.name, now()
            self.store.save_launch(job.id, secrets.token_hex(16), db)
            self.lifecycle.move(job, "r", Cause.GATE, db=db)
        self.store.set_prefect_status(job.id, "r")  # Prefect's engine writes Running itself
        self.lifecycle.committed()
        job.pid = self.launch(job)
        self.store.save_job(job)
        log.info("job %s started on %s (runner pid %s)", job.id, pip.name, job.pid)
