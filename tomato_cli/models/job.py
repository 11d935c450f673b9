"""A job: one submitted payload, from the queue to its end."""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel

from tomato_cli.models.payload import Payload

JobStatus = Literal["q", "qw", "r", "rd", "c", "ce", "cd"]
FINAL_STATUSES: Final[tuple[JobStatus, ...]] = ("c", "ce", "cd")
# a job's flow run leaves its final status here, in the job folder, before it reports it
FINAL_FILE: Final = "final.json"


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
