"""The gate: which queued job may run on which pipeline."""

from __future__ import annotations

from collections.abc import Callable

from tomato_cli.daemon.state import PipelineState
from tomato_cli.models import Component, Job


def can_serve(job: Job, pip: PipelineState, caps: Callable[[Component], list[str]]) -> bool:
    """The pipeline has every role the job uses, with every technique asked of that role."""
    roles = pip.roles()
    for role, techniques in job.payload.techniques_by_role().items():
        comp = roles.get(role)
        if comp is None or not techniques <= set(caps(comp)):
            return False
    return True


def sample_of(job: Job) -> str:
    return job.payload.sample.identifier


def is_free_for(job: Job, pip: PipelineState) -> bool:
    """Ready, holding the job's sample, and running nothing."""
    return pip.ready and pip.jobid is None and pip.sampleid == sample_of(job)


def plan(
    queued: list[Job],
    pipelines: dict[str, PipelineState],
    caps: Callable[[Component], list[str]],
) -> tuple[dict[int, str], list[tuple[int, str]]]:
    """New q/qw statuses, and (jobid, pipeline) assignments in submission order."""
    statuses: dict[int, str] = {}
    assignments: list[tuple[int, str]] = []
    taken: set[str] = set()
    # a component shared by pipelines serves one job at a time
    busy = {c.name for p in pipelines.values() if p.jobid is not None for c in p.components}
    for job in sorted(queued, key=lambda j: j.id):
        serving = [p for p in pipelines.values() if can_serve(job, p, caps)]
        statuses[job.id] = "qw" if serving else "q"
        for pip in serving:
            names = {c.name for c in pip.components}
            if pip.name not in taken and not names & busy and is_free_for(job, pip):
                assignments.append((job.id, pip.name))
                taken.add(pip.name)
                busy |= names
                break
    return statuses, assignments
