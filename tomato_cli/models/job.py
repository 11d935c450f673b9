"""A job: one submitted payload, from the queue to its end."""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel

from tomato_cli.models.payload import Payload

JobStatus = Literal["q", "qw", "r", "rd", "c", "ce", "cd"]
FINAL_STATUSES: Final = ("c", "ce", "cd")


class Job(BaseModel):
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
