"""One tomato job's flow run on a lab server, as the terminal shows it.

A lab job is found by its flow run id or by its job id (lab-wide: ``k * 100 + host number``,
and its flow run is named ``job-<id>`` once a host took it). Until a host takes it, it waits
in the lab queue (Scheduled, Late, or Pending ``Claimed`` for the moment of taking) and its
status is ``q``; afterwards its state is the one the host's daemon writes for the job.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from tomato_cli.names import HOST_TAG
from tomato_cli.orchestration.states import tomato_status

_JOB_ID = re.compile(r"^[0-9]{1,12}$")


class LabJobNotFound(LookupError):
    """No tomato job's flow run on the lab server answers to the reference (says why)."""


def find_lab_run(client: Any, ref: str) -> Any:
    """The flow run of the lab job ``ref`` (a flow run id or a job id), read with ``client``."""
    from prefect.exceptions import ObjectNotFound

    ref = ref.strip()
    if _JOB_ID.match(ref):
        return _by_job_id(client, int(ref))
    try:
        run_id = uuid.UUID(ref)
    except ValueError:
        shown = ref if len(ref) <= 60 else ref[:57] + "..."
        raise LabJobNotFound(
            f"{shown!r} is neither a flow run id (a UUID) nor a job id (a number)"
        ) from None
    try:
        run = client.read_flow_run(run_id)
    except ObjectNotFound:
        raise LabJobNotFound(f"the lab server has no flow run {run_id}") from None
    if "tomato" not in (run.tags or []):
        raise LabJobNotFound(f"flow run {run_id} ({run.name}) is not a tomato job")
    return run


def _by_job_id(client: Any, jobid: int) -> Any:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, FlowRunFilterTags

    runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(any_=[f"job-{jobid}"]),
            tags=FlowRunFilterTags(all_=["tomato"]),
        ),
        limit=5,
    )
    if not runs:
        raise LabJobNotFound(
            f"the lab server has no job {jobid} (a job gets its id when a host takes it)"
        )
    if len(runs) > 1:
        ids = ", ".join(str(r.id) for r in runs)
        raise LabJobNotFound(f"job {jobid} names {len(runs)} flow runs; give one of them: {ids}")
    return runs[0]


def lab_run_view(run: Any) -> dict[str, Any]:
    """What ``ketchup status --lab`` shows of a job's flow run (also its ``-y`` mapping)."""
    tags = list(run.tags or [])
    params = dict(run.parameters or {})

    def tagged(prefix: str) -> str | None:
        return next((t[len(prefix) :] for t in tags if t.startswith(prefix)), None)

    host = tagged(HOST_TAG)
    state = run.state
    stype = state.type.value if state is not None else "SCHEDULED"
    sname = state.name if state is not None else "Scheduled"
    status = tomato_status(stype, sname) if host or stype not in ("SCHEDULED", "PENDING") else "q"
    payload = params.get("payload") if isinstance(params.get("payload"), dict) else {}
    sample = tagged("sample:") or (payload.get("sample") or {}).get("identifier")
    priority = tagged("priority:")
    return {
        "flow_run_id": str(run.id),
        "name": run.name,
        "jobid": params.get("jobid") if host else None,
        "host": host,
        "pinned": params.get("host"),
        "status": status or "q",
        "state": sname,
        "message": state.message if state is not None else None,
        "pipeline": tagged("pipeline:"),
        "sample": sample,
        "priority": int(priority) if priority and priority.isdigit() else None,
    }
