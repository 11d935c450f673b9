"""A job: one submitted payload, from the queue to its end."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, field_serializer

from tomato_cli.models.payload import Payload

JobStatus = Literal["q", "qw", "r", "rp", "rd", "c", "ce", "cd"]
WAITING_STATUSES: Final[tuple[JobStatus, ...]] = ("q", "qw")
LIVE_STATUSES: Final[tuple[JobStatus, ...]] = ("r", "rp", "rd")  # a flow run is at work
FINAL_STATUSES: Final[tuple[JobStatus, ...]] = ("c", "ce", "cd")

# The job folder is the mailbox between the daemon and a running job, so that nothing is
# lost while either is away. The job looks for the daemon's files twice a second (a stat,
# where asking the daemon cost hundreds of RPCs a second with hundreds of jobs).
# the job's flow run leaves its final status here before it reports it
FINAL_FILE: Final = "final.json"
# the daemon asks the job to stop (with the status it is to end with and why)
CANCEL_FILE: Final = "cancel"
# the daemon asks the job to pause while this file exists
PAUSE_FILE: Final = "pause"
# the pid of the job's own process, written by the job runner as it forks it (and by the
# process itself): a daemon restarted before the runner told it finds the process here
PID_FILE: Final = "pid"
# the conditions (stop_when, end_when) met so far, written by the job's flow as they are met
CONDITIONS_FILE: Final = "conditions.json"


class Job(BaseModel):
    """A job as in the original's ``tomato_Job``, plus pipeline, flow run and error."""

    id: int
    payload: Payload
    jobname: str | None = None
    pid: int | None = None
    status: JobStatus
    submitted_at: datetime | None = None
    launched_at: datetime | None = None
    connected_at: datetime | None = None
    completed_at: datetime | None = None
    jobpath: str | None = None
    respath: str | None = None
    snappath: str | None = None
    pipeline: str | None = None
    flow_run_id: str | None = None
    error: str | None = None
    cratepath: str | None = None  # the RO-Crate zip, when the payload asks for one
    priority: int = 0  # the gate starts the highest first (new in tomato-prefect)
    held: bool = False  # a queued job kept from starting by `ketchup hold` (status stays q/qw)
    # the Prefect flow run that submitted the job (tomato_cli.client inside a flow): the
    # job's flow run is made its sub-run
    parent_flow_run_id: str | None = None

    @field_serializer(
        "submitted_at", "launched_at", "connected_at", "completed_at", when_used="json"
    )
    def _as_tomato_writes(self, value: datetime | None) -> str | None:
        """Timestamps as tomato 2.2 writes them ("2026-01-12 09:17:23.905153+00:00")."""
        return None if value is None else str(value)

    def ended(self, status: JobStatus, error: str | None, at: datetime | None = None) -> Job:
        """A copy of the job as it ends: final ``status``, ``error`` and ``completed_at``."""
        when = at or datetime.now(UTC)
        return self.model_copy(update={"status": status, "error": error, "completed_at": when})

    @property
    def is_final(self) -> bool:
        """Whether the job has ended (completed, failed or cancelled)."""
        return self.status in FINAL_STATUSES


def job_folder(storage: Path, jobid: int) -> Path:
    """The folder for job ``jobid`` in ``storage``: ``<jobid>``, or ``<jobid>.<n>`` where
    that is taken already (by a job of tomato 2.x sharing the folder: nothing of it is
    touched)."""
    folder = Path(storage) / str(jobid)
    n = 1
    while folder.exists() and any(folder.iterdir()):
        folder = Path(storage) / f"{jobid}.{n}"
        n += 1
    return folder


def write_final(jobdir: Path, status: str, error: str | None) -> None:
    """Leave the job's final status in its folder, whole or not at all (the daemon may
    read it at any moment)."""
    path = jobdir / FINAL_FILE
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({"status": status, "error": error}))
    os.replace(partial, path)


def write_cancel(jobdir: Path, end_as: str, reason: str) -> None:
    """Ask the job to stop and end as ``end_as`` (``cd``, or ``ce`` for a failure forced
    from Prefect); written whole by rename, like the final word."""
    jobdir.mkdir(parents=True, exist_ok=True)  # it may not have begun yet
    path = jobdir / CANCEL_FILE
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({"status": end_as, "reason": reason}))
    os.replace(partial, path)


def read_cancel(jobdir: Path) -> tuple[str, str] | None:
    """(end status, reason) if the daemon asked the job to stop, else None."""
    try:
        text = (jobdir / CANCEL_FILE).read_text()
    except OSError:
        return None
    try:
        data = json.loads(text)
        return str(data["status"]), str(data["reason"])
    except (ValueError, KeyError, TypeError):
        return "cd", text.strip() or "cancelled"  # a cancel file of an older version


def write_pid(jobdir: Path, pid: int) -> None:
    partial = jobdir / f"{PID_FILE}.{os.getpid()}.partial"  # the runner and the child both
    partial.write_text(str(pid))
    os.replace(partial, jobdir / PID_FILE)


def read_pid(jobdir: Path) -> int | None:
    """The pid of the job's own process, if it was forked."""
    try:
        return int((jobdir / PID_FILE).read_text())
    except (OSError, ValueError):
        return None


def read_final(jobdir: Path) -> dict[str, Any] | None:
    """The job's final word ({"status", "error"}), or None if it has not left one."""
    try:
        data = json.loads((jobdir / FINAL_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("status") in FINAL_STATUSES else None
