"""The tomato daemon: builds its parts, serves the RPC API, and stops cleanly.

Parts, one module each: the state store (``state``), the job lifecycle table
(``lifecycle``), pipelines (``pipelines``), jobs (``jobs``), the gate (``gate``), recovery
of jobs whose process died (``recovery``), the driver supervisor (``driver_supervisor``),
the job runners (``launcher``), the Prefect sync (``prefect_sync``) and the RPC API
(``api``). Decisions about jobs and pipelines are taken one at a time, under ``lock``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from tomato_cli import __version__
from tomato_cli.daemon import plot_http
from tomato_cli.daemon.api import DaemonApi
from tomato_cli.daemon.driver_supervisor import DriverSupervisor
from tomato_cli.daemon.gate import Gate, can_serve, is_free_for
from tomato_cli.daemon.jobs import JobControl
from tomato_cli.daemon.lab_claims import LabClaims
from tomato_cli.daemon.launcher import JobLauncher
from tomato_cli.daemon.lifecycle import Cause, Change, JobLifecycle
from tomato_cli.daemon.outputs import submit_folder
from tomato_cli.daemon.pipelines import Pipelines, driver_catalog
from tomato_cli.daemon.prefect_actions import Reaction
from tomato_cli.daemon.prefect_sync import PrefectSync
from tomato_cli.daemon.queue_control import QueueControl, checked_priority
from tomato_cli.daemon.recovery import Recovery
from tomato_cli.daemon.snapshots import PeriodicSnapshots
from tomato_cli.daemon.state import StateStore, now
from tomato_cli.models import (
    FINAL_STATUSES,
    LIVE_STATUSES,
    Job,
    Payload,
    PayloadError,
    Settings,
    load_devices,
    load_settings,
    parse_payload,
    parse_payload_text,
)
from tomato_cli.models.credentials import read_auth_string
from tomato_cli.models.job import FINAL_FILE
from tomato_cli.orchestration.events import (
    PIPELINE_CHANGED,
    PIPELINE_REFUSED,
    RESUMED,
    STATUS_EVENTS,
    Origin,
    job_event,
    pipeline_event,
)
from tomato_cli.orchestration.pipeline_slots import PipelineView
from tomato_cli.orchestration.server import EmbeddedServer, PrefectTarget, embedded_target
from tomato_cli.rpc import RpcError, RpcServer, free_port

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, port: int, appdir: Path, settings_path: Path) -> None:
        self.port = port
        self.appdir = appdir
        self.settings_path = settings_path
        self.settings: Settings = load_settings(settings_path)
        self.datadir = Path(self.settings.datadir)
        self.logdir = Path(self.settings.logdir)
        self.started_at = now()
        self.origin = Origin(self.settings.daemon.host_name, port)  # in tomato's events
        self.store = StateStore(self.datadir / f"tomato-{port}.db")
        self.lock = threading.RLock()  # one decision at a time about jobs and pipelines
        self._stop = threading.Event()
        self.lifecycle = JobLifecycle(self.store)
        self.supervisor = DriverSupervisor(self.store, self.settings.drivers, self.logdir)
        target, server = self._prefect_target()
        self.sync = PrefectSync(self, target, server, port, self.settings.daemon.host_name)
        self.launcher = JobLauncher(
            self.logdir,
            target.client_env(),
            max_jobs=self.settings.jobs.runner_max_jobs,
            warm=self._warm_runner,
            on_job_pid=self._job_pid,
        )
        self.pipelines = Pipelines(self.store, self.lock, self.supervisor, self._pipelines_changed)
        self.jobs = JobControl(
            self.store,
            self.lifecycle,
            self.lock,
            self.supervisor,
            port,
            lambda: Path(self.settings.jobs.storage),
            host=self.settings.daemon.host,
            lab=self.settings.prefect.url is not None,
        )
        self.queue = QueueControl(self.store, self.lock, self._queue_changed)
        self.gate = Gate(
            self.store,
            self.lifecycle,
            self.lock,
            self.supervisor.capabilities_of,
            self.sync,
            self._launch,
        )
        self.snapshots = PeriodicSnapshots(
            self.store, self.jobs.context, self.sync.emit, lambda: self.sync.healthy, self.origin
        )
        self.sync.snapshots = self.snapshots
        if self.settings.prefect.url is not None:  # a lab server: jobs for the whole lab
            self.sync.lab_claims = LabClaims(self)
        self.recovery = Recovery(
            self.store, self.lifecycle, self.lock, self.launcher, self.supervisor, self.jobs.context
        )
        self.launcher.on_job_end = self.recovery.job_ended.set
        self.lifecycle.listen(self._status_changed)
        self.lifecycle.listen(self.snapshots.job_changed)
        self.api = DaemonApi(self)
        self.server: RpcServer | None = None

    def _warm_runner(self) -> bool:
        """Keep a job runner imported and waiting: by default while a pipeline is ready,
        so that an idle instance does not pay for one (about 100 MiB)."""
        warm = self.settings.jobs.warm_runner
        if warm is not None:
            return warm
        return any(pip.ready for pip in self.store.pipelines().values())

    def _job_pid(self, jobid: int, pid: int) -> None:
        """The job's own process was forked: its pid replaces its runner's."""
        with self.lock:
            job = self.store.job(jobid)
            if job is not None and job.status not in FINAL_STATUSES and job.pid != pid:
                job.pid = pid
                self.store.save_job(job)

    def _prefect_target(self) -> tuple[PrefectTarget, EmbeddedServer | None]:
        cfg = self.settings.prefect
        auth_string = read_auth_string(cfg)
        if cfg.url:
            target = PrefectTarget(
                api_url=cfg.url.rstrip("/"),
                embedded=False,
                api_key=cfg.api_key,
                auth_string=auth_string,
            )
            return target, None
        port = cfg.port
        if port is None:
            saved = self.store.get_meta("prefect_port")
            port = int(saved) if saved else free_port()
            self.store.set_meta("prefect_port", str(port))
        target = embedded_target(self.datadir, port, auth_string)
        return target, EmbeddedServer(target, port, self.logdir / "prefect-server.log")

    # wiring
    def _status_changed(self, change: Change) -> None:
        job = change.job
        self.sync.wake()
        resumed = (change.source, job.status) == ("rp", "r")
        name = RESUMED if resumed else STATUS_EVENTS.get(job.status)
        if job.status == "q" and change.source is not None:
            name = None  # back in the queue (qw -> q) is not a second submit
        if name is not None:
            detail = {"error": job.error} if job.status == "ce" else {}
            self.sync.emit(job_event(name, job, self.origin, cause=change.cause.value, **detail))
        if change.source is None:
            self.launcher.fill(wanted=True)  # a runner for it, if none is warm
        if job.status in FINAL_STATUSES or change.source is None:
            self.gate.wake()  # a pipeline was released, or a job was queued
        if job.status in FINAL_STATUSES or job.status == "r":
            self.sync.pipelines_changed()

    def _queue_changed(self) -> None:
        self.gate.wake()
        self.sync.wake()

    def _pipelines_changed(self) -> None:
        self.gate.wake()
        self.sync.pipelines_changed()
        threading.Thread(target=self.launcher.fill, daemon=True).start()  # warm, if ready

    def _launch(self, job: Job) -> int:
        return self.launcher.launch(self.jobs.context(job))

    # SyncHost: what the Prefect sync asks of the daemon
    def attach_flow_run(self, jobid: int, flow_run_id: str, state_id: str) -> None:
        with self.lock:
            job = self.store.job(jobid)
            if job is None:
                return
            job.flow_run_id = flow_run_id
            self.store.save_job(job)
            # its waiting state is tomato's own: recorded before the gate may start the job
            self.store.set_prefect_status(jobid, "q", state_id)
        self.gate.wake()

    def act_from_prefect(self, jobid: int, reaction: Reaction, reason: str) -> None:
        if reaction is Reaction.CANCEL:
            self.jobs.cancel([jobid], Cause.PREFECT, reason)
        elif reaction is Reaction.FAIL:
            self.jobs.cancel([jobid], Cause.PREFECT, reason, end_as="ce")
        elif reaction is Reaction.PAUSE:
            self.jobs.pause([jobid], Cause.PREFECT)
        elif reaction is Reaction.RESUME:
            self.jobs.resume([jobid], Cause.PREFECT)

    def submit_from_prefect(
        self, flow_run_id: str | None, parameters: dict[str, Any], retry_of: Job | None
    ) -> Job:
        """A run made in Prefect (or a Retry) becomes a job, validated as `ketchup submit`
        validates. Its results go where the payload says, or into ``<datadir>/results``."""
        source = f"payload of flow run {flow_run_id}" if flow_run_id else "retried payload"
        payload = parameters.get("payload")
        if payload is None:
            raise ValueError(f"{source}: no `payload` parameter was given")
        try:
            priority = parameters.get("priority")
            if priority is not None:
                priority = checked_priority(priority)
            if isinstance(payload, str):
                parsed = parse_payload_text(payload, source)
            else:
                parsed = parse_payload(payload, source)
            folder = submit_folder(retry_of) if retry_of else self.datadir / "results"
            folder.mkdir(parents=True, exist_ok=True)
            job = self.jobs.submit(
                parsed.model_dump(mode="json"),
                str(folder),
                source,
                repositories=self.settings.repositories,
                priority=priority,
            )
        except (PayloadError, RpcError) as exc:
            raise ValueError(str(exc)) from None
        return job  # the sync attaches the run once it has made it the job's

    @property
    def host_name(self) -> str:
        return self.settings.daemon.host_name

    def startable(self, payload: Payload) -> str | None:
        """None if a pipeline of this host could start ``payload`` now, else why not."""
        job = Job(id=0, payload=payload, status="q")
        caps = self.supervisor.capabilities_of
        pipelines = self.store.pipelines().values()
        serving = [p for p in pipelines if can_serve(job, p, caps)]
        if not serving:
            wanted = ", ".join(
                f"{role} ({', '.join(sorted(t))})"
                for role, t in payload.techniques_by_role().items()
            )
            return f"no pipeline has the roles and techniques {wanted}"
        busy = {c.name for p in pipelines if p.jobid is not None for c in p.components}
        if any(is_free_for(job, p) and not busy & {c.name for c in p.components} for p in serving):
            return None
        sample = payload.sample.identifier
        return f"no pipeline that can run it is ready, free and holds sample {sample!r}"

    def has_ended(self, job: Job) -> bool:
        return job.jobpath is not None and (Path(job.jobpath) / FINAL_FILE).exists()

    def pipeline_views(self) -> dict[str, PipelineView]:
        return {
            p.name: PipelineView(p.sampleid, p.ready, p.jobid)
            for p in self.store.pipelines().values()
        }

    def pipeline_from_prefect(self, name: str, ready: bool) -> str | None:
        pip = self.store.pipelines().get(name)
        if pip is None or pip.ready == ready:
            return None  # removed, or as the user wants it already
        why = None
        if ready and pip.sampleid is None:
            why = "no sample is loaded; load one with `tomato pipeline load` first"
        else:
            try:
                (self.pipelines.ready if ready else self.pipelines.unready)(name)
                log.info("pipeline %s: %s in Prefect", name, "ready" if ready else "not ready")
            except RpcError as exc:
                why = str(exc)
        event = PIPELINE_REFUSED if why else PIPELINE_CHANGED
        detail = {"ready": pip.ready if why else ready, "cause": "prefect"}
        self.sync.emit(pipeline_event(event, name, self.origin, **detail, reason=why))
        return why

    # serving
    def serve(self) -> None:
        """Answer at once; bring up drivers, Prefect and job runners behind the API."""
        # a broken devices file must stop the start before anyone is told it worked
        load_devices(
            Path(self.settings.devices.config),
            known_drivers=driver_catalog(self.settings).known(),
        )
        self.server = RpcServer(self.settings.daemon.host, self.port, self.api.handle)
        plot_http.register(self.server, self.store.job, self.port)
        self.recovery.check_live_jobs()  # after a restart: jobs that ended while we were away
        self.snapshots.adopt_live_jobs(self.store.jobs(("r", "rp", "rd")))
        self.server.start_background()
        self.pipelines.apply_devices(self.settings)
        self.sync.start()
        self.supervisor.start_watching()
        self.launcher.fill()
        threading.Thread(target=self.gate.run, args=(self._stop,), name="gate", daemon=True).start()
        threading.Thread(
            target=self.recovery.run, args=(self._stop,), name="job-monitor", daemon=True
        ).start()
        threading.Thread(
            target=self.snapshots.run, args=(self._stop,), name="snapshot-clock", daemon=True
        ).start()
        log.info(
            "tomato daemon %s serving on %s:%s", __version__, self.settings.daemon.host, self.port
        )
        self._stop.wait()
        self.server.shutdown()

    def info(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "port": self.port,
            "host": {"name": self.settings.daemon.host_name, "address": self.settings.daemon.host},
            "pid": os.getpid(),
            "appdir": str(self.appdir),
            "datadir": str(self.datadir),
            "logdir": str(self.logdir),
            "settings": str(self.settings_path),
            "devices": str(self.settings.devices.config),
            "started_at": self.started_at.isoformat(),
            "prefect": self.sync.public(),
            "job_runners": {"error": self.launcher.error},
        }

    def stop(self, mode: str, running: list[int]) -> None:
        """Stop in the background: ``cancel`` running jobs first, or ``leave`` them running.

        Called under ``lock`` with ``running`` read under it: the gate starts no job after
        that (it checks ``paused`` under the same lock)."""
        self.jobs.accepting = False
        self.gate.paused = True
        threading.Thread(target=self._shutdown, args=(mode, running), daemon=True).start()

    def _shutdown(self, mode: str, running: list[int]) -> None:
        if mode == "cancel" and running:
            self.jobs.cancel(running, Cause.COMMAND, "tomato stop")
            deadline = time.monotonic() + 120
            while self.store.job_refs(("r", "rp", "rd")) and time.monotonic() < deadline:
                time.sleep(0.2)
        # only jobs deliberately left running keep their runner; the others end before the
        # drivers and the Prefect server go, so that their flow runs can report their end
        left = {ref.id for ref in self.store.job_refs(LIVE_STATUSES)} if mode == "leave" else set()
        self.launcher.close(keep=left)
        if not left:
            self.supervisor.stop_all()
        self.sync.stop(stop_server=not left)
        self._stop.set()
        self.recovery.job_ended.set()
