"""The job lifecycle: every status, every allowed transition, and what may cause it.

One table (``TRANSITIONS``) says which status may follow which, and who may cause the
change. Every status change in the daemon goes through :meth:`JobLifecycle.move`; a
transition the table does not allow is refused and logged, never applied.

| status | meaning                        | Prefect state (type / name)   |
|--------|--------------------------------|-------------------------------|
| q      | queued                         | PAUSED / Queued               |
| qw     | queued, a matching pipeline    | PAUSED / Waiting              |
| r      | running                        | RUNNING / Running             |
| rp     | paused (pipeline kept)         | PAUSED / Paused               |
| rd     | asked to stop                  | CANCELLING / Cancelling       |
| c      | completed                      | COMPLETED / Completed         |
| ce     | ended with an error            | FAILED / Failed, CRASHED      |
| cd     | cancelled                      | CANCELLED / Cancelled         |
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from tomato_cli.daemon.state import StateStore, now
from tomato_cli.models import FINAL_STATUSES, Job, JobStatus

log = logging.getLogger(__name__)


class Cause(StrEnum):
    """Who changes a job's status."""

    SUBMIT = "submit"  # `ketchup submit`, or a run of the job deployment made in Prefect
    COMMAND = "command"  # `ketchup cancel/pause/resume`, `tomato stop --cancel-jobs`
    GATE = "gate"  # the daemon's gate, matching queued jobs to ready pipelines
    RUNNER = "runner"  # the job's own flow run, reporting how it ended
    PREFECT = "prefect"  # an action on the job's flow run in Prefect's UI, CLI or API
    RECOVERY = "recovery"  # the daemon, finding the job's process gone


@dataclass(frozen=True)
class Transition:
    sources: frozenset[JobStatus | None]  # None: the job is new
    target: JobStatus
    causes: frozenset[Cause]
    meaning: str


def _t(sources: str, target: JobStatus, causes: str, meaning: str) -> Transition:
    return Transition(
        frozenset(None if s == "new" else s for s in sources.split()),  # type: ignore[misc]
        target,
        frozenset(Cause(c) for c in causes.split()),
        meaning,
    )


TRANSITIONS: Final[tuple[Transition, ...]] = (
    _t("new", "q", "submit", "a valid payload enters the queue"),
    _t("q", "qw", "gate", "a pipeline that can run the job exists"),
    _t("qw", "q", "gate", "no pipeline can run the job any more (devices reloaded)"),
    _t("q qw", "r", "gate", "started on a ready pipeline that holds its sample"),
    _t("q qw", "cd", "command prefect", "cancelled (or its flow run deleted) while queued"),
    _t("q qw", "ce", "prefect", "Failed or Crashed set in Prefect while queued"),
    _t("r", "rp", "command prefect", "paused: the step stops, data and pipeline are kept"),
    _t("rp", "r", "command prefect", "resumed: the rest of the step, then the next ones"),
    _t("r rp", "rd", "command prefect", "asked to stop: cancel, delete, or Failed set"),
    _t("r rp rd", "c", "runner recovery", "every step completed"),
    _t("r rp rd", "cd", "runner recovery", "stopped on request; data and results kept"),
    _t("r rp rd", "ce", "runner recovery", "a step failed, or the job's process died"),
)


class IllegalTransition(ValueError):
    """The table does not allow this change of status by this cause."""


def find_transition(source: JobStatus | None, target: JobStatus, cause: Cause) -> Transition:
    """The table's row for this change; :class:`IllegalTransition` if there is none."""
    for row in TRANSITIONS:
        if source in row.sources and row.target == target and cause in row.causes:
            return row
    raise IllegalTransition(f"{cause.value} cannot move a job from {source or 'new'} to {target}")


@dataclass(frozen=True)
class Change:
    """A status change that was applied (listeners are told after it is committed)."""

    job: Job
    source: JobStatus | None
    cause: Cause


class JobLifecycle:
    """Applies status changes: checks the table, stamps times, releases the pipeline.

    Callers hold the daemon's decision lock, so that no two decisions interleave.
    """

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._listeners: list[Callable[[Change], None]] = []
        self._pending: list[Change] = []

    def listen(self, listener: Callable[[Change], None]) -> None:
        """Call ``listener`` after every applied change (it must not block)."""
        self._listeners.append(listener)

    def move(
        self,
        job: Job,
        target: JobStatus,
        cause: Cause,
        error: str | None = None,
        db: sqlite3.Connection | None = None,
    ) -> bool:
        """Move ``job`` to ``target`` and save it; False (logged) if the table refuses.

        The source status is the stored one (None for a job being submitted), never a
        stale copy in memory. A job already in ``target`` stays as it is (True). Inside a
        caller's transaction (``db``), listeners are told when :meth:`committed` is called.
        """
        source = self.store.job_status(job.id, db)
        if source == target:
            return True
        try:
            find_transition(source, target, cause)
        except IllegalTransition as exc:
            log.warning("job %s: refused: %s", job.id, exc)
            return False
        job.status = target
        if error is not None:
            job.error = error
        if target in FINAL_STATUSES:
            job.completed_at = now()
            self._release_pipeline(job, db)
        self.store.save_job(job, db)
        log.info("job %s: %s -> %s (%s)", job.id, source or "new", target, cause.value)
        change = Change(job, source, cause)
        if db is None:
            self._tell(change)
        else:
            self._pending.append(change)
        return True

    def committed(self) -> None:
        """Tell listeners about changes made inside a transaction that has committed."""
        pending, self._pending = self._pending, []
        for change in pending:
            self._tell(change)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A store transaction for moves made with ``db``; call :meth:`committed` after it.
        If it is rolled back, its moves are forgotten (no listener hears of them)."""
        try:
            with self.store.transaction() as db:
                yield db
        except BaseException:
            self._pending = []
            raise

    def _release_pipeline(self, job: Job, db: sqlite3.Connection | None) -> None:
        if not job.pipeline:
            return
        pip = self.store.pipelines().get(job.pipeline)
        if pip is not None and pip.jobid == job.id:
            pip.jobid = None
            # not ready after the job unless the payload unlocks it; a pipeline made not
            # ready while the job ran (`tomato pipeline unready`) stays so
            pip.ready = pip.ready and job.payload.settings.unlock_when_done
            self.store.save_pipeline(pip, db)

    def _tell(self, change: Change) -> None:
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:  # a listener must never undo or block a status change
                log.exception("job %s: listener %r failed", change.job.id, listener)
