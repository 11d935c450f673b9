"""The Prefect sync: keeps Prefect in step with the daemon, and brings back what users do there.

Runs in its own thread, so the daemon answers while Prefect starts or is away. The
daemon's state store is the truth; this thread gives every job its flow run, pushes the
states the daemon decides, and hands actions taken on those flow runs in Prefect back to
the daemon through the narrow :class:`SyncHost` interface. One bad record (a deleted flow
run, a refused state) is dealt with on its own and never holds up the others.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from tomato_cli.daemon.state import StateStore
from tomato_cli.models import WAITING_STATUSES
from tomato_cli.orchestration.server import EmbeddedServer, PrefectTarget, is_healthy
from tomato_cli.orchestration.states import tomato_status

if TYPE_CHECKING:
    from tomato_cli.orchestration.flow_runs import FlowRuns

log = logging.getLogger(__name__)

SYNC_INTERVAL_S = 0.5
# how often to look for changes made in Prefect (cancel, resume of a waiting job)
PREFECT_CHECK_INTERVAL_S = 2.0
HEARTBEAT_S = 10.0


class SyncHost(Protocol):
    """What the Prefect sync may ask of the daemon."""

    store: StateStore

    def attach_flow_run(self, jobid: int, flow_run_id: str) -> None:
        """The job's flow run exists in Prefect now."""

    def cancel_from_prefect(self, jobid: int, reason: str) -> None:
        """Someone cancelled the job's flow run in Prefect."""


