"""Keeps Prefect in step with the daemon: server, deployment, flow runs, states, cancels.

Runs in its own thread, so the daemon answers while Prefect starts or is away. The
daemon's database is the truth; this thread mirrors it and brings back cancel requests
made in the Prefect UI.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tomato_cli.daemon.processes import alive, kill
from tomato_cli.orchestration.server import (
    PrefectTarget,
    is_healthy,
    start_embedded,
    wait_healthy,
)
from tomato_cli.orchestration.states import tomato_status

if TYPE_CHECKING:
    from tomato_cli.daemon.service import Daemon
    from tomato_cli.orchestration.jobs import PrefectJobs

log = logging.getLogger(__name__)

SYNC_INTERVAL_S = 0.5
# how often to look for changes made in the Prefect UI (cancel, resume of a waiting job)
UI_CHECK_INTERVAL_S = 2.0


class PrefectBridge:
    def __init__(self, daemon: Daemon, target: PrefectTarget, port: int | None):
        self.daemon = daemon
        self.target = target
        self.port = port  # the embedded server's port
        self.jobs: PrefectJobs | None = None
        self.server: subprocess.Popen | None = None
        self.healthy = False
        self.error: str | None = None
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._last_heartbeat = 0.0
        self._last_ui_check = 0.0
        self._slots_dirty = True
        self.client_lock = threading.Lock()  # one Prefect call at a time on our client

    # public
    def start(self) -> None:
        threading.Thread(target=self._run, name="prefect-bridge", daemon=True).start()

    def stop(self, stop_server: bool) -> None:
        self._stop.set()
        self.wake.set()
        if stop_server and self.target.embedded:
            self._stop_server()

    def create_now(self, jobid: int) -> None:
        """Create a new job's flow run right away if Prefect is there (else the loop will)."""
        if not self.healthy or not self.client_lock.acquire(blocking=False):
            self.wake.set()
            return
        try:
            job = self.daemon.state.job(jobid)
            if self.jobs is not None and job is not None and job.flow_run_id is None:
                frid = self.jobs.create_job_run(jobid, "q", job.payload.sample.identifier)
                self.daemon.attach_flow_run(jobid, frid)
        except Exception as exc:
            log.warning("job %s: flow run not created yet (%s); retrying", jobid, exc)
            self.wake.set()
        finally:
            self.client_lock.release()

    def mark_slots_dirty(self) -> None:
        self._slots_dirty = True
        self.wake.set()

    def public(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "api_url": self.target.api_url,
            "ui_url": self.target.ui_url,
            "embedded": self.target.embedded,
            "healthy": self.healthy,
            "error": self.error,
        }
        if self.jobs is not None:
            info.update(self.jobs.info())
        return info

    # internals
    def _server_pid_file(self) -> Path | None:
        return self.target.home / "server.pid" if self.target.home else None

    def _ensure_server(self) -> bool:
        if is_healthy(self.target):
            return True
        if not self.target.embedded:
            self.error = f"Prefect server at {self.target.api_url} does not answer"
            return False
        pidfile = self._server_pid_file()
        if self.server is None or self.server.poll() is not None:
            old = _read_pid(pidfile)
            if old and alive(old):
                # a server of ours from before a daemon restart, still starting up
                if wait_healthy(self.target, timeout=60):
                    return True
                kill(old)
            assert self.port is not None and self.daemon.logdir is not None
            log.info("starting embedded Prefect server on port %s", self.port)
            self.server = start_embedded(
                self.target, self.port, self.daemon.logdir / "prefect-server.log"
            )
            if pidfile:
                pidfile.write_text(str(self.server.pid))
        ok = wait_healthy(self.target, timeout=120, proc=self.server)
        if not ok:
            self.error = "embedded Prefect server did not become healthy (see prefect-server.log)"
            if self.server is not None and self.server.poll() is None:
                log.error("embedded Prefect server is running but hung; restarting it")
                kill(self.server.pid)
                self.server.wait()
        return ok

    def _stop_server(self) -> None:
        pid = self.server.pid if self.server is not None else _read_pid(self._server_pid_file())
        if pid and alive(pid):
            kill(pid, graceful=True)
        pidfile = self._server_pid_file()
        if pidfile and pidfile.exists():
            pidfile.unlink()

    def _drop_client(self) -> None:
        jobs, self.jobs = self.jobs, None
        if jobs is not None:
            try:
                jobs.close()
            except Exception:
                pass

    def _connect(self) -> None:
        os.environ.update(self.target.client_env())
        # the daemon notices an absent or hung server itself: it must not sit in long
        # retries or wait without end on one request
        os.environ["PREFECT_CLIENT_MAX_RETRIES"] = "3"
        os.environ["PREFECT_API_REQUEST_TIMEOUT"] = "15"
        from tomato_cli.orchestration.jobs import PrefectJobs

        jobs = PrefectJobs(self.daemon.port, self.target.embedded)
        jobs.ensure_deployment()
        self._slots_dirty = False
        jobs.sync_pipeline_slots(
            {p.name: p.jobid is not None for p in self.daemon.state.pipelines().values()}
        )
        self.jobs = jobs
        self._last_heartbeat = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.healthy and not is_healthy(self.target):
                log.warning("Prefect at %s does not answer", self.target.api_url)
                self.healthy, self.error = False, "Prefect server does not answer"
                self._drop_client()
            try:
                if not self.healthy:
                    if self._ensure_server():
                        if self.jobs is None:
                            self._connect()
                        self.healthy, self.error = True, None
                        log.info("Prefect at %s is healthy", self.target.api_url)
                    else:
                        self._stop.wait(2.0)
                        continue
                with self.client_lock:
                    self._sync()
            except Exception as exc:  # Prefect busy or refusing: keep the daemon going
                # Only a failed health check means the server is gone (see above); a busy
                # server (503 from a locked SQLite) is retried on the next round as it is.
                log.warning("Prefect call failed, retrying: %s", exc)
                self.error = f"{type(exc).__name__}: {exc}"
                if self.jobs is None:
                    self.healthy = False
                self._stop.wait(1.0)
                continue
            self.wake.wait(SYNC_INTERVAL_S)
            self.wake.clear()

    def _sync(self) -> None:
        assert self.jobs is not None
        daemon, jobs = self.daemon, self.jobs
        if time.monotonic() - self._last_heartbeat > 10:
            jobs.heartbeat()
            self._last_heartbeat = time.monotonic()
        if self._slots_dirty:
            self._slots_dirty = False
            jobs.sync_pipeline_slots(
                {p.name: p.jobid is not None for p in daemon.state.pipelines().values()}
            )
        # 1. every job gets its flow run
        # 2. push the states the daemon owns: queue states, cancelling, and ends that the
        #    flow run could not write itself (crash, cancelled while queued). Statuses the
        #    flow run reports were set by Prefect's engine and are recorded as pushed.
        for job, pushed in daemon.state.jobs_unsynced():
            if job.flow_run_id is None:
                frid = jobs.create_job_run(job.id, "q", job.payload.sample.identifier)
                job = daemon.attach_flow_run(job.id, frid)
                pushed = "q"
            if pushed == job.status:
                continue
            if job.status == "ce":
                jobs.mark_crashed(job.flow_run_id, job.error or "job process died")
            elif job.status != "r":
                jobs.set_status(job.flow_run_id, job.status, job.error)
            daemon.state.set_prefect_status(job.id, job.status)
        if time.monotonic() - self._last_ui_check < UI_CHECK_INTERVAL_S:
            return
        self._last_ui_check = time.monotonic()
        active = daemon.state.job_refs(("q", "qw", "r", "rd"))
        # 3. changes made in the Prefect UI: a cancel is honoured; a waiting job that was
        #    resumed or rescheduled there is put back (only the gate starts jobs)
        ids = {j.flow_run_id: j for j in active if j.flow_run_id}
        if ids:
            running = [f for f, j in ids.items() if j.status in ("r", "rd")]
            waiting = [f for f, j in ids.items() if j.status in ("q", "qw")]
            for frid, (stype, sname) in jobs.changed_elsewhere(running, waiting).items():
                wanted = tomato_status(stype, sname)
                job = ids[frid]
                if wanted in ("rd", "cd") and job.status not in ("rd",):
                    log.info("job %s: cancel requested in Prefect (%s)", job.id, sname)
                    daemon.cancel_jobs([job.id], source="Prefect")
                elif job.status in ("q", "qw") and stype != "PAUSED":
                    log.info("job %s: Prefect shows %s; back to %s", job.id, sname, job.status)
                    jobs.set_status(frid, job.status)


def _read_pid(path: Path | None) -> int | None:
    try:
        return int(path.read_text()) if path and path.exists() else None
    except ValueError:
        return None
