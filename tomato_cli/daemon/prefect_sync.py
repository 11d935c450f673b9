"""The Prefect sync: keeps Prefect in step with the daemon, and brings back what users do there.

Runs in its own thread, so the daemon answers while Prefect starts or is away. The
daemon's state store is the truth. Each round this thread gives every job its flow run,
pushes the states the daemon decided, shows the pipelines, keeps the pipeline slots' leases
and sends tomato's events; every ``WATCH_INTERVAL_S`` it looks for what users did to the
jobs' flow runs in Prefect (see :mod:`tomato_cli.daemon.prefect_actions`) and hands it to
the daemon through the narrow :class:`SyncHost` interface. One bad record (a deleted flow
run, a refused state) is dealt with on its own and never holds up the others.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from tomato_cli.daemon.overview_feed import publish_overview
from tomato_cli.daemon.prefect_actions import EXPECTED, Reaction, reaction_to
from tomato_cli.daemon.state import StateStore
from tomato_cli.models import FINAL_STATUSES, LIVE_STATUSES, WAITING_STATUSES, Job
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


class SyncHost(Protocol):
    """What the Prefect sync may ask of the daemon."""

    store: StateStore

    def attach_flow_run(self, jobid: int, flow_run_id: str) -> None:
        """The job's flow run exists in Prefect now."""

    def act_from_prefect(self, jobid: int, reaction: Reaction, reason: str) -> None:
        """Do what a user did to the job's flow run in Prefect (cancel, fail, pause...)."""

    def submit_from_prefect(
        self, flow_run_id: str | None, parameters: dict[str, Any], retry_of: Job | None
    ) -> Job:
        """A run made in Prefect (or a Retry of ``retry_of``) becomes a new job, without a
        flow run yet; raises ValueError with the reason."""

    def has_ended(self, job: Job) -> bool:
        """The job's flow run left its final word (its own end is no user action)."""

    def pipeline_views(self) -> dict[str, PipelineView]:
        """What Prefect shows of each pipeline."""


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
        self._renewed: dict[str, float] = {}  # lease id -> when it was last renewed
        self._pipelines_dirty = True
        self._failures: dict[int, int] = {}  # job id -> consecutive failed pushes
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
                self.host.attach_flow_run(jobid, self.flow_runs.create(job))
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
        lease = slots.take(pipeline, flow_run_id)
        self._renewed[lease] = time.monotonic()
        return lease

    def give_back_slot(self, lease_id: str) -> None:
        slots = self.slots
        try:
            if slots is not None:
                slots.give_back(lease_id)
        except Exception as exc:  # it expires on its own
            log.warning("could not give back lease %s: %s", lease_id, exc)
        self._renewed.pop(lease_id, None)

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

        flow_runs = FlowRuns(
            self.port, self.target.embedded, self.host_name, self.store.instance
        )
        flow_runs.ensure_deployment()
        slots = PipelineSlots(flow_runs.pool, flow_runs.host)
        slots.show(self.host.pipeline_views())
        self._pipelines_dirty = False
        self._keep_leases(slots, connecting=True)
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
        self._push_states(self.flow_runs)
        publish_overview(self)
        self._keep_leases(self.slots)
        if self.snapshots is not None:
            self.snapshots.reconcile(self.flow_runs, connecting=False)
        self._send_events(self.flow_runs)
        if now - self._last_watch >= WATCH_INTERVAL_S:
            self._last_watch = now
            self._watch(self.flow_runs)

    def _push_states(self, flow_runs: FlowRuns) -> None:
        """Every job gets its flow run; the states the daemon decided are pushed.

        Statuses a job's flow run writes itself (running, and how it ended) are recorded as
        pushed by the daemon when it hears of them. A failing push is retried on later
        rounds without holding up the others; a deleted flow run cancels its job.
        """
        from prefect.exceptions import ObjectNotFound

        for job, pushed in self.store.jobs_unsynced():
            try:
                self._push(flow_runs, job, pushed)
                self._failures.pop(job.id, None)
            except ObjectNotFound:
                self._deleted(job)
            except Exception as exc:
                count = self._failures[job.id] = self._failures.get(job.id, 0) + 1
                log.warning("job %s: Prefect refused its state (%d): %s", job.id, count, exc)
                self._problems.append(f"job {job.id}: {type(exc).__name__}: {exc}")
                if count >= 5:
                    # give up on this record: Prefect keeps what it has, tomato says why
                    self.store.set_prefect_status(job.id, job.status, "refused")
                    log.error("job %s: state %s not mirrored in Prefect", job.id, job.status)

    def _push(self, flow_runs: FlowRuns, job: Job, pushed: str | None) -> None:
        if job.flow_run_id is None:
            frid = flow_runs.create(job)
            self.host.attach_flow_run(job.id, frid)
            job.flow_run_id, pushed = frid, "q"
        if pushed == job.status:
            return
        frid = job.flow_run_id
        if job.status == "r" and pushed in WAITING_STATUSES:
            flow_runs.tag(frid, job)  # its engine writes Running; show the pipeline
            state_id = None
        elif job.status == "ce" and pushed in LIVE_STATUSES:
            state_id = flow_runs.mark_crashed(frid, job.error or "the job's process died")
        else:
            force = job.status == "r"  # resumed: back to Running from our Paused
            state_id = flow_runs.set_status(frid, job.status, job.error, force=force)
        self.store.set_prefect_status(job.id, job.status, state_id)

    def _deleted(self, job: Job) -> None:
        log.info("job %s: its flow run was deleted in Prefect", job.id)
        self.store.set_prefect_status(job.id, job.status, "deleted")
        if job.status not in FINAL_STATUSES:
            self.host.act_from_prefect(job.id, Reaction.CANCEL, "its flow run was deleted")

    def _keep_leases(self, slots: PipelineSlots, connecting: bool = False) -> None:
        """Renew the slots of live jobs, give back those of ended jobs, and after a
        (re)connect retake what a restarted server forgot."""
        from tomato_cli.orchestration.pipeline_slots import RENEW_S

        for jobid, lease in self.store.leases(FINAL_STATUSES).items():
            slots.give_back(lease)
            self.store.set_lease(jobid, None)
            self._renewed.pop(lease, None)
        now = time.monotonic()
        lost = []
        for jobid, lease in self.store.leases(LIVE_STATUSES).items():
            if connecting or now - self._renewed.get(lease, 0.0) > RENEW_S:
                if slots.renew(lease):
                    self._renewed[lease] = now
                else:
                    lost.append(jobid)
        for jobid in lost:
            job = self.store.job(jobid)
            if job is None or job.pipeline is None or job.flow_run_id is None:
                continue
            log.warning("job %s: Prefect lost the slot of %s; retaking it", jobid, job.pipeline)
            slots.clear(job.pipeline)
            self.store.set_lease(jobid, slots.take(job.pipeline, job.flow_run_id))

    def _send_events(self, flow_runs: FlowRuns) -> None:
        if not self.events:
            return
        batch = list(self.events)
        flow_runs.emit(batch)
        for _ in batch:
            self.events.popleft()

    # what users did in Prefect
    def _watch(self, flow_runs: FlowRuns) -> None:
        refs = self.store.job_refs(("q", "qw", "r", "rp", "rd"))
        synced = {r.id for r in refs} - {job.id for job, _ in self.store.jobs_unsynced()}
        by_run = {r.flow_run_id: r for r in refs if r.flow_run_id and r.id in synced}
        for frid in flow_runs.missing(list(by_run)):
            job = self.store.job(by_run.pop(frid).id)
            if job is not None:
                self._deleted(job)
        expected: dict[tuple[str, ...], list[str]] = {}
        for frid, ref in by_run.items():
            expected.setdefault(EXPECTED[ref.status], []).append(frid)
        own = self.store.own_state_ids()
        for frid, (stype, sname, state_id) in flow_runs.unexpected(expected).items():
            ref = by_run[frid]
            if own.get(ref.id) == state_id:
                continue  # the state tomato set itself
            self._react(flow_runs, ref.id, stype, sname)
        unsynced = {job.id for job, _ in self.store.jobs_unsynced()}
        for run in flow_runs.new_runs([r.flow_run_id for r in refs if r.flow_run_id]):
            self._new_run(flow_runs, run, unsynced)
        if self.lab is not None and self.lab_claims is not None:
            self.lab_claims.round(flow_runs, self.lab)

    def _react(self, flow_runs: FlowRuns, jobid: int, stype: str, sname: str) -> None:
        job = self.store.job(jobid)
        if job is None or job.flow_run_id is None or self.host.has_ended(job):
            return  # its flow run wrote its own end: the daemon hears of it anyway
        reaction, why = reaction_to(job.status, stype)
        if reaction is Reaction.IGNORE:
            return
        log.info("job %s (%s): %s %s in Prefect: %s", jobid, job.status, stype, sname, reaction)
        if reaction is Reaction.PUT_BACK:
            state_id = flow_runs.set_status(job.flow_run_id, job.status, force=True)
            self.store.set_prefect_status(job.id, job.status, state_id)
            flow_runs.log(
                job.flow_run_id,
                f"tomato refused {sname or stype} for job {job.id} ({job.status}): {why}",
                logging.WARNING,
            )
            return
        self.host.act_from_prefect(jobid, reaction, f"{why} ({sname or stype})")
        flow_runs.log(job.flow_run_id, f"tomato: job {job.id}: {reaction.value}: {why}")

    def _new_run(self, flow_runs: FlowRuns, run: dict[str, Any], unsynced: set[int]) -> None:
        """A run of the job deployment that is no live job: a Run or a Retry in Prefect."""
        params = run["parameters"]
        old = self._job_of_run(run["id"], params)
        if old is not None:
            if old.status not in FINAL_STATUSES or old.id in unsynced:
                return  # its end is not in Prefect yet: the next push settles it
            # a Retry: the old run keeps its end; the payload runs again as a new job
            state_id = flow_runs.set_status(run["id"], old.status, old.error, force=True)
            self.store.set_prefect_status(old.id, old.status, state_id)
            params = {"payload": old.payload.model_dump(mode="json", exclude_none=True)}
            run = {**run, "id": None}
        try:
            job = self.host.submit_from_prefect(run["id"], params, old)
        except ValueError as exc:
            if run["id"] is None:
                flow_runs.log(old.flow_run_id, f"tomato: the retry was refused: {exc}")
            else:
                flow_runs.refuse(run["id"], f"tomato refused this run: {exc}")
            return
        if old is not None and old.flow_run_id:
            flow_runs.log(
                old.flow_run_id,
                f"tomato: job {old.id} ended as {old.status} and does not run again; "
                f"its payload was submitted again as job {job.id} (flow run job-{job.id})",
            )
        if run["id"] is not None:
            job.flow_run_id = run["id"]
            state_id = flow_runs.adopt(run["id"], job)
            # only now may the gate start it: its run waits, named and parametrised
            self.host.attach_flow_run(job.id, run["id"])
            self.store.set_prefect_status(job.id, job.status, state_id)
            flow_runs.log(run["id"], f"tomato: this run is job {job.id}; it waits in the queue")

    def _job_of_run(self, flow_run_id: str, params: dict[str, Any]) -> Job | None:
        jobid = params.get("jobid")
        if not isinstance(jobid, int):
            return None
        job = self.store.job(jobid)
        return job if job is not None and job.flow_run_id == flow_run_id else None
