"""Jobs: submitting, cancelling, and what a job's flow run reports and is handed."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tomato_cli.daemon.driver_supervisor import DriverSupervisor
from tomato_cli.daemon.lifecycle import Cause, JobLifecycle
from tomato_cli.daemon.outputs import result_path, snapshot_path
from tomato_cli.daemon.state import PipelineState, StateStore, now
from tomato_cli.models import (
    FINAL_STATUSES,
    LIVE_STATUSES,
    WAITING_STATUSES,
    Job,
    Payload,
    parse_payload,
)
from tomato_cli.models.conditions import UnitsOf
from tomato_cli.models.context import JobContext, RoleComponent
from tomato_cli.models.job import PAUSE_FILE, job_folder, write_cancel
from tomato_cli.models.payload import BoundConditions, bind_conditions
from tomato_cli.models.submit import complete_payload, crate_path
from tomato_cli.rpc import LOOPBACK, RpcError

log = logging.getLogger(__name__)


class JobControl:
    """Every change a user or a job's flow run asks of a job goes through here."""

    def __init__(
        self,
        store: StateStore,
        lifecycle: JobLifecycle,
        lock: threading.RLock,
        supervisor: DriverSupervisor,
        port: int,
        storage: Callable[[], Path],
        host: str = LOOPBACK,
        lab: bool = False,
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.lock = lock  # the daemon's decision lock
        self.supervisor = supervisor
        self.port = port
        self.host = host  # where the daemon listens: its jobs call it there
        self.storage = storage  # the jobs folder of the current settings
        self.lab = lab  # on a lab server: job ids are numbered lab-wide
        self.accepting = True

    # submit
    def submit(
        self,
        payload: dict[str, Any],
        cwd: str,
        source: str,
        jobname: str | None = None,
        repositories: Mapping[str, Any] | None = None,
        priority: int | None = None,
        parent_flow_run_id: str | None = None,
    ) -> Job:
        """Validate a payload completely, then queue it as a new job; ``priority`` (checked
        by the caller) overrides the payload's ``settings: priority``; the job's flow run
        is made a sub-run of ``parent_flow_run_id`` (see :meth:`FlowRuns.create`)."""
        if not self.accepting:
            raise RpcError("the daemon is stopping; no new jobs are taken")
        parent_flow_run_id = checked_flow_run_id(parent_flow_run_id)
        parsed = complete_payload(parse_payload(payload, source), cwd, repositories)
        self.check_against_pipelines(parsed, source)
        with self.lock, self.lifecycle.transaction() as db:
            floor = int(self.store.get_meta("lab_job_floor") or 0)
            jobid = self.store.new_job_id(db, self._lab_number(), floor)
            out, snap = parsed.settings.output, parsed.settings.snapshot
            try:
                respath = result_path(cwd, jobid, out.path, out.prefix)
                snappath = snapshot_path(
                    cwd, jobid, snap.path if snap else None, snap.prefix if snap else None
                )
            except RpcError as exc:
                raise RpcError(f"{source}: {exc}") from None
            jobdir = job_folder(self.storage(), jobid)
            job = Job(
                id=jobid,
                payload=parsed,
                status="q",
                submitted_at=now(),
                jobpath=str(jobdir),
                respath=str(respath),
                snappath=str(snappath),
                jobname=jobname,
                cratepath=crate_path(respath, parsed, repositories),
                priority=parsed.settings.priority if priority is None else priority,
                parent_flow_run_id=parent_flow_run_id,
            )
            self.lifecycle.move(job, "q", Cause.SUBMIT, db=db)
        self.lifecycle.committed()
        jobdir.mkdir(parents=True, exist_ok=True)
        (jobdir / "job.json").write_text(job.model_dump_json(indent=1))
        return job

    def _lab_number(self) -> int | None:
        """On a lab server, this host's number in the lab (job ids are lab-wide)."""
        if not self.lab:
            return None
        number = self.store.get_meta("lab_number")
        if number is None:
            raise RpcError(
                "this host has no lab-wide job numbers yet: its lab Prefect server has not "
                "answered since the host first started; try again when `tomato status` says "
                "the sync is healthy"
            )
        return int(number)

    def check_against_pipelines(self, payload: Payload, source: str) -> None:
        """Every role exists somewhere, with the technique and task parameters asked of it.

        Checked here against what each component's driver declared when it registered: a
        user's values never reach a driver host before the job runs.
        """
        pipelines = list(self.store.pipelines().values())
        for i, task in enumerate(payload.method):
            role = task.component_role
            comps = [p.roles()[role] for p in pipelines if role in p.roles()]
            where = f"{source}: method[{i}]"
            if not comps:
                raise RpcError(
                    f"{where}: no pipeline has a component with role {task.component_role!r}"
                )
            errors: list[str] = []
            checked: set[int] = set()
            for comp in comps:
                spec = self.supervisor.spec_of(comp)
                if spec is None:
                    error = f"driver {comp.driver!r} is not running"
                elif id(spec) in checked:
                    continue
                else:
                    checked.add(id(spec))
                    try:
                        spec.check_task(
                            task.technique_name, task.task_params, task.sampling_interval
                        )
                        break
                    except ValueError as exc:
                        error = str(exc)
                if error not in errors:
                    errors.append(error)
            else:
                raise RpcError(f"{where}: {'; '.join(errors)}")
        try:
            bind_conditions(payload, self._units_of(pipelines))
        except ValueError as exc:
            raise RpcError(f"{source}: {exc}") from None

    def _units_of(self, pipelines: list[PipelineState]) -> UnitsOf:
        """What the drivers of each role's components say of a variable (its units)."""

        def units_of(role: str, variable: str) -> tuple[str | None] | None:
            for pip in pipelines:
                comp = pip.roles().get(role)
                spec = self.supervisor.spec_of(comp) if comp is not None else None
                found = spec.units_of(variable) if spec is not None else None
                if found is not None:
                    return found
            return None

        return units_of

    # queries
    def get(self, jobid: int) -> Job:
        job = self.store.job(int(jobid))
        if job is None:
            raise RpcError(f"job {jobid} does not exist")
        return job

    def select(self, jobids: list[int] | None) -> list[Job]:
        """The given jobs (all of them if none are given); RpcError for an unknown id."""
        if not jobids:
            return self.store.jobs()
        return [self.get(jobid) for jobid in jobids]

    def context(self, job: Job) -> JobContext:
        """What the job's flow run needs: the job, its pipeline's components, driver ports."""
        components: dict[str, RoleComponent] = {}
        pip = self.store.pipelines().get(job.pipeline) if job.pipeline else None
        for comp in pip.components if pip else []:
            comp = comp.model_copy(update={"capabilities": self.supervisor.capabilities_of(comp)})
            components[comp.role] = RoleComponent(
                component=comp, driver_port=self.supervisor.port_of(comp.driver)
            )
        return JobContext(
            jobid=job.id,
            daemon_port=self.port,
            daemon_host=self.host,
            job=job,
            components=components,
            flow_run_id=job.flow_run_id,
            grant=self.store.grant_of(job.id),
            in_engine=self.store.runs_in_engine(job.id),
            conditions=self._conditions(job, pip),
        )

    def _conditions(self, job: Job, pip: PipelineState | None) -> BoundConditions:
        """The job's conditions bound to its pipeline's drivers; a condition they no longer
        fit (a driver changed since the submit) is an error the job ends with at once."""
        if pip is None or not job.payload.has_conditions:
            return BoundConditions()
        try:
            return bind_conditions(job.payload, self._units_of([pip]))
        except ValueError as exc:
            return BoundConditions(error=f"on pipeline {pip.name}: {exc}")

    # changes asked for by users (CLI or Prefect)
    def cancel(self, jobids: list[int], cause: Cause, reason: str, end_as: str = "cd") -> list[Job]:
        """Cancel waiting jobs at once; ask live ones to stop (they end ``end_as``)."""
        changed = []
        with self.lock:
            for jobid in jobids:
                job = self.store.job(jobid)
                if job is None or job.status in FINAL_STATUSES:
                    continue
                if job.status in WAITING_STATUSES:
                    what = "failed" if end_as == "ce" else "cancelled"
                    moved = self.lifecycle.move(
                        job, end_as, cause, error=f"{what} while queued ({reason})"
                    )
                elif job.status == "rd":
                    continue
                else:
                    self._mail_cancel(job, end_as, reason)
                    moved = self.lifecycle.move(job, "rd", cause)
                if moved:
                    changed.append(job)
        return changed

    def pause(self, jobids: list[int], cause: Cause) -> list[Job]:
        """Pause running jobs: their steps stop on the hardware, data and pipeline kept."""
        return self._hold(jobids, cause, "r", "rp", pause=True)

    def resume(self, jobids: list[int], cause: Cause) -> list[Job]:
        """Resume paused jobs: each runs the rest of its interrupted step, then the next."""
        return self._hold(jobids, cause, "rp", "r", pause=False)

    def _hold(
        self, jobids: list[int], cause: Cause, source: str, target: str, pause: bool
    ) -> list[Job]:
        changed = []
        with self.lock:
            for jobid in jobids:
                job = self.store.job(jobid)
                if job is None or job.status != source or job.jobpath is None:
                    continue
                mailbox = Path(job.jobpath) / PAUSE_FILE
                try:
                    if pause:
                        mailbox.write_text(f"{cause.value}\n")
                    else:
                        mailbox.unlink(missing_ok=True)
                except OSError as exc:
                    raise RpcError(f"cannot signal job {job.id}: {exc}") from None
                if self.lifecycle.move(job, target, cause):  # type: ignore[arg-type]
                    changed.append(job)
        return changed

    def check_grant(self, jobid: int, flow_run_id: str, grant: str) -> Job:
        """A job's flow run asks whether the gate really granted it its pipeline."""
        job = self.get(jobid)
        if job.flow_run_id != flow_run_id:
            raise RpcError(f"flow run {flow_run_id} is not the flow run of job {jobid}")
        if job.status not in LIVE_STATUSES or job.pipeline is None:
            raise RpcError(f"job {jobid} is {job.status}, not started on a pipeline")
        if grant != self.store.grant_of(jobid):
            raise RpcError(f"job {jobid} was not started with this grant")
        return job

    @staticmethod
    def _mail_cancel(job: Job, end_as: str, reason: str) -> None:
        if job.jobpath is None:
            return
        try:
            write_cancel(Path(job.jobpath), end_as, reason)
        except OSError as exc:
            raise RpcError(f"cannot signal job {job.id} to stop: {exc}") from None

    # what a job's flow run reports
    def runner_report(self, jobid: int, status: str, error: str | None = None) -> Job:
        """The flow run runs (``r``: connected), or ended (``c``, ``ce``, ``cd``)."""
        with self.lock:
            job = self.get(jobid)
            if job.status in FINAL_STATUSES:
                return job
            if status == "r":
                if job.status in LIVE_STATUSES:
                    job.connected_at = now()
                    self.store.save_job(job)
                return job
            if status not in FINAL_STATUSES:
                raise RpcError(f"a flow run cannot report status {status!r}")
            # one transaction: the sync must never see the end without knowing that the
            # flow run's engine writes its final state (it would mark the run Crashed); a
            # job that runs outside the engine has its end written by the sync
            with self.lifecycle.transaction() as db:
                if not self.lifecycle.move(job, status, Cause.RUNNER, error=error, db=db):  # type: ignore[arg-type]
                    raise RpcError(f"job {jobid} is {job.status}; it cannot end as {status}")
                if self.store.runs_in_engine(job.id, db):
                    self.store.set_prefect_status(job.id, job.status, db=db)
            self.lifecycle.committed()
        return job


def checked_flow_run_id(value: object) -> str | None:
    """A flow run id as Prefect writes it (a UUID), or None; anything else is refused."""
    if value is None:
        return None
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise RpcError(
            f"parent_flow_run_id must be a flow run id (a UUID), not {value!r}"
        ) from None
