"""The tomato daemon: pipeline state, the job queue and its gate, drivers, and the RPC API."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tomato_cli import __version__
from tomato_cli.daemon import dispatcher
from tomato_cli.daemon.bridge import PrefectBridge
from tomato_cli.daemon.drivers import DriverSupervisor
from tomato_cli.daemon.launcher import JobLauncher
from tomato_cli.daemon.outputs import result_path, snapshot_path
from tomato_cli.daemon.processes import alive
from tomato_cli.daemon.state import PipelineState, StateStore, now
from tomato_cli.models import (
    ConfigError,
    Job,
    PayloadError,
    Settings,
    expand_pipelines,
    load_devices,
    load_settings,
    parse_payload,
)
from tomato_cli.models.context import JobContext, RoleComponent
from tomato_cli.models.job import CANCEL_FILE, FINAL_FILE, FINAL_STATUSES, read_final
from tomato_cli.orchestration.server import PrefectTarget, embedded_target
from tomato_cli.rpc import Reply, RpcError, RpcServer, Unreachable, free_port

log = logging.getLogger(__name__)

# running jobs are checked when a runner reports an end or exits, and at least this often
# (a daemon restarted after a crash has no pipe to runners it did not start)
MONITOR_INTERVAL_S = 2.0


class Daemon:
    def __init__(self, port: int, appdir: Path, settings_path: Path, verbosity: str = "INFO"):
        self.port = port
        self.appdir = appdir
        self.settings_path = settings_path
        self.settings: Settings = load_settings(settings_path)
        self.datadir = Path(self.settings.datadir)
        self.logdir = Path(self.settings.logdir)
        self.state = StateStore(self.datadir / f"tomato-{port}.db")
        self.started_at = now()
        self.lock = threading.RLock()  # one decision at a time: dispatch, cancel, job ends
        self.wake = threading.Event()
        self._stop = threading.Event()
        self.job_ended = threading.Event()
        self.stopping = False
        self.drivers = DriverSupervisor(self.state, self.settings.drivers, self.logdir)
        self.bridge = PrefectBridge(self, *self._prefect_target())
        self.launcher = JobLauncher(
            self.logdir,
            self.bridge.target.client_env(),
            capacity=self.settings.jobs.per_runner,
            max_jobs=self.settings.jobs.runner_max_jobs,
            on_job_end=self.job_ended.set,
        )
        self.server: RpcServer | None = None
        self.devices: list[dict[str, Any]] = []  # the devices file's devices, as applied
        self.handlers: dict[str, Callable[..., Reply]] = {
            name.removeprefix("cmd_"): getattr(self, name)
            for name in dir(self)
            if name.startswith("cmd_")
        }

    # start-up
    def _prefect_target(self) -> tuple[PrefectTarget, int | None]:
        cfg = self.settings.prefect
        if cfg.url:
            target = PrefectTarget(
                api_url=cfg.url.rstrip("/"),
                embedded=False,
                api_key=cfg.api_key,
                auth_string=cfg.auth_string,
            )
            return target, None
        port = cfg.port
        if port is None:
            saved = self.state.get_meta("prefect_port")
            port = int(saved) if saved else free_port()
            self.state.set_meta("prefect_port", str(port))
        target = embedded_target(self.datadir, port)
        if cfg.auth_string:
            target = PrefectTarget(target.api_url, True, target.home, auth_string=cfg.auth_string)
        return target, port

    def serve(self) -> None:
        """Answer at once; bring up drivers, Prefect and job runners behind the API."""
        from drivers.registry import available_drivers

        # a broken devices file must stop the start before anyone is told it worked
        load_devices(Path(self.settings.devices.config), known_drivers=available_drivers())
        self.server = RpcServer("127.0.0.1", self.port, self.handle)
        self.check_running_jobs()  # after a restart: jobs that ended while we were away
        self.server.start_background()
        self.apply_devices(self.settings)
        self.bridge.start()
        self.drivers.start_watching()
        self.launcher.fill()
        threading.Thread(target=self._dispatch_loop, name="dispatcher", daemon=True).start()
        threading.Thread(target=self._monitor_loop, name="job-monitor", daemon=True).start()
        log.info("tomato daemon %s serving on 127.0.0.1:%s", __version__, self.port)
        self._stop.wait()
        self.server.shutdown()

    def handle(self, cmd: str, args: dict[str, Any]) -> Reply:
        handler = self.handlers.get(cmd)
        if handler is None:
            return Reply(False, f"unknown command {cmd!r}")
        try:
            return handler(**args)
        except TypeError as exc:
            return Reply(False, f"bad arguments for {cmd!r}: {exc}")
        except (ConfigError, PayloadError) as exc:
            return Reply(False, str(exc))

    # devices and pipelines
    def apply_devices(self, settings: Settings) -> dict[str, list[str]]:
        """Load the devices file and make pipelines and drivers match it.

        Pipelines or components used by a running job are kept as they are.
        """
        from drivers.registry import available_drivers

        cfg = load_devices(Path(settings.devices.config), known_drivers=available_drivers())
        self.devices = [d.model_dump() for d in cfg.devices]
        defs = {p.name: p for p in expand_pipelines(cfg)}
        changes: dict[str, list[str]] = {"added": [], "removed": [], "changed": [], "kept": []}
        with self.lock:
            current = self.state.pipelines()
            busy = {name for name, p in current.items() if p.jobid is not None}
            with self.state.transaction() as db:
                for name in current:
                    if name not in defs:
                        if name in busy:
                            changes["kept"].append(name)
                        else:
                            self.state.delete_pipeline(name, db)
                            changes["removed"].append(name)
                for name, pdef in defs.items():
                    old = current.get(name)
                    if old is None:
                        self.state.save_pipeline(PipelineState(name, pdef.components), db)
                        changes["added"].append(name)
                    elif old.components != pdef.components:
                        if name in busy:
                            changes["kept"].append(name)
                            continue
                        old.components = pdef.components
                        self.state.save_pipeline(old, db)
                        changes["changed"].append(name)
            components = {c.name: c for p in self.state.pipelines().values() for c in p.components}
            self.drivers.settings = settings.drivers
            self.drivers.configure(list(components.values()))
        self.bridge.mark_slots_dirty()
        self.wake.set()
        return changes

    def _pipeline(self, name: str) -> PipelineState:
        pip = self.state.pipelines().get(name)
        if pip is None:
            raise RpcError(f"pipeline {name!r} does not exist")
        return pip

    def _with_capabilities(self, pip: PipelineState) -> dict[str, Any]:
        out = pip.public()
        for comp in out["components"]:
            comp["capabilities"] = self.drivers.capabilities_of(
                next(c for c in pip.components if c.name == comp["name"])
            )
        return out

    # RPC: daemon
    def cmd_hello(self) -> Reply:
        return Reply(True, f"tomato daemon on port {self.port}", self._info())

    def _info(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "port": self.port,
            "pid": os.getpid(),
            "appdir": str(self.appdir),
            "datadir": str(self.datadir),
            "logdir": str(self.logdir),
            "settings": str(self.settings_path),
            "devices": str(self.settings.devices.config),
            "started_at": self.started_at.isoformat(),
            "prefect": self.bridge.public(),
        }

    def cmd_status(self, what: str = "all") -> Reply:
        pipelines = [self._with_capabilities(p) for p in self.state.pipelines().values()]
        data: dict[str, Any] = self._info()
        data["pipelines"] = pipelines
        data["drivers"] = self.drivers.public()
        data["components"] = [c for p in pipelines for c in p["components"]]
        data["devices"] = self.devices  # as last applied, not re-read on every status
        data["jobs"] = {
            "queued": [j.id for j in self.state.jobs(("q", "qw"))],
            "running": [j.id for j in self.state.jobs(("r", "rd"))],
        }
        if what != "all":
            if what not in ("pipelines", "drivers", "devices", "components"):
                raise RpcError(f"unknown status section {what!r}")
            return Reply(True, f"{len(data[what])} {what}", data[what])
        return Reply(True, f"tomato daemon on port {self.port} is running", data)

    def cmd_stop(self, mode: str = "refuse") -> Reply:
        """Stop the daemon. With running jobs: refuse, cancel them first, or leave them running."""
        running = self.state.jobs(("r", "rd"))
        if running and mode == "refuse":
            ids = ", ".join(str(j.id) for j in running)
            raise RpcError(
                f"jobs {ids} are running; use --cancel-jobs to cancel them and stop, "
                "or --leave-running to stop the daemon and let them finish"
            )
        if mode not in ("refuse", "cancel", "leave"):
            raise RpcError(f"unknown stop mode {mode!r}")
        self.stopping = True
        threading.Thread(target=self._shutdown, args=(mode, running), daemon=True).start()
        return Reply(True, f"tomato daemon on port {self.port} is stopping", self._info())

    def _shutdown(self, mode: str, running: list[Job]) -> None:
        if mode == "cancel" and running:
            self.cancel_jobs([j.id for j in running], source="tomato stop")
            deadline = time.monotonic() + 120
            while self.state.jobs(("r", "rd")) and time.monotonic() < deadline:
                time.sleep(0.2)
        self.launcher.stop_idle()
        if mode != "leave" or not running:
            self.drivers.stop_all()
        self.bridge.stop(stop_server=mode != "leave" or not running)
        self._stop.set()
        self.job_ended.set()

    def cmd_reload(self) -> Reply:
        settings = load_settings(self.settings_path)
        changes = self.apply_devices(settings)
        self.settings = settings
        msg = ", ".join(f"{k}: {', '.join(v)}" for k, v in changes.items() if v) or "no changes"
        if changes["kept"]:
            msg += " (kept: used by a running job)"
        return Reply(True, f"reloaded: {msg}", changes)

    # RPC: pipelines
    def cmd_pipeline_load(self, pipeline: str, sampleid: str) -> Reply:
        with self.lock:
            pip = self._pipeline(pipeline)
            if pip.jobid is not None:
                raise RpcError(f"pipeline {pipeline!r} is running job {pip.jobid}")
            if pip.sampleid is not None:
                raise RpcError(
                    f"pipeline {pipeline!r} already holds sample {pip.sampleid!r}; eject it first"
                )
            pip.sampleid = sampleid
            self.state.save_pipeline(pip)
        self.wake.set()
        return Reply(True, f"loaded {sampleid!r} into {pipeline!r}", pip.public())

    def cmd_pipeline_eject(self, pipeline: str) -> Reply:
        with self.lock:
            pip = self._pipeline(pipeline)
            if pip.jobid is not None:
                raise RpcError(f"pipeline {pipeline!r} is running job {pip.jobid}")
            pip.sampleid, pip.ready = None, False
            self.state.save_pipeline(pip)
        return Reply(True, f"ejected the sample from {pipeline!r}", pip.public())

    def cmd_pipeline_ready(self, pipeline: str) -> Reply:
        with self.lock:
            pip = self._pipeline(pipeline)
            pip.ready = True
            self.state.save_pipeline(pip)
        self.wake.set()
        return Reply(True, f"pipeline {pipeline!r} is ready", pip.public())

    # RPC: jobs
    def cmd_job_submit(self, payload: dict[str, Any], cwd: str, source: str = "payload") -> Reply:
        if self.stopping:
            raise RpcError("the daemon is stopping; no new jobs are taken")
        parsed = parse_payload(payload, source)
        self._validate_against_pipelines(parsed, source)
        with self.lock, self.state.transaction() as db:
            jobid = self.state.new_job_id(db)
            out = parsed.settings.output
            snap = parsed.settings.snapshot
            try:
                respath = result_path(cwd, jobid, out.path, out.prefix)
                snappath = snapshot_path(
                    cwd, jobid, snap.path if snap else None, snap.prefix if snap else None
                )
            except RpcError as exc:
                raise RpcError(f"{source}: {exc}") from None
            jobdir = Path(self.settings.jobs.storage) / str(jobid)
            job = Job(
                id=jobid,
                payload=parsed,
                status="q",
                submitted_at=now(),
                jobpath=str(jobdir),
                respath=str(respath),
                snappath=str(snappath),
            )
            self.state.save_job(job, db)
        jobdir.mkdir(parents=True, exist_ok=True)
        (jobdir / "job.json").write_text(job.model_dump_json(indent=1))
        self.bridge.create_now(jobid)
        self.wake.set()
        job = self.state.job(jobid) or job
        return Reply(True, f"job {jobid} submitted", job.model_dump(mode="json"))

    def _validate_against_pipelines(self, payload: Any, source: str) -> None:
        """Every role exists somewhere with the techniques asked of it; task params check out."""
        pipelines = self.state.pipelines().values()
        for i, task in enumerate(payload.method):
            comps = [
                p.roles()[task.component_role]
                for p in pipelines
                if task.component_role in p.roles()
            ]
            where = f"{source}: method[{i}]"
            if not comps:
                raise RpcError(
                    f"{where}: no pipeline has a component with role {task.component_role!r}"
                )
            errors: list[str] = []
            for driver in sorted({c.driver for c in comps}):
                try:
                    reply = self.drivers.call(
                        driver,
                        "task_validate",
                        technique=task.technique_name,
                        task_params=task.task_params,
                        sampling_interval=task.sampling_interval,
                    )
                except Unreachable:
                    errors.append(f"driver {driver!r} is not running")
                    continue
                if reply.success:
                    break
                errors.append(reply.msg)
            else:
                raise RpcError(f"{where}: {'; '.join(errors)}")

    def _jobs(self, jobids: list[int] | None) -> list[Job]:
        if not jobids:
            return self.state.jobs()
        jobs = []
        for jobid in jobids:
            job = self.state.job(int(jobid))
            if job is None:
                raise RpcError(f"job {jobid} does not exist")
            jobs.append(job)
        return jobs

    def cmd_job_status(self, jobids: list[int] | None = None) -> Reply:
        jobs = self._jobs(jobids)
        return Reply(True, f"{len(jobs)} job(s)", [j.model_dump(mode="json") for j in jobs])

    def cmd_job_cancel(self, jobids: list[int]) -> Reply:
        jobs = self._jobs(jobids)
        done = [j for j in jobs if j.status in FINAL_STATUSES]
        if done:
            listed = ", ".join(f"{j.id} ({j.status})" for j in done)
            raise RpcError(f"cannot cancel finished job(s): {listed}")
        changed = self.cancel_jobs([j.id for j in jobs], source="ketchup cancel")
        return Reply(True, f"cancelling job(s) {', '.join(map(str, jobids))}", changed)

    def cancel_jobs(self, jobids: list[int], source: str) -> list[dict[str, Any]]:
        out = []
        with self.lock:
            for jobid in jobids:
                job = self.state.job(jobid)
                if job is None or job.status in FINAL_STATUSES:
                    continue
                if job.status in ("q", "qw"):
                    job.status, job.completed_at = "cd", now()
                    job.error = f"cancelled while queued ({source})"
                else:
                    job.status = "rd"
                    self._signal_cancel(job, source)
                self.state.save_job(job)
                log.info("job %s: %s (%s)", jobid, job.status, source)
                out.append(job.model_dump(mode="json"))
        self.bridge.wake.set()
        return out

    @staticmethod
    def _signal_cancel(job: Job, source: str) -> None:
        if job.jobpath is None:
            return
        try:
            Path(job.jobpath).mkdir(parents=True, exist_ok=True)  # it may not have begun yet
            (Path(job.jobpath) / CANCEL_FILE).write_text(f"{source}\n")
        except OSError as exc:
            raise RpcError(f"cannot signal job {job.id} to stop: {exc}") from None

    def cmd_job_context(self, jobid: int) -> Reply:
        """What the job's flow run needs: the job, its pipeline's components, driver ports."""
        job = self.state.job(jobid)
        if job is None:
            raise RpcError(f"job {jobid} does not exist")
        return Reply(True, "", self._context(job).model_dump(mode="json"))

    def _context(self, job: Job) -> JobContext:
        components: dict[str, RoleComponent] = {}
        if job.pipeline:
            pip = self.state.pipelines().get(job.pipeline)
            for comp in pip.components if pip else []:
                comp = comp.model_copy(update={"capabilities": self.drivers.capabilities_of(comp)})
                components[comp.role] = RoleComponent(
                    component=comp, driver_port=self.drivers.port_of(comp.driver)
                )
        return JobContext(
            jobid=job.id,
            daemon_port=self.port,
            job=job,
            components=components,
            flow_run_id=job.flow_run_id,
        )

    def cmd_driver_port(self, driver: str) -> Reply:
        port = self.drivers.port_of(driver)
        if port is None:
            raise RpcError(f"driver {driver!r} is not running")
        return Reply(True, "", port)

    def cmd_job_update(self, jobid: int, status: str, error: str | None = None) -> Reply:
        """Reports from a job's flow run: it runs (``r``), or it ended (``c``, ``ce``, ``cd``)."""
        with self.lock:
            job = self.state.job(jobid)
            if job is None:
                raise RpcError(f"job {jobid} does not exist")
            if job.status in FINAL_STATUSES:
                return Reply(True, f"job {jobid} already ended as {job.status}")
            if status == "r":
                job.connected_at = now()
                if job.status != "rd":
                    job.status = "r"
            elif status in FINAL_STATUSES:
                self._finish(job, status, error)
            else:
                raise RpcError(f"a flow run cannot report status {status!r}")
            self.state.save_job(job)
            self.state.set_prefect_status(job.id, job.status)
        return Reply(True, f"job {jobid}: {job.status}", {"status": job.status})

    def _finish(self, job: Job, status: str, error: str | None) -> None:
        """End a job and release its pipeline (callers hold self.lock and save the job)."""
        job.status, job.error, job.completed_at = status, error, now()
        if job.pipeline:
            pip = self.state.pipelines().get(job.pipeline)
            if pip is not None and pip.jobid == job.id:
                pip.jobid = None
                pip.ready = job.payload.settings.unlock_when_done
                self.state.save_pipeline(pip)
                self.bridge.mark_slots_dirty()
        self.wake.set()

    # RPC: components (passata)
    def _component(self, name: str):
        for pip in self.state.pipelines().values():
            for comp in pip.components:
                if name in (comp.name, comp.key, f"{pip.name}.{comp.role}"):
                    return comp
        raise RpcError(f"component {name!r} does not exist")

    def cmd_component(
        self, component: str, action: str, args: dict[str, Any] | None = None
    ) -> Reply:
        allowed = {
            "status",
            "attrs",
            "capabilities",
            "constants",
            "get_attr",
            "set_attr",
            "reset",
        }
        comp = self._component(component)
        if action == "register":
            drv = self.drivers.drivers.get(comp.driver)
            if drv is None:
                raise RpcError(f"driver {comp.driver!r} is not configured")
            self.drivers.register(drv)
            return Reply(True, f"registered {comp.name}", self.drivers.capabilities_of(comp))
        if action not in allowed:
            raise RpcError(f"unknown component command {action!r}")
        if action in ("set_attr", "reset"):
            busy = [
                p
                for p in self.state.pipelines().values()
                if p.jobid is not None and comp in p.components
            ]
            if busy:
                raise RpcError(f"{comp.name} is used by running job {busy[0].jobid}")
        try:
            reply = self.drivers.call(comp.driver, action, key=comp.key, **(args or {}))
        except Unreachable:
            raise RpcError(f"driver {comp.driver!r} of {comp.name} is not running") from None
        if not reply.success:
            raise RpcError(f"{comp.name}: {reply.msg}")
        return Reply(True, reply.msg or f"{action} {comp.name}", reply.data)

    # the gate
    def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            self.wake.wait(0.5)
            self.wake.clear()
            if self.stopping:
                continue
            try:
                self.dispatch()
            except Exception:
                log.exception("dispatcher failed; retrying")
                time.sleep(1)

    def dispatch(self) -> None:
        with self.lock:
            queued = self.state.jobs(("q", "qw"))
            if not queued:
                return
            pipelines = self.state.pipelines()
            statuses, assignments = dispatcher.plan(queued, pipelines, self.drivers.capabilities_of)
            by_id = {j.id: j for j in queued}
            changed = False
            for jobid, status in statuses.items():
                if by_id[jobid].status != status:
                    by_id[jobid].status = status
                    self.state.save_job(by_id[jobid])
                    changed = True
            for jobid, pname in assignments:
                job = by_id[jobid]
                if job.flow_run_id is None:
                    continue  # its flow run does not exist yet: Prefect is still starting
                self._start_job(job, pipelines[pname])
            if changed:
                self.bridge.wake.set()

    def _start_job(self, job: Job, pip: PipelineState) -> None:
        with self.state.transaction() as db:
            pip.jobid = job.id
            self.state.save_pipeline(pip, db)
            job.status, job.pipeline, job.launched_at = "r", pip.name, now()
            self.state.save_job(job, db)
        self.state.set_prefect_status(job.id, "r")  # Prefect's engine writes Running itself
        job.pid = self.launcher.launch(self._context(job))
        self.state.save_job(job)
        self.bridge.mark_slots_dirty()
        log.info("job %s started on %s (runner pid %s)", job.id, pip.name, job.pid)

    def attach_flow_run(self, jobid: int, flow_run_id: str) -> Job:
        with self.lock:
            job = self.state.job(jobid)
            assert job is not None
            job.flow_run_id = flow_run_id
            self.state.save_job(job)
            self.state.set_prefect_status(jobid, "q")
        self.wake.set()
        return job

    # running jobs whose process died
    def check_running_jobs(self) -> None:
        """Running jobs whose process is gone are ended: by their own last word, or as ce."""
        self.launcher.reap()
        for ref in self.state.job_refs(("r", "rd")):
            # a runner may host other jobs and outlive this one: its final word counts too
            ended = ref.jobpath is not None and (Path(ref.jobpath) / FINAL_FILE).exists()
            if (ref.pid and not alive(ref.pid)) or ended:
                job = self.state.job(ref.id)
                if job is not None:
                    self._recover(job)

    def _monitor_loop(self) -> None:
        while not self._stop.is_set():
            self.job_ended.wait(MONITOR_INTERVAL_S)
            self.job_ended.clear()
            if self._stop.is_set():
                return
            try:
                self.check_running_jobs()
            except Exception:
                log.exception("job monitor failed; retrying")

    def _recover(self, job: Job) -> None:
        """A running job's process is gone: take its own last word, or call it crashed."""
        final = read_final(Path(job.jobpath))
        code = self.launcher.exit_code(job.id)
        with self.lock:
            fresh = self.state.job(job.id)
            if fresh is None or fresh.status in FINAL_STATUSES:
                return
            if final is not None:
                # its own last word (final.json): its results are written already. This is
                # how every job ends, and how one that ended while the daemon was away is
                # noticed after a restart.
                self._finish(fresh, final["status"], final.get("error"))
                self.state.save_job(fresh)
                log.info("job %s ended as %s", job.id, fresh.status)
                return
            why = f"the job's flow-run process (pid {job.pid}) died"
            if code is not None:
                why += f" with exit code {code}"
            log.error("job %s: %s; writing its results from the stored data", job.id, why)
            self._finish(fresh, "ce", why)
            self.state.save_job(fresh)
        threading.Thread(target=self._write_recovered, args=(fresh,), daemon=True).start()
        self.bridge.wake.set()

    def _salvage(self, job: Job, context: JobContext) -> None:
        """Stop the dead job's tasks on the hardware; store what the drivers still buffer."""
        from tomato_cli.store import JobStore

        with JobStore(Path(job.jobpath)) as store:
            for role, entry in context.components.items():
                comp = entry.component
                try:
                    self.drivers.call(comp.driver, "task_stop", key=comp.key)
                    data = self.drivers.call(comp.driver, "task_data", key=comp.key).data or {}
                    if data.get("uts"):
                        store.append(role, data["uts"], data["data"], data.get("units", {}))
                    self.drivers.call(comp.driver, "reset", key=comp.key)
                except (Unreachable, OSError, ValueError) as exc:
                    log.warning("job %s: could not salvage %s: %s", job.id, comp.name, exc)

    def _write_recovered(self, job: Job) -> None:
        from tomato_cli.store.results import write_final_results

        try:
            context = self._context(job)
            self._salvage(job, context)
            path, problem = write_final_results(context)
            log.info("job %s: recovered results written to %s", job.id, path)
            if problem:
                with self.lock:
                    fresh = self.state.job(job.id)
                    if fresh is not None:
                        fresh.error = f"{fresh.error}; {problem}"
                        self.state.save_job(fresh)
        except Exception:
            log.exception("job %s: could not write results after its process died", job.id)
