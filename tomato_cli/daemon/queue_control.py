"""Steering the queue: a queued job's priority, and holding or releasing queued jobs.

Neither is a change of status (a held job stays q or qw, the statuses tomato 2.2 scripts
know), so neither goes through the lifecycle table; both are saved on the job at once and
mirrored into Prefect like statuses are (see :mod:`tomato_cli.daemon.state_push`). Every
request is checked whole before anything changes: one bad id refuses all of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from tomato_cli.daemon.state import StateStore
from tomato_cli.models import WAITING_STATUSES, Job
from tomato_cli.rpc import RpcError

log = logging.getLogger(__name__)


def checked_priority(value: Any) -> int:
    """A priority as given by a user: an integer, 0 or more; RpcError with the reason."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RpcError(f"priority must be a whole number, 0 or more, not {value!r}")
    if value < 0:
        raise RpcError(f"priority must be 0 or more, not {value}")
    return value


class QueueControl:
    def __init__(
        self, store: StateStore, lock: threading.RLock, on_change: Callable[[], None]
    ) -> None:
        self.store = store
        self.lock = lock  # the daemon's decision lock
        self.on_change = on_change  # the gate and the Prefect sync look again

    def _queued(self, jobids: list[int], verb: str) -> list[Job]:
        """The jobs, all queued (q or qw); RpcError naming every id that is not."""
        if not jobids:
            raise RpcError(f"give the ids of the jobs to {verb}")
        jobs, unknown = [], []
        for jobid in jobids:
            job = self.store.job(int(jobid))
            if job is None:
                unknown.append(str(jobid))
            else:
                jobs.append(job)
        if len(unknown) == 1:
            raise RpcError(f"job {unknown[0]} does not exist")
        if unknown:
            raise RpcError(f"jobs {', '.join(unknown)} do not exist")
        started = [j for j in jobs if j.status not in WAITING_STATUSES]
        if started:
            listed = ", ".join(f"{j.id} ({j.status})" for j in started)
            raise RpcError(f"cannot {verb} job(s) that are not queued: {listed}")
        return jobs

    def set_priority(self, jobid: int, priority: Any) -> Job:
        """Give a queued job a new priority."""
        priority = checked_priority(priority)
        with self.lock:
            (job,) = self._queued([jobid], "reprioritise")
            if job.priority != priority:
                job.priority = priority
                self.store.save_job(job)
                log.info("job %s: priority %s", job.id, priority)
        self.on_change()
        return job

    def hold(self, jobids: list[int], held: bool) -> list[Job]:
        """Hold queued jobs (the gate passes them over), or release them."""
        with self.lock:
            jobs = self._queued(jobids, "hold" if held else "release")
            with self.store.transaction() as db:
                for job in jobs:
                    if job.held != held:
                        job.held = held
                        self.store.save_job(job, db)
        log.info("job(s) %s %s", ", ".join(str(j.id) for j in jobs), "held" if held else "released")
        self.on_change()
        return jobs
