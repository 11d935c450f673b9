"""tomato's events in Prefect's event feed, and the automations that make periodic snapshots.

Each job is a resource ``tomato.job.<host name>.<port>.<id>`` with its flow run and its pipeline
as related resources, so that its events show on the flow run's page and users can build
automations on them (``tomato.job.*``). Event names:

| event | when |
|---|---|
| `tomato.job.submitted` | a job entered the queue |
| `tomato.job.started` | the gate started it on a pipeline |
| `tomato.job.paused`, `tomato.job.resumed` | pause and resume |
| `tomato.job.cancelling` | it was asked to stop |
| `tomato.job.completed`, `tomato.job.failed`, `tomato.job.cancelled` | it ended as c, ce, cd |
| `tomato.job.snapshot` | a periodic snapshot was written |
| `tomato.step.condition_met` | a `stop_when` condition ended a step (step, variable, value) |
| `tomato.job.condition_met` | an `end_when` condition ended the job (variable, value, condition) |
| `tomato.pipeline.changed` | its work queue was paused (not ready) or resumed (ready) in Prefect |
| `tomato.pipeline.refused` | such a change tomato undid (a resume with no sample loaded), and why |
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tomato_cli.models import Job

# the event for a job reaching each status
STATUS_EVENTS = {
    "q": "tomato.job.submitted",
    "r": "tomato.job.started",
    "rp": "tomato.job.paused",
    "rd": "tomato.job.cancelling",
    "c": "tomato.job.completed",
    "ce": "tomato.job.failed",
    "cd": "tomato.job.cancelled",
}
RESUMED = "tomato.job.resumed"
SNAPSHOT = "tomato.job.snapshot"
STEP_CONDITION_MET = "tomato.step.condition_met"
JOB_CONDITION_MET = "tomato.job.condition_met"
AUTOMATION_PREFIX = "tomato snapshots"
MIN_AUTOMATION_INTERVAL_S = 10.0  # Prefect's shortest proactive window


@dataclass(frozen=True)
class Origin:
    """The daemon events come from: its host's name (``[daemon] name``) and its port."""

    name: str
    port: int

    @property
    def ident(self) -> str:
        return f"{self.name}.{self.port}"


def job_resource(origin: Origin, jobid: int) -> str:
    return f"tomato.job.{origin.ident}.{jobid}"


def job_event(name: str, job: Job, origin: Origin, **payload: Any) -> dict[str, Any]:
    """An event about ``job`` as Prefect's ``POST /events`` takes it."""
    related = []
    if job.flow_run_id:
        related.append(
            {
                "prefect.resource.id": f"prefect.flow-run.{job.flow_run_id}",
                "prefect.resource.role": "flow-run",
                "prefect.resource.name": f"job-{job.id}",
            }
        )
    if job.pipeline:
        related.append(
            {
                "prefect.resource.id": f"tomato.pipeline.{origin.ident}.{job.pipeline}",
                "prefect.resource.role": "pipeline",
                "prefect.resource.name": job.pipeline,
            }
        )
    return {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": name,
        "resource": {
            "prefect.resource.id": job_resource(origin, job.id),
            "prefect.resource.name": f"job-{job.id}",
            "tomato.job.id": str(job.id),
            "tomato.job.status": job.status,
            "tomato.host": origin.name,
        },
        "related": related,
        "payload": {"status": job.status, "sample": job.payload.sample.identifier, **payload},
    }


PIPELINE_REFUSED = "tomato.pipeline.refused"  # a change to a pipeline's work queue, undone
PIPELINE_CHANGED = "tomato.pipeline.changed"  # made ready or not ready from Prefect


def pipeline_event(name: str, pipeline: str, origin: Origin, **payload: Any) -> dict[str, Any]:
    """An event about a pipeline (``tomato.pipeline.<host>.<port>.<name>``)."""
    return {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": name,
        "resource": {
            "prefect.resource.id": f"tomato.pipeline.{origin.ident}.{pipeline}",
            "prefect.resource.name": pipeline,
            "tomato.host": origin.name,
        },
        "payload": payload,
    }


def snapshot_automation(job: Job, origin: Origin, interval: float) -> dict[str, Any]:
    """A proactive automation that fires when a running job has had no snapshot for
    ``interval`` seconds (its start or its last snapshot re-arms it)."""
    return {
        "name": f"{AUTOMATION_PREFIX} of job {job.id} ({origin.ident})",
        "description": f"Every {interval:g} s while tomato job {job.id} runs, the tomato daemon "
        "writes a snapshot of its data. Made when the job starts, removed when it ends.",
        "enabled": True,
        "trigger": {
            "type": "event",
            "posture": "Proactive",
            "match": {"prefect.resource.id": job_resource(origin, job.id)},
            "after": [STATUS_EVENTS["r"], RESUMED, SNAPSHOT],
            "expect": [SNAPSHOT],
            "for_each": ["prefect.resource.id"],
            "threshold": 1,
            "within": interval,
        },
        "actions": [{"type": "do-nothing"}],
    }
