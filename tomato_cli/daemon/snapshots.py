"""Periodic snapshots: triggered by a Prefect automation per job, written by the daemon.

When a job with ``settings.snapshot`` starts, the Prefect sync creates a proactive
automation for it (shown on the Automations page) that fires whenever the job has had no
snapshot for the payload's interval; the daemon hears it fire, writes the snapshot from the
job's store (no new process: about the cost of ``ketchup snapshot``), and emits
``tomato.job.snapshot``, which re-arms it. The automation is removed when the job ends.

The daemon writes snapshots on its own, and says so in the job's log, while Prefect is
away, when an automation did not fire in time, and for intervals below the 10 s that
Prefect's automations can do.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tomato_cli.daemon.lifecycle import Change
from tomato_cli.daemon.state import StateStore
from tomato_cli.models import FINAL_STATUSES, Job
from tomato_cli.models.context import JobContext
from tomato_cli.orchestration.events import (
    AUTOMATION_PREFIX,
    MIN_AUTOMATION_INTERVAL_S,
    SNAPSHOT,
    Origin,
    job_event,
    snapshot_automation,
)

if TYPE_CHECKING:
    from tomato_cli.orchestration.flow_runs import FlowRuns

log = logging.getLogger(__name__)

# how late an automation may be before the daemon writes the snapshot itself: Prefect
# evaluates proactive triggers every 5 s, and its event may take a moment to arrive
GRACE_S = 12.0


@dataclass
class Periodic:
    jobid: int
    interval: float
    last: float = field(default_factory=time.monotonic)  # last snapshot (or the start)
    automation_id: str | None = None
    fallback: str | None = None  # why the daemon writes them itself, once said in the log

    @property
    def by_automation(self) -> bool:
        return self.interval >= MIN_AUTOMATION_INTERVAL_S


class PeriodicSnapshots:
    def __init__(
        self,
        store: StateStore,
        context_of: Callable[[Job], JobContext],
        emit: Callable[[dict[str, Any]], None],
        prefect_up: Callable[[], bool],
        origin: Origin,
    ) -> None:
        self.store = store
        self.context_of = context_of
        self.emit = emit
        self.prefect_up = prefect_up
        self.origin = origin
        self.jobs: dict[int, Periodic] = {}
        self.ended: list[str] = []  # automations of ended jobs, to remove
        self.lock = threading.Lock()
        self._queue: queue.Queue[tuple[int, str]] = queue.Queue()

    # which jobs
    def job_changed(self, change: Change) -> None:
        """Lifecycle listener: a job with snapshots starts, or ends."""
        job = change.job
        snap = job.payload.settings.snapshot
        if snap is None:
            return
        with self.lock:
            if job.status == "r" and job.id not in self.jobs:
                self.jobs[job.id] = Periodic(job.id, snap.interval)
            elif job.status in FINAL_STATUSES and job.id in self.jobs:
                entry = self.jobs.pop(job.id)
                if entry.automation_id:
                    self.ended.append(entry.automation_id)

    def adopt_live_jobs(self, jobs: list[Job]) -> None:
        """After a daemon restart: the live jobs that take snapshots."""
        with self.lock:
            for job in jobs:
                snap = job.payload.settings.snapshot
                if snap is not None and job.id not in self.jobs:
                    self.jobs[job.id] = Periodic(job.id, snap.interval)

    # the automations (called by the Prefect sync, with its client)
    def reconcile(self, flow_runs: FlowRuns, connecting: bool) -> None:
        """Create the automations of running jobs, remove those of ended ones."""
        if connecting:
            self._adopt_automations(flow_runs)
            self._rearm()
        with self.lock:
            ended, self.ended = self.ended, []
            todo = [e for e in self.jobs.values() if e.by_automation and not e.automation_id]
        for automation_id in ended:
            flow_runs.delete_automation(automation_id)
        for entry in todo:
            job = self.store.job(entry.jobid)
            if job is None or job.status in FINAL_STATUSES:
                continue
            automation_id = flow_runs.create_automation(
                snapshot_automation(job, self.origin, entry.interval)
            )
            with self.lock:
                if entry.jobid in self.jobs:
                    entry.automation_id = automation_id
                    entry.last = time.monotonic()  # its window opens with the event below
                else:
                    self.ended.append(automation_id)
            self.emit(job_event(SNAPSHOT, job, self.origin, armed=True))

    def _adopt_automations(self, flow_runs: FlowRuns) -> None:
        mine = f"({self.origin.ident})"
        kept: set[str] = set()
        for automation_id, name in flow_runs.automations(AUTOMATION_PREFIX):
            if not name.endswith(mine):
                continue
            jobid = int(name.removeprefix(f"{AUTOMATION_PREFIX} of job ").split()[0])
            with self.lock:
                entry = self.jobs.get(jobid)
                if entry is not None and entry.automation_id in (None, automation_id):
                    entry.automation_id = automation_id  # a daemon restart: adopt it
                    kept.add(automation_id)
                    continue
            flow_runs.delete_automation(automation_id)  # an ended job's, or a stray copy
        with self.lock:
            for entry in self.jobs.values():
                if entry.automation_id not in kept:
                    entry.automation_id = None  # gone (deleted, or a new database): made anew

    def _rearm(self) -> None:
        """A (re)started Prefect server has lost its triggers' open windows: each running
        job's automation starts a new one now."""
        with self.lock:
            armed = [e for e in self.jobs.values() if e.automation_id is not None]
            for entry in armed:
                # the daemon's deadline counts from the window the event below opens, not
                # from the last snapshot it wrote itself while Prefect was away
                entry.last = time.monotonic()
        for jobid in [e.jobid for e in armed]:
            job = self.store.job(jobid)
            if job is not None and job.status not in FINAL_STATUSES:
                self.emit(job_event(SNAPSHOT, job, self.origin, armed=True))

    def fired(self, automation_id: str) -> None:
        """An automation fired (heard by the automation feed)."""
        with self.lock:
            entry = next((e for e in self.jobs.values() if e.automation_id == automation_id), None)
        if entry is not None:
            self._queue.put((entry.jobid, "automation"))

    # the daemon's own clock, and the writer
    def run(self, stop: threading.Event) -> None:
        threading.Thread(target=self._writer, args=(stop,), name="snapshots", daemon=True).start()
        while not stop.wait(1.0):
            now = time.monotonic()
            with self.lock:
                entries = list(self.jobs.values())
            for entry in entries:
                due = entry.interval + (GRACE_S if self._automated(entry) else 0.0)
                if now - entry.last >= due:
                    entry.last = now  # one attempt per period, whatever happens
                    self._queue.put((entry.jobid, self._why_daemon(entry)))

    def _automated(self, entry: Periodic) -> bool:
        return entry.by_automation and entry.automation_id is not None and self.prefect_up()

    def _why_daemon(self, entry: Periodic) -> str:
        if not entry.by_automation:
            return (
                f"snapshots every {entry.interval:g} s are more frequent than Prefect's "
                f"automations can fire ({MIN_AUTOMATION_INTERVAL_S:g} s): the daemon writes them"
            )
        if not self.prefect_up():
            return "Prefect is away: the daemon writes the periodic snapshots until it is back"
        return "the snapshot automation did not fire in time: the daemon wrote the snapshot"

    def _writer(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                jobid, why = self._queue.get(timeout=1.0)
            except queue.Empty:
                continue
            with self.lock:
                entry = self.jobs.get(jobid)
            job = self.store.job(jobid)
            if entry is None or job is None or job.status in FINAL_STATUSES:
                continue  # ended meanwhile: no snapshot after the end
            try:
                self._write(job)
            except Exception as exc:
                log.warning("job %s: periodic snapshot failed: %s", jobid, exc)
                continue
            entry.last = time.monotonic()
            if why != "automation" and entry.fallback != why:
                _job_log(job, why)
            elif why == "automation" and entry.fallback is not None:
                _job_log(job, "Prefect's automation makes the periodic snapshots again")
            entry.fallback = None if why == "automation" else why
            self.emit(job_event(SNAPSHOT, job, self.origin, path=job.snappath))

    def _write(self, job: Job) -> None:
        from tomato_cli.store.results import write_job_results

        assert job.snappath is not None
        write_job_results(self.context_of(job), Path(job.snappath))


def _job_log(job: Job, message: str) -> None:
    """A line in the job's own log (job.log in its folder), from the daemon."""
    log.info("job %s: %s", job.id, message)
    if job.jobpath is None:
        return
    stamp = datetime.now(UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
    try:
        with open(Path(job.jobpath) / "job.log", "a", encoding="utf-8") as out:
            out.write(f"{stamp} INFO tomato.daemon: {message}\n")
    except OSError:
        pass
