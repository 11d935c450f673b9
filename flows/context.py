"""What a running job's flow needs at hand: its job, store, drivers, triggers and daemon."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.client import DriverClient
from flows.conditions import JobLimits
from tomato_cli.models import Component, Job
from tomato_cli.models.context import JobContext
from tomato_cli.models.job import PAUSE_FILE, read_cancel, write_final
from tomato_cli.models.repeats import RepeatQuantity
from tomato_cli.rpc import Unreachable, call

log = logging.getLogger(__name__)

MAILBOX_POLL_S = 0.5

# The daemon's grant, handed to this job runner over its private pipe before the flow run
# starts (see flows.runner), by flow run id. A flow run started any other way (a Prefect
# worker, a script) finds nothing here and must not touch an instrument.
PRELOADED: dict[str, JobContext] = {}


class NotGranted(RuntimeError):
    """This flow run was not started by the tomato daemon's gate."""


def granted_context(flow_run_id: str) -> JobContext:
    """The context the daemon granted this flow run, checked with the daemon.

    Raises :class:`NotGranted` for a flow run the daemon did not start, or whose grant it
    no longer recognises. A daemon that does not answer (restarting) is trusted: the grant
    came from it over the runner's own pipe.
    """
    context = PRELOADED.pop(flow_run_id, None)
    if context is None or context.grant is None:
        raise NotGranted(
            "this flow run was not started by the tomato daemon's gate, which alone starts "
            "a job, on a pipeline it grants it; nothing was touched"
        )
    try:
        reply = call(
            context.daemon_port,
            "job_grant",
            host=context.daemon_host,
            jobid=context.jobid,
            flow_run_id=flow_run_id,
            grant=context.grant,
        )
    except Unreachable:
        log.warning("job %s: the daemon did not answer the grant check", context.jobid)
        return context
    if not reply.success:
        raise NotGranted(f"the tomato daemon does not grant this run a pipeline: {reply.msg}")
    return context


@dataclass
class JobRun:
    """The live state of one job's flow run, shared by its step tasks (threads)."""

    context: JobContext
    job: Job = field(init=False)
    cancel: threading.Event = field(default_factory=threading.Event)
    resumed: threading.Event = field(default_factory=threading.Event)  # clear while paused
    started: dict[str, threading.Event] = field(default_factory=dict)
    finished: dict[str, threading.Event] = field(default_factory=dict)
    steps_done: threading.Event = field(default_factory=threading.Event)
    samples: dict[str, int] = field(default_factory=dict)
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    end_as: tuple[str, str] = ("cd", "cancelled")  # how a cancel ends the job, and why
    conditions_met: list[dict[str, Any]] = field(default_factory=list)  # stop_when, end_when
    lock: threading.Lock = field(default_factory=threading.Lock)
    limits: JobLimits = field(init=False)
    repeat_no: dict[int, int] = field(default_factory=dict)  # step index -> repeat running
    repeat_quantity: RepeatQuantity | None = None  # what the running repeat's until counts

    def __post_init__(self) -> None:
        from tomato_cli.store import JobStore

        self.job = self.context.job
        self.jobdir = Path(self.job.jobpath)
        self.daemon_port = self.context.daemon_port
        self.daemon_host = self.context.daemon_host
        self.store = JobStore(self.jobdir)
        for task in self.job.payload.method:
            if task.task_name:
                self.started[task.task_name] = threading.Event()
                self.finished[task.task_name] = threading.Event()
        self._drivers: dict[str, DriverClient] = {}
        self.t0 = time.time()
        self.paused_s = 0.0  # time spent paused, for the progress bar
        self._paused_at = 0.0
        self.resumed.set()
        self.limits = JobLimits(self)

    # components and drivers
    def component(self, role: str) -> Component:
        return self.context.component(role)

    def driver(self, role: str, refresh: bool = False) -> DriverClient:
        comp = self.component(role)
        if refresh or comp.driver not in self._drivers:
            port = self.context.components[role].driver_port
            if refresh or port is None:
                reply = call(
                    self.daemon_port, "driver_port", host=self.daemon_host, driver=comp.driver
                )
                if not reply.success:
                    raise RuntimeError(reply.msg)
                port = reply.data
                self.context.components[role].driver_port = port
            self._drivers[comp.driver] = DriverClient(int(port))
        return self._drivers[comp.driver]

    def driver_call(self, role: str, cmd: str, **args: Any) -> Any:
        """Call the component's driver; after a lost connection, ask the daemon where it is."""
        key = self.component(role).key
        try:
            return self.driver(role).call(cmd, key=key, **args)
        except Unreachable:
            time.sleep(1.0)
            return self.driver(role, refresh=True).call(cmd, key=key, **args)

    # the daemon
    def report(self, status: str, error: str | None = None) -> None:
        """Tell the daemon; the final status is also written to the job folder first."""
        if status != "r":
            write_final(self.jobdir, status, error)
        else:  # as the daemon records it; the job's result files say so too
            started = {"pid": os.getpid(), "connected_at": datetime.now(UTC)}
            self.job = self.job.model_copy(update=started)
        for _ in range(3):
            try:
                call(
                    self.daemon_port,
                    "job_update",
                    host=self.daemon_host,
                    jobid=self.job.id,
                    status=status,
                    error=error,
                )
                return
            except Unreachable:
                time.sleep(1.0)
        log.warning("daemon unreachable; it will read the job's final status from its folder")

    def watch_mailbox(self) -> None:
        """Background thread: the daemon's requests, left as files in the job folder.

        ``cancel`` (CLI, Prefect UI, tomato stop) stops the job; ``pause`` holds it until
        the file is gone. Files, not RPCs: they cost a stat, and survive a daemon restart."""

        def loop() -> None:
            while not self.steps_done.is_set():
                asked = read_cancel(self.jobdir)
                if asked is not None:
                    self.end_as = asked
                    self.cancel.set()
                    self.resumed.set()  # a paused job wakes up to end
                    return
                pause = (self.jobdir / PAUSE_FILE).exists()
                if pause and self.resumed.is_set():
                    self._paused_at = time.time()
                    self.resumed.clear()
                    log.info("job %s: paused", self.job.id)
                elif not pause and not self.resumed.is_set():
                    paused_s = time.time() - self._paused_at
                    self.paused_s += paused_s
                    self.resumed.set()
                    log.info("job %s: resumed after %.3g s paused", self.job.id, paused_s)
                self.steps_done.wait(MAILBOX_POLL_S)

        threading.Thread(target=loop, name="mailbox-watch", daemon=True).start()

    def wait_while_paused(self) -> bool:
        """Block while the job is paused; False if it was cancelled meanwhile."""
        self.resumed.wait()
        return not self.cancel.is_set()

    def active_s(self) -> float:
        """Seconds the job has run, pauses left out."""
        now = time.time()
        pausing = 0.0 if self.resumed.is_set() else now - self._paused_at
        return now - self.t0 - self.paused_s - pausing
