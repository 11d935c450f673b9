"""The Prefect sync: keeps Prefect in step with the daemon, and brings back what users do there.

Runs in its own thread, so the daemon answers while Prefect starts or is away. The
daemon's state store is the truth. Each round this thread gives every job its flow run and
pushes the states the daemon decided (:mod:`tomato_cli.daemon.state_push`), shows the
pipelines, keeps the pipeline slots' leases (:mod:`tomato_cli.daemon.slot_leases`) and
sends tomato's events; every ``WATCH_INTERVAL_S`` it looks for what users did to the jobs'
flow runs in Prefect (:mod:`tomato_cli.daemon.prefect_watch`), which hands it to the daemon
through the narrow :class:`SyncHost` interface. One bad record (a deleted flow run, a
refused state) is dealt with on its own and never holds up the others.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from tomato_cli.daemon.overview_feed import publish_overview
from tomato_cli.daemon.prefect_watch import PrefectWatch, WatchHost
from tomato_cli.daemon.slot_leases import SlotLeases
from tomato_cli.daemon.state_push import StatePush
from tomato_cli.orchestration.server import EmbeddedServer, PrefectTarget, is_healthy

if TYPE_CHECKING:
    from tomato_cli.daemon.lab_claims import LabClaims
    from tomato_cli.daemon.snapshots import PeriodicSnapshots
    from tomato_cli.orchestration.automation_feed import AutomationFeed
    from tomato_cli.orchestration.flow_runs import FlowRuns
    from tomato_cli.orchestration.lab_queue import LabQueue
    from tomato_cli.orchestration.pipeline_slots import PipelineSlots, PipelineView

log = logging.getLogger(__name__)

ROUND_S = 0.5
WATCH_INTERVAL_S = 2.0  # how often to look for actions taken in Prefect
POLL_S = 10.0  # worker heartbeat and queue polling (the UI shows them Ready)
MAX_EVENTS = 10_000  # events kept while Prefect is away


class SyncHost(WatchHost, Protocol):
    """What the Prefect sync may ask of the daemon (watching Prefect's part included)."""

    def pipeline_views(self) -> dict[str, PipelineView]:
        """What Prefect shows of each pipeline."""

    def pipeline_from_prefect(self, name: str, ready: bool) -> str | None:
        """A user paused (``ready`` False) or resumed a pipeline's work queue in Prefect:
        make the pipeline not ready or ready; the reason if that is refused, else None."""


class PrefectSync:
    def __init__(
        self,
        host: SyncHost,
        target: PrefectTarget,
        server: EmbeddedServer | None,
        port: int,
        host_name: str | None = None,  # [daemon] name: labels the work pool on a lab server
    ) -> None:
        self.host = host
        self.host_name = host_name
        self.store = host.store
        self.target = target
        self.server = server  # None when the daemon uses a Prefect server of the lab
        self.port = port
        self.flow_runs: FlowRuns | None = None
        self.slots: PipelineSlots | None = None
        self.snapshots: PeriodicSnapshots | None = None  # set by the daemon
        self.feed: AutomationFeed | None = None
        self.lab_claims: LabClaims | None = None  # set by the daemon on a lab server
        self.lab: LabQueue | None = None
        self.healthy = False
        self.error: str | None = None  # why the last round failed (None: it did not)
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_poll = 0.0
        self._last_watch = 0.0
        self.watch = PrefectWatch(host)
        self.pusher = StatePush(host, self.watch)
        self.leases = SlotLeases(host.store)
        self._pipelines_dirty = True
        self._problems: list[str] = []  # what went wrong with single records this round
        self.client_lock = threading.Lock()  # one Prefect call at a time on our client

    # used by the daemon
    def start(self) -> None:
        threading.Thread(target=self._run, name="prefect-sync", daemon=True).start()

    def wake(self) -> None:
        self._wake.set()

    def pipelines_changed(self) -> None:
        self._pipelines_dirty = True
        self._wake.set()

    def emit(self, event: dict[str, Any]) -> None:
        """Send an event to Prefect's event feed (kept while Prefect is away)."""
        self.events.append(event)
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
                self.pusher.create(self.flow_runs, job)
        except Exception as exc:
            log.warning("job %s: flow run not created yet (%s); retrying", jobid, exc)
            self._wake.set()
        finally:
            self.client_lock.release()

    def take_slot(self, pipeline: str, flow_run_id: str) -> str:
        """The pipeline's slot for the job's flow run (a lease id); raises if Prefect is away
        or refuses (see :class:`~tomato_cli.orchestration.pipeline_slots.SlotTaken`)."""
        slots = self.slots
        if slots is None or not self.healthy:
            raise ConnectionError("Prefect is not reachable")
        return self.leases.take(slots, pipeline, flow_run_id)

    def give_back_slot(self, lease_id: str) -> None:
        self.leases.give_back(self.slots, lease_id)

    def public(self) -> dict[str, Any]:
        lagging = self.store.unsynced_count()
        if not self.healthy:
            state = "failing" if self.error else "starting"
        elif self.error:
            state = "failing"
        else:
            state = "lagging" if lagging else "healthy"
        info: dict[str, Any] = {
            "api_url": self.target.api_url,
            "ui_url": self.target.ui_url,
            "embedded": self.target.embedded,
            "healthy": self.healthy,
            "error": self.error,
            "sync": {"state": state, "lagging": lagging, "error": self.error},
        }
        if self.flow_runs is not None:
            info.update(self.flow_runs.info())
        return info

    # connecting
    def _connect(self) -> None:
        os.environ.update(self.target.client_env())
        # the daemon notices an absent or hung server itself: it must not sit in long
        # retries or wait without end on one request
        os.environ["PREFECT_CLIENT_MAX_RETRIES"] = "3"
        os.environ["PREFECT_API_REQUEST_TIMEOUT"] = "15"
        from tomato_cli.orchestration.flow_runs import FlowRuns
        from tomato_cli.orchestration.pipeline_slots import PipelineSlots

        flow_runs = FlowRuns(self.port, self.target.embedded, self.host_name, self.store.instance)
        flow_runs.ensure_deployment()
        slots = PipelineSlots(flow_runs.pool, flow_runs.host)
        slots.show(self.host.pipeline_views())
        self._pipelines_dirty = False
        self.leases.keep(slots, connecting=True)
        if self.lab_claims is not None:
            self.lab = self._join_lab(flow_runs)
        if self.snapshots is not None:
            from tomato_cli.orchestration.automation_feed import AutomationFeed

            self.snapshots.reconcile(flow_runs, connecting=True)
            self.feed = self.feed or AutomationFeed(self.target.api_url, self.snapshots.fired)
            self.feed.start()
        self.flow_runs, self.slots = flow_runs, slots
        self._last_poll = 0.0

    def _join_lab(self, flow_runs: FlowRuns) -> LabQueue:
        """The lab-wide queue, and this host's number in the lab (for lab-wide job ids)."""
        from tomato_cli.orchestration.lab_queue import LabQueue

        assert flow_runs.host is not None
        lab = LabQueue(flow_runs.client, flow_runs.host, self.port)
        lab.ensure()
        stored = self.store.get_meta("lab_number")
        number = lab.register(int(stored) if stored is not None else None)
        if stored is None:
            self.store.set_meta("lab_number", str(number))
            log.info("this host is number %d of the lab", number)
            # a host started afresh goes on above the ids it used before
            self.store.set_meta("lab_job_floor", str(flow_runs.highest_jobid()))
        return lab

    def _drop_clients(self) -> None:
        if self.feed is not None:
            self.feed.stop()
        for client in (self.flow_runs, self.slots):
            try:
                if client is not None:
                    client.close()
            except Exception:
                pass
        self.flow_runs = self.slots = self.lab = None

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
                self._drop_clients()
            try:
                if not self.healthy:
                    if not self._ensure_server():
                        self._stop.wait(2.0)
                        continue
                    with self.client_lock:
                        self._connect()
                    self.healthy = True
                    log.info("Prefect at %s is healthy", self.target.api_url)
                with self.client_lock:
                    self._problems: list[str] = []
                    self._round()
                self.error = "; ".join(self._problems[:3]) or None
            except Exception as exc:  # Prefect busy or refusing: keep the daemon going
                # Only a failed health check means the server is gone (see above); a busy
                # server (503 from a locked SQLite) is retried on the next round as it is.
                log.warning("Prefect call failed, retrying: %s", exc)
                self.error = f"{type(exc).__name__}: {exc}"
                if self.flow_runs is None:
                    self.healthy = False
                self._stop.wait(1.0)
                continue
            self._wake.wait(ROUND_S)
            self._wake.clear()

    # one round
    def _round(self) -> None:
        assert self.flow_runs is not None and self.slots is not None
        now = time.monotonic()
        if now - self._last_poll > POLL_S:
            self._last_poll = now
            self.flow_runs.heartbeat()
            self.slots.poll()
        if self._pipelines_dirty:
            self._pipelines_dirty = False
            self.slots.show(self.host.pipeline_views())
        self._problems += self.pusher.push_all(self.flow_runs)
        publish_overview(self)
        self.leases.keep(self.slots)
        if self.snapshots is not None:
            self.snapshots.reconcile(self.flow_runs, connecting=False)
        self._send_events(self.flow_runs)
        if now - self._last_watch >= WATCH_INTERVAL_S:
            self._last_watch = now
            self.watch.look(self.flow_runs)
            self._pipeline_actions(self.slots)
            if self.lab is not None and self.lab_claims is not None:
                self.lab_claims.round(self.flow_runs, self.lab)

    def _pipeline_actions(self, slots: PipelineSlots) -> None:
        """A user's Pause or Resume of a pipeline's work queue: not ready or ready, or the
        queue put back as it was, with the reason in the daemon's log and an event."""
        for name, ready in slots.users_changes().items():
            why = self.host.pipeline_from_prefect(name, ready)
            if why is not None:
                log.warning("pipeline %s: %s in Prefect refused: %s", name, _verb(ready), why)
                slots.show_again(name)
            self._pipelines_dirty = True

    def _send_events(self, flow_runs: FlowRuns) -> None:
        if not self.events:
            return
        batch = list(self.events)
        flow_runs.emit(batch)
        for _ in batch:
            self.events.popleft()


def _verb(ready: bool) -> str:
    return "resume" if ready else "pause"
