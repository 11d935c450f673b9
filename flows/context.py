"""What a running job's flow needs at hand: its job, store, drivers, triggers and daemon."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.client import DriverClient
from tomato_cli.models import Component, Job
from tomato_cli.models.context import JobContext
from tomato_cli.models.job import CANCEL_FILE, write_final
from tomato_cli.rpc import LOOPBACK, Unreachable, call
from tomato_cli.store import JobStore

log = logging.getLogger(__name__)

CANCEL_POLL_S = 0.5

# contexts handed over by the daemon before the flow run starts (see flows.runner)
PRELOADED: dict[int, JobContext] = {}


def load_context(jobid: int) -> JobContext:
    if jobid in PRELOADED:
        return PRELOADED.pop(jobid)
    port = int(os.environ.get("TOMATO_DAEMON_PORT", "1234"))
    host = os.environ.get("TOMATO_DAEMON_HOST", LOOPBACK)
    reply = call(port, "job_context", jobid=jobid, host=host)
    if not reply.success:
        raise RuntimeError(reply.msg)
    return JobContext.model_validate(reply.data)


@dataclass
class JobRun:
    """The live state of one job's flow run, shared by its step tasks (threads)."""

    context: JobContext
    job: Job = field(init=False)
    store: JobStore = field(init=False)
    cancel: threading.Event = field(default_factory=threading.Event)
    started: dict[str, threading.Event] = field(default_factory=dict)
    finished: dict[str, threading.Event] = field(default_factory=dict)
    steps_done: threading.Event = field(default_factory=threading.Event)
    samples: dict[str, int] = field(default_factory=dict)
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.job = self.context.job
        self.daemon_port = self.context.daemon_port
        self.daemon_host = self.context.daemon_host
        self.store = JobStore(Path(self.job.jobpath))
        for task in self.job.payload.method:
            if task.task_name:
                self.started[task.task_name] = threading.Event()
                self.finished[task.task_name] = threading.Event()
        self._drivers: dict[str, DriverClient] = {}
        self.t0 = time.time()

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

    # daemon
    def report(self, status: str, error: str | None = None) -> None:
        """Tell the daemon; the final status is also written to the job folder first."""
        if status != "r":
            write_final(Path(self.job.jobpath), status, error)
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

    def watch_cancel(self) -> None:
        """Background thread: a cancel asked of the daemon (CLI or Prefect UI) stops the job.

        The daemon says so with a file in the job folder (see CANCEL_FILE)."""
        signal = Path(self.job.jobpath) / CANCEL_FILE

        def loop() -> None:
            while not self.steps_done.is_set():
                if signal.exists():
                    self.cancel.set()
                    return
                self.steps_done.wait(CANCEL_POLL_S)

        threading.Thread(target=loop, name="cancel-watch", daemon=True).start()
