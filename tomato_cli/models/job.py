"""A job: one submitted payload, from the queue to its end."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel

from tomato_cli.models.payload import Payload

JobStatus = Literal["q", "qw", "r", "rd", "c", "ce", "cd"]
FINAL_STATUSES: Final[tuple[JobStatus, ...]] = ("c", "ce", "cd")
# a job's flow run leaves its final status here, in the job folder, before it reports it
FINAL_FILE: Final = "final.json"
# written into a running job's folder by the daemon when the job is to be cancelled: the
# job looks for it twice a second (a stat, where asking the daemon cost hundreds of RPCs a
# second with hundreds of jobs), and it survives a daemon restart
CANCEL_FILE: Final = "cancel"


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

    @property
    def is_final(self) -> bool:
        """Whether the job has ended (completed, failed or cancelled)."""
        return self.status in FINAL_STATUSES


def write_final(jobdir: Path, status: str, error: str | None) -> None:
    """Leave the job's final status in its folder, whole or not at all (the daemon may
    read it at any moment)."""
    path = jobdir / FINAL_FILE
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({"status": status, "error": error}))
    os.replace(partial, path)


def read_final(jobdir: Path) -> dict[str, Any] | None:
    """The job's final word ({"status", "error"}), or None if it has not left one."""
    try:
        data = json.loads((jobdir / FINAL_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("status") in FINAL_STATUSES else None
