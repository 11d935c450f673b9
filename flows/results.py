"""Writes a job's NetCDF file (final results or snapshot) from its append-only store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tomato_cli import __version__
from tomato_cli.models import Job
from tomato_cli.store import JobStore, write_results


def write_job_results(context: dict[str, Any], path: Path, job: Job | None = None) -> Path:
    """Write ``path`` from the store in the job folder; safe while the job still writes."""
    job = job or Job.model_validate(context["job"])
    components = {
        role: _component_json(entry["component"]) for role, entry in context["components"].items()
    }
    with JobStore(Path(job.jobpath), durable=False) as store:
        return write_results(path, store, job.model_dump_json(), components, __version__)


def _component_json(component: dict[str, Any]) -> str:
    from tomato_cli.models import Component

    return Component.model_validate(component).model_dump_json()
