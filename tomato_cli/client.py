"""A Python API to the local tomato daemon, for scripts and a user's own Prefect flows.

    from tomato_cli.client import submit

    job = submit("payload.yml")          # a JobHandle; the job is queued
    job.wait()                           # "c", "ce" or "cd"
    tree = job.results()                 # the results file as an xarray DataTree

Inside a Prefect flow run, :func:`submit` names that flow run to the daemon, which makes
the job's flow run its sub-run (see docs/architecture.md, "Jobs submitted from a flow
run"). It speaks the same RPC as ``ketchup`` and finds the daemon the same way: port 1234
unless given, the host from ``[daemon] host`` of the settings file in the appdir. Every
refusal is a :class:`TomatoError` whose message is the line ``ketchup`` would print.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tomato_cli.address import DEFAULT_PORT, settings_host
from tomato_cli.models import FINAL_STATUSES, Job, JobStatus, Payload, PayloadError
from tomato_cli.paths import SETTINGS_FILE, default_dirs
from tomato_cli.rpc import LOOPBACK, Unreachable, call

if TYPE_CHECKING:
    import xarray

log = logging.getLogger(__name__)

PayloadSource = dict[str, Any] | Payload | str | os.PathLike[str]


class TomatoError(Exception):
    """The daemon refused, or could not be asked; the message is one line."""


class DaemonUnreachable(TomatoError):
    """No tomato daemon answers where it was looked for."""


class SubmitError(TomatoError):
    """The payload was refused (its format, or the daemon's checks); nothing was queued."""


class WaitTimeout(TomatoError, TimeoutError):
    """The job had not ended when :meth:`JobHandle.wait` gave up; it goes on."""


@dataclass(frozen=True)
class Daemon:
    """Where a tomato daemon listens; ``timeout``: seconds to wait for each answer."""

    port: int = DEFAULT_PORT
    host: str = LOOPBACK
    timeout: float = 30.0

    @property
    def where(self) -> str:
        """How messages name the daemon, as the CLIs do."""
        return f"port {self.port}" if self.host == LOOPBACK else f"{self.host}:{self.port}"

    def ask(self, cmd: str, **args: Any) -> Any:
        """Send one command; its ``data``, or :class:`TomatoError` with the daemon's reason."""
        try:
            reply = call(self.port, cmd, timeout=self.timeout, host=self.host, **args)
        except Unreachable:
            raise DaemonUnreachable(
                f"no tomato daemon answers on {self.where}; start it with `tomato start`"
            ) from None
        if not reply.success:
            raise TomatoError(reply.msg)
        return reply.data

    def submit(
        self,
        payload: PayloadSource,
        *,
        jobname: str | None = None,
        priority: int | None = None,
        parent_flow_run_id: str | None = None,
        link: bool = True,
    ) -> JobHandle:
        """Queue a payload (a mapping, a :class:`Payload`, or a payload file) as a new job.

        It is checked as ``ketchup submit`` checks it; a refusal raises :class:`SubmitError`
        with the same message, and nothing is queued. ``priority`` overrides the payload's
        ``settings: priority``. The job's flow run becomes a sub-run of
        ``parent_flow_run_id``, else (with ``link``) of the Prefect flow run this is called
        in, if any.
        """
        parsed, source = _parse(payload)
        if priority is not None:
            if isinstance(priority, bool) or not isinstance(priority, int) or priority < 0:
                raise SubmitError(f"priority must be 0 or more, not {priority!r}")
            parsed.settings.priority = priority
        parent = parent_flow_run_id or (current_flow_run_id() if link else None)
        args: dict[str, Any] = {"jobname": jobname} if jobname is not None else {}
        if parent is not None:
            args["parent_flow_run_id"] = parent
        try:
            job = self.ask(
                "job_submit",
                payload=parsed.model_dump(mode="json"),
                cwd=os.getcwd(),
                source=source,
                **args,
            )
        except DaemonUnreachable:
            raise
        except TomatoError as exc:
            raise SubmitError(str(exc)) from None
        return JobHandle(int(job["id"]), self)

    def job(self, jobid: int) -> JobHandle:
        """A handle on a job submitted earlier (by any means); checks that it exists."""
        handle = JobHandle(jobid, self)
        handle.job()
        return handle


def connect(
    port: int | None = None,
    appdir: str | os.PathLike[str] | None = None,
    host: str | None = None,
    timeout: float = 30.0,
) -> Daemon:
    """The daemon as ``ketchup --port PORT --appdir APPDIR [--host HOST]`` finds it."""
    if host is None:
        folder = Path(appdir) if appdir is not None else default_dirs()[0]
        host = settings_host(folder.expanduser().resolve() / SETTINGS_FILE)
    return Daemon(port=DEFAULT_PORT if port is None else port, host=host, timeout=timeout)


def submit(
    payload: PayloadSource,
    *,
    jobname: str | None = None,
    priority: int | None = None,
    parent_flow_run_id: str | None = None,
    link: bool = True,
    port: int | None = None,
    appdir: str | os.PathLike[str] | None = None,
    host: str | None = None,
) -> JobHandle:
    """:meth:`Daemon.submit` on the daemon that :func:`connect` finds."""
    return connect(port, appdir, host).submit(
        payload,
        jobname=jobname,
        priority=priority,
        parent_flow_run_id=parent_flow_run_id,
        link=link,
    )


@dataclass(frozen=True)
class JobHandle:
    """One job of a daemon: its status, its end, its results; cancel it."""

    jobid: int
    daemon: Daemon

    def job(self) -> Job:
        """The job's record as the daemon has it now."""
        jobs = self.daemon.ask("job_status", jobids=[self.jobid])
        return Job.model_validate(jobs[0])

    def status(self) -> JobStatus:
        """``q``, ``qw``, ``r``, ``rp``, ``rd``, ``c``, ``ce`` or ``cd``."""
        return self.job().status

    def wait(self, timeout: float | None = None, poll: float = 0.5) -> JobStatus:
        """Wait until the job ends; its final status (``c``, ``ce`` or ``cd``).

        Raises :class:`WaitTimeout` after ``timeout`` seconds (None: no limit); the job
        goes on. While the daemon does not answer (restarted, say), it keeps asking.
        """
        if poll <= 0:
            raise ValueError(f"poll must be more than 0 s, not {poll!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        status: JobStatus | None = None
        away = False
        while True:
            try:
                status = self.status()
                away = False
            except DaemonUnreachable as exc:
                if not away:
                    log.warning("job %s: %s; still waiting", self.jobid, exc)
                away = True
            if status is not None and status in FINAL_STATUSES:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {self.jobid} had not ended after {timeout} s ({status})")
            pause = poll if deadline is None else min(poll, max(deadline - time.monotonic(), 0))
            time.sleep(pause)

    def results(self) -> xarray.DataTree:
        """The ended job's results file, read into memory (one group per role).

        The file is where the job's ``respath`` says, or in its job folder if that could not
        be written (the job's error says so). The daemon must share this machine's files.
        """
        import xarray

        job = self.job()
        if not job.is_final:
            raise TomatoError(
                f"job {self.jobid} has not ended (status {job.status}); wait() for it first"
            )
        if job.respath is None:
            raise TomatoError(f"job {self.jobid} has no results path")
        candidates = [Path(job.respath)]
        if job.jobpath is not None:
            candidates.append(Path(job.jobpath) / candidates[0].name)
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            looked = " or ".join(str(p) for p in candidates)
            raise TomatoError(
                f"job {self.jobid} ended {job.status} without a results file ({looked})"
            )
        with xarray.open_datatree(path) as tree:
            return tree.load()

    def cancel(self) -> None:
        """Cancel the job: a queued one ends ``cd`` at once; a running one stops (``rd``),
        keeps its data and writes its results. A job that has ended is refused."""
        self.daemon.ask("job_cancel", jobids=[self.jobid])


def current_flow_run_id() -> str | None:
    """The id of the Prefect flow run this is called in (from a task: the task's flow
    run), or None. Prefect is not imported for this: a flow run has imported it."""
    if "prefect.context" not in sys.modules:
        return None
    from prefect.context import FlowRunContext, TaskRunContext

    flow_ctx = FlowRunContext.get()
    if flow_ctx is not None and flow_ctx.flow_run is not None:
        return str(flow_ctx.flow_run.id)
    task_ctx = TaskRunContext.get()
    if task_ctx is not None and task_ctx.task_run.flow_run_id is not None:
        return str(task_ctx.task_run.flow_run_id)
    return None


def _parse(payload: PayloadSource) -> tuple[Payload, str]:
    """The payload as a 2.2 :class:`Payload`, and how messages name it (as ``ketchup``)."""
    from tomato_cli.models import load_payload, parse_payload

    try:
        if isinstance(payload, Payload):
            return payload.model_copy(deep=True), "payload"
        if isinstance(payload, dict):
            return parse_payload(payload, "payload"), "payload"
        if isinstance(payload, str | os.PathLike):
            return load_payload(Path(payload)), str(payload)
    except PayloadError as exc:
        raise SubmitError(str(exc)) from None
    raise SubmitError(
        f"a payload is a mapping, a Payload or a file name, not a {type(payload).__name__}"
    )
