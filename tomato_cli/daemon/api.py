"""The daemon's RPC API: one method per command of the CLIs and of job runners.

Commands arrive as ``{"cmd": name, "args": {...}}`` (see :mod:`tomato_cli.rpc`). Arguments
are checked against the command's signature before it runs, so a ``TypeError`` raised
inside a command is reported as the bug it is, not as bad arguments.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tomato_cli.daemon.lifecycle import Cause
from tomato_cli.models import FINAL_STATUSES, ConfigError, PayloadError, load_settings
from tomato_cli.orchestration.events import JOB_CONDITION_MET, STEP_CONDITION_MET, job_event
from tomato_cli.rpc import Reply, RpcError, Unreachable

if TYPE_CHECKING:
    from tomato_cli.daemon.daemon import Daemon

log = logging.getLogger(__name__)

COMPONENT_ACTIONS = (
    "status",
    "attrs",
    "capabilities",
    "constants",
    "get_attr",
    "set_attr",
    "reset",
)
STATUS_SECTIONS = ("pipelines", "drivers", "devices", "components")


class DaemonApi:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.handlers: dict[str, Callable[..., Reply]] = {
            name.removeprefix("cmd_"): getattr(self, name)
            for name in dir(self)
            if name.startswith("cmd_")
        }

    def handle(self, cmd: str, args: dict[str, Any]) -> Reply:
        handler = self.handlers.get(cmd)
        if handler is None:
            return Reply(False, f"unknown command {cmd!r}")
        try:
            inspect.signature(handler).bind(**args)
        except TypeError as exc:
            return Reply(False, f"bad arguments for {cmd!r}: {exc}")
        try:
            return handler(**args)
        except (ConfigError, PayloadError) as exc:
            return Reply(False, str(exc))

    # the daemon
    def cmd_hello(self) -> Reply:
        return Reply(True, f"tomato daemon on port {self.daemon.port}", self.daemon.info())

    def cmd_status(self, what: str = "all") -> Reply:
        d = self.daemon
        pipelines = [d.pipelines.public(p) for p in d.store.pipelines().values()]
        data: dict[str, Any] = d.info()
        data["pipelines"] = pipelines
        data["drivers"] = d.supervisor.public()
        data["components"] = [c for p in pipelines for c in p["components"]]
        data["devices"] = d.pipelines.devices  # as last applied, not re-read on every status
        data["jobs"] = {
            "queued": [j.id for j in d.store.job_refs(("q", "qw"))],
            "running": [j.id for j in d.store.job_refs(("r", "rp", "rd"))],
        }
        if what == "all":
            return Reply(True, f"tomato daemon on port {d.port} is running", data)
        if what not in STATUS_SECTIONS:
            raise RpcError(f"unknown status section {what!r}")
        return Reply(True, f"{len(data[what])} {what}", data[what])

    def cmd_stop(self, mode: str = "refuse") -> Reply:
        """Stop the daemon. With running jobs: refuse, cancel them first, or leave them."""
        if mode not in ("refuse", "cancel", "leave"):
            raise RpcError(f"unknown stop mode {mode!r}")
        with self.daemon.lock:  # no job starts between this look and the stop
            running = [j.id for j in self.daemon.store.job_refs(("r", "rp", "rd"))]
            if running and mode == "refuse":
                ids = ", ".join(map(str, running))
                raise RpcError(
                    f"jobs {ids} are running; use --cancel-jobs to cancel them and stop, "
                    "or --leave-running to stop the daemon and let them finish"
                )
            self.daemon.stop(mode, running)
        msg = f"tomato daemon on port {self.daemon.port} is stopping"
        return Reply(True, msg, self.daemon.info())

    def cmd_reload(self) -> Reply:
        d = self.daemon
        settings = load_settings(d.settings_path)
        changes = d.pipelines.apply_devices(settings)
        d.settings = settings
        msg = ", ".join(f"{k}: {', '.join(v)}" for k, v in changes.items() if v) or "no changes"
        if changes["kept"]:
            msg += " (kept: used by a running job)"
        return Reply(True, f"reloaded: {msg}", changes)

    # pipelines
    def cmd_pipeline_load(self, pipeline: str, sampleid: str) -> Reply:
        pip = self.daemon.pipelines.load(pipeline, sampleid)
        return Reply(True, f"loaded {sampleid!r} into {pipeline!r}", pip.public())

    def cmd_pipeline_eject(self, pipeline: str) -> Reply:
        pip = self.daemon.pipelines.eject(pipeline)
        return Reply(True, f"ejected the sample from {pipeline!r}", pip.public())

    def cmd_pipeline_ready(self, pipeline: str) -> Reply:
        pip = self.daemon.pipelines.ready(pipeline)
        return Reply(True, f"pipeline {pipeline!r} is ready", pip.public())

    def cmd_pipeline_unready(self, pipeline: str) -> Reply:
        pip = self.daemon.pipelines.unready(pipeline)
        return Reply(True, f"pipeline {pipeline!r} is not ready", pip.public())

    # jobs
    def cmd_job_submit(
        self,
        payload: dict[str, Any],
        cwd: str,
        source: str = "payload",
        jobname: str | None = None,
        parent_flow_run_id: str | None = None,
    ) -> Reply:
        """Queue a payload; ``parent_flow_run_id``: the Prefect flow run that submits it
        (``tomato_cli.client`` inside a flow), whose sub-run the job's flow run becomes."""
        repositories = self.daemon.settings.repositories
        job = self.daemon.jobs.submit(
            payload, cwd, source, jobname, repositories, parent_flow_run_id=parent_flow_run_id
        )
        self.daemon.sync.create_now(job.id)
        job = self.daemon.store.job(job.id) or job
        return Reply(True, f"job {job.id} submitted", job.model_dump(mode="json"))

    def cmd_job_status(self, jobids: list[int] | None = None, ended: int | None = None) -> Reply:
        """The given jobs; else every job, or (``ended``) the jobs not ended and the
        ``ended`` that ended last, the message saying how many are left out."""
        if jobids or ended is None:
            jobs = self.daemon.jobs.select(jobids)
            return Reply(True, f"{len(jobs)} job(s)", [j.model_dump(mode="json") for j in jobs])
        if isinstance(ended, bool) or not isinstance(ended, int) or ended < 0:
            raise RpcError(f"the number of ended jobs to show must be 0 or more, not {ended!r}")
        jobs, left_out = self.daemon.store.jobs_shown(ended)
        msg = f"{len(jobs)} job(s)"
        if left_out:
            msg += (
                f"; {left_out} that ended earlier not shown (`ketchup status --all` lists every"
                " job, `ketchup search NAME -c` finds them by name)"
            )
        return Reply(True, msg, [j.model_dump(mode="json") for j in jobs])

    def cmd_job_cancel(self, jobids: list[int], skip_finished: bool = False) -> Reply:
        """Cancel jobs; ``skip_finished``: jobs that ended meanwhile are left out, not refused
        (`ketchup cancel --all` lists the jobs before it cancels them)."""
        jobs = self.daemon.jobs.select(jobids)
        done = [j for j in jobs if j.status in FINAL_STATUSES]
        if done and skip_finished:
            jobs = [j for j in jobs if j.status not in FINAL_STATUSES]
        elif done:
            listed = ", ".join(f"{j.id} ({j.status})" for j in done)
            raise RpcError(f"cannot cancel finished job(s): {listed}")
        changed = self.daemon.jobs.cancel([j.id for j in jobs], Cause.COMMAND, "ketchup cancel")
        return Reply(
            True,
            f"cancelling job(s) {', '.join(map(str, jobids))}",
            [j.model_dump(mode="json") for j in changed],
        )

    def cmd_job_priority(self, jobid: int, priority: int) -> Reply:
        job = self.daemon.queue.set_priority(jobid, priority)
        return Reply(True, f"job {job.id} has priority {job.priority}", job.model_dump(mode="json"))

    def cmd_job_hold(self, jobids: list[int]) -> Reply:
        jobs = self.daemon.queue.hold(jobids, held=True)
        ids = ", ".join(str(j.id) for j in jobs)
        return Reply(True, f"held job(s) {ids}", [j.model_dump(mode="json") for j in jobs])

    def cmd_job_release(self, jobids: list[int]) -> Reply:
        jobs = self.daemon.queue.hold(jobids, held=False)
        ids = ", ".join(str(j.id) for j in jobs)
        return Reply(True, f"released job(s) {ids}", [j.model_dump(mode="json") for j in jobs])

    def cmd_job_pause(self, jobids: list[int]) -> Reply:
        return self._hold(jobids, "r", "pause", self.daemon.jobs.pause)

    def cmd_job_resume(self, jobids: list[int]) -> Reply:
        return self._hold(jobids, "rp", "resume", self.daemon.jobs.resume)

    def _hold(self, jobids: list[int], needs: str, verb: str, act: Callable[..., Any]) -> Reply:
        jobs = self.daemon.jobs.select(jobids)
        wrong = [j for j in jobs if j.status != needs]
        if wrong:
            state = "running" if needs == "r" else "paused"
            listed = ", ".join(f"{j.id} ({j.status})" for j in wrong)
            raise RpcError(f"cannot {verb} job(s) that are not {state}: {listed}")
        changed = act([j.id for j in jobs], Cause.COMMAND)
        ids = ", ".join(str(j.id) for j in changed)
        return Reply(True, f"{verb}d job(s) {ids}", [j.model_dump(mode="json") for j in changed])

    def cmd_job_grant(self, jobid: int, flow_run_id: str, grant: str) -> Reply:
        job = self.daemon.jobs.check_grant(jobid, flow_run_id, grant)
        return Reply(True, f"job {jobid} may run on {job.pipeline}", {"pipeline": job.pipeline})

    def cmd_job_context(self, jobid: int) -> Reply:
        context = self.daemon.jobs.context(self.daemon.jobs.get(jobid))
        context.grant = None  # the grant is handed to the job's runner only
        return Reply(True, "", context.model_dump(mode="json"))

    def cmd_job_update(self, jobid: int, status: str, error: str | None = None) -> Reply:
        job = self.daemon.jobs.runner_report(jobid, status, error)
        return Reply(True, f"job {jobid}: {job.status}", {"status": job.status})

    def cmd_job_condition(self, jobid: int, step: int | None, condition: dict[str, Any]) -> Reply:
        """A running job's flow says a condition was met: a step's ``stop_when`` (``step``),
        or the job's ``end_when`` (``step`` None); sent on as a Prefect event."""
        job = self.daemon.jobs.get(jobid)
        name = JOB_CONDITION_MET if step is None else STEP_CONDITION_MET
        detail = {k: condition.get(k) for k in ("text", "role", "variable", "value", "units")}
        detail["condition"] = detail.pop("text")
        if step is not None:
            detail["step"] = step
        self.daemon.sync.emit(job_event(name, job, self.daemon.origin, **detail))
        return Reply(True, f"job {jobid}: {condition.get('text')!r} met")

    def cmd_driver_port(self, driver: str) -> Reply:
        port = self.daemon.supervisor.port_of(driver)
        if port is None:
            raise RpcError(f"driver {driver!r} is not running")
        return Reply(True, "", port)

    # components (passata)
    def cmd_component(
        self, component: str, action: str, args: dict[str, Any] | None = None
    ) -> Reply:
        d = self.daemon
        comp, _ = d.pipelines.component(component)
        args = dict(args or {})
        if action == "register":
            drv = d.supervisor.hosts.get(comp.driver)
            if drv is None:
                raise RpcError(f"driver {comp.driver!r} is not configured")
            d.supervisor.register(drv)
            return Reply(True, f"registered {comp.name}", d.supervisor.capabilities_of(comp))
        if action not in COMPONENT_ACTIONS:
            raise RpcError(f"unknown component command {action!r}")
        if action in ("set_attr", "reset"):
            jobid = d.pipelines.busy_with(comp)
            if jobid is not None:
                raise RpcError(f"{comp.name} is used by running job {jobid}")
        if action == "set_attr":
            args["value"] = self._checked_value(comp, args)
        try:
            reply = d.supervisor.call(comp.driver, action, key=comp.key, **args)
        except Unreachable:
            raise RpcError(f"driver {comp.driver!r} of {comp.name} is not running") from None
        if not reply.success:
            raise RpcError(f"{comp.name}: {reply.msg}")
        return Reply(True, reply.msg or f"{action} {comp.name}", reply.data)

    def _checked_value(self, comp: Any, args: dict[str, Any]) -> Any:
        """The value of ``passata set``, checked here as the driver declared the attribute:
        a bad value never reaches a driver host that serves other jobs."""
        spec = self.daemon.supervisor.spec_of(comp)
        if spec is None:
            raise RpcError(f"driver {comp.driver!r} of {comp.name} is not running")
        try:
            return spec.check_attr(str(args.get("attr")), args.get("value"))
        except ValueError as exc:
            raise RpcError(f"{comp.name}: {exc}") from None