class PrefectSync:
    def __init__(
        self,
        host: SyncHost,
        target: PrefectTarget,
        server: EmbeddedServer | None,
        daemon_port: int,
        host_name: str | None = None,  # [daemon] name: labels the work pool on a lab server
    ) -> None:
        self.host = host
        self.host_name = host_name
        self.store = host.store
        self.target = target
        self.server = server  # None when the daemon uses a Prefect server of the lab
        self.daemon_port = daemon_port
        self.flow_runs: FlowRuns | None = None
        self.healthy = False
        self.error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_heartbeat = 0.0
        self._last_check = 0.0
        self._slots_dirty = True
        self.client_lock = threading.Lock()  # one Prefect call at a time on our client

    # used by the daemon
    def start(self) -> None:
        threading.Thread(target=self._run, name="prefect-sync", daemon=True).start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, stop_server: bool) -> None:
        self._stop.set()
        self._wake.set()
        if stop_server and self.server is not None:
            self.server.stop()

    def create_now(self, jobid: int) -> None:
        """Create a new job's flow run right away if Prefect is there (else the loop will)."""
        if not self.healthy or not self.client_lock.acquire(blocking=False):
            self._wake.set()
            return
        try:
            job = self.store.job(jobid)
            if self.flow_runs is not None and job is not None and job.flow_run_id is None:
                frid = self.flow_runs.create(jobid, "q", job.payload.sample.identifier)
                self.host.attach_flow_run(jobid, frid)
        except Exception as exc:
            log.warning("job %s: flow run not created yet (%s); retrying", jobid, exc)
            self._wake.set()
        finally:
            self.client_lock.release()

    def mark_slots_dirty(self) -> None:
        self._slots_dirty = True
        self._wake.set()

    def public(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "api_url": self.target.api_url,
            "ui_url": self.target.ui_url,
            "embedded": self.target.embedded,
            "healthy": self.healthy,
            "error": self.error,
        }
        if self.flow_runs is not None:
            info.update(self.flow_runs.info())
        return info

    # the loop
    def _connect(self) -> None:
        os.environ.update(self.target.client_env())
        # the daemon notices an absent or hung server itself: it must not sit in long
        # retries or wait without end on one request
        os.environ["PREFECT_CLIENT_MAX_RETRIES"] = "3"
        os.environ["PREFECT_API_REQUEST_TIMEOUT"] = "15"
        from tomato_cli.orchestration.flow_runs import FlowRuns

        flow_runs = FlowRuns(self.daemon_port, self.target.embedded, self.host_name)
        flow_runs.ensure_deployment()
        self._slots_dirty = False
        flow_runs.sync_pipeline_slots(self._busy_pipelines())
        self.flow_runs = flow_runs
        self._last_heartbeat = time.monotonic()

    def _drop_client(self) -> None:
        flow_runs, self.flow_runs = self.flow_runs, None
        if flow_runs is not None:
            try:
                flow_runs.close()
            except Exception:
                pass

    def _busy_pipelines(self) -> dict[str, bool]:
        return {p.name: p.jobid is not None for p in self.store.pipelines().values()}

    def _ensure_server(self) -> bool:
        if self.server is None:
            if is_healthy(self.target):
                return True
            self.error = f"Prefect server at {self.target.api_url} does not answer"
            return False
        self.error = self.server.ensure()
        return self.error is None

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.healthy and not is_healthy(self.target):
                log.warning("Prefect at %s does not answer", self.target.api_url)
                self.healthy, self.error = False, "Prefect server does not answer"
                self._drop_client()
            try:
                if not self.healthy:
                    if not self._ensure_server():
                        self._stop.wait(2.0)
                        continue
                    if self.flow_runs is None:
                        self._connect()
                    self.healthy, self.error = True, None
                    log.info("Prefect at %s is healthy", self.target.api_url)
                with self.client_lock:
                    self._sync()
            except Exception as exc:  # Prefect busy or refusing: keep the daemon going
                # Only a failed health check means the server is gone (see above); a busy
                # server (503 from a locked SQLite) is retried on the next round as it is.
                log.warning("Prefect call failed, retrying: %s", exc)
                self.error = f"{type(exc).__name__}: {exc}"
                if self.flow_runs is None:
                    self.healthy = False
                self._stop.wait(1.0)
                continue
            self._wake.wait(SYNC_INTERVAL_S)
            self._wake.clear()

    def _sync(self) -> None:
        assert self.flow_runs is not None
        flow_runs = self.flow_runs
        if time.monotonic() - self._last_heartbeat > HEARTBEAT_S:
            flow_runs.heartbeat()
            self._last_heartbeat = time.monotonic()
        if self._slots_dirty:
            self._slots_dirty = False
            flow_runs.sync_pipeline_slots(self._busy_pipelines())
        self._push_states(flow_runs)
        if time.monotonic() - self._last_check >= PREFECT_CHECK_INTERVAL_S:
            self._last_check = time.monotonic()
            self._bring_back(flow_runs)

    def _push_states(self, flow_runs: FlowRuns) -> None:
        """Every job gets its flow run; the states the daemon owns are pushed.

        Those are the queue states, cancelling, and ends the flow run could not write itself
        (a crash, a cancel while queued). Statuses the flow run reports were set by
        Prefect's engine and are recorded as pushed.
        """
        for job, pushed in self.store.jobs_unsynced():
            if job.flow_run_id is None:
                frid = flow_runs.create(job.id, "q", job.payload.sample.identifier)
                self.host.attach_flow_run(job.id, frid)
                job.flow_run_id, pushed = frid, "q"
            if pushed == job.status:
                continue
            if job.status == "ce":
                flow_runs.mark_crashed(job.flow_run_id, job.error or "job process died")
            elif job.status != "r":
                flow_runs.set_status(job.flow_run_id, job.status, job.error)
            self.store.set_prefect_status(job.id, job.status)

    def _bring_back(self, flow_runs: FlowRuns) -> None:
        """Changes made in Prefect: a cancel is honoured; a waiting job that was resumed or
        rescheduled there is put back (only the gate starts jobs)."""
        active = self.store.job_refs(("q", "qw", "r", "rd"))
        ids = {j.flow_run_id: j for j in active if j.flow_run_id}
        if not ids:
            return
        running = [f for f, j in ids.items() if j.status in ("r", "rd")]
        waiting = [f for f, j in ids.items() if j.status in WAITING_STATUSES]
        for frid, (stype, sname) in flow_runs.changed_elsewhere(running, waiting).items():
            wanted = tomato_status(stype, sname)
            job = ids[frid]
            if wanted in ("rd", "cd") and job.status != "rd":
                log.info("job %s: cancel requested in Prefect (%s)", job.id, sname)
                self.host.cancel_from_prefect(job.id, f"cancelled in Prefect ({sname})")
            elif job.status in WAITING_STATUSES and stype != "PAUSED":
                log.info("job %s: Prefect shows %s; back to %s", job.id, sname, job.status)
                flow_runs.set_status(frid, job.status)
