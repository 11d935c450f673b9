"""The daemon's jobs in Prefect: the work pool and deployment, and each job's flow run.

Imports Prefect lazily, so that the daemon answers before Prefect is loaded or healthy.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tomato_cli.names import ENTRYPOINT, FLOW_NAME, HOST_TAG
from tomato_cli.orchestration.states import PREFECT_STATE, prefect_state
from tomato_cli.prefect_internals import send_worker_heartbeat

if TYPE_CHECKING:
    from uuid import UUID

    from tomato_cli.models import Job

log = logging.getLogger(__name__)

WORKER_HEARTBEAT_S = 30.0
CHUNK = 200  # flow run ids per filter request
# states a job's flow run is in while a flow run is at work for it: tomato looks there for
# runs made in Prefect (a Run of the deployment, a Retry) that are not jobs yet
ACTIVE_TYPES = ("SCHEDULED", "PENDING", "RUNNING")


def parameter_schema(payload_note: str, **more: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI schema of a tomato deployment's parameters, which the UI's Run form shows."""
    payload = {
        "title": "payload",
        "description": "A tomato payload (any version from 0.1 to 2.2): a mapping, or its "
        f"YAML text. {payload_note}",
        "anyOf": [{"type": "object"}, {"type": "string"}],
    }
    return {"title": "Parameters", "type": "object", "properties": {"payload": payload, **more}}


PARAMETERS = parameter_schema(
    "Runs made in Prefect become tomato jobs and wait for a matching, ready pipeline like "
    "jobs from `ketchup submit`.",
    jobid={"title": "jobid", "description": "Set by tomato; leave it empty.", "type": "integer"},
    priority={
        "title": "priority",
        "description": "The job's priority (0 or more; higher starts first). Overrides the "
        "payload's `settings: priority`.",
        "type": "integer",
        "minimum": 0,
    },
)


def work_pool_name(port: int, embedded: bool, host_name: str | None = None) -> str:
    """The daemon's work pool: ``tomato`` on its own server, host and port on a shared one.

    ``host_name`` is the daemon's ``[daemon] name`` (default: the machine's host name).
    """
    return "tomato" if embedded else f"tomato-{host_name or socket.gethostname()}-{port}"


def deployment_name(port: int, embedded: bool, host_name: str | None = None) -> str:
    return "tomato" if embedded else f"{host_name or socket.gethostname()}-{port}"


def job_parameters(job: Job) -> dict[str, Any]:
    return {"jobid": job.id, "payload": job.payload.model_dump(mode="json", exclude_none=True)}


def job_tags(job: Job, host: str | None = None) -> list[str]:
    """``tomato``, ``sample:<id>``, ``priority:<n>``, ``held`` (a held queued job),
    ``pipeline:<name>`` and, on a lab server, ``host:<name>``."""
    tags = ["tomato", f"sample:{job.payload.sample.identifier}", f"priority:{job.priority}"]
    if job.held and job.status in ("q", "qw"):
        tags.append("held")
    if job.pipeline:
        tags.append(f"pipeline:{job.pipeline}")
    return tags + [f"{HOST_TAG}{host}"] if host else tags


def _stands_for_a_job() -> None:
    """The function of the task that stands for a job in its parent flow run (never run)."""


class FlowRuns:
    """Calls on the job deployment and the jobs' flow runs (the daemon's DB is the truth)."""

    def __init__(self, port: int, embedded: bool, host_name: str | None = None, instance: str = ""):
        from prefect.client.orchestration import get_client

        self.port = port
        # on a lab server, every job's flow run says which host runs it
        self.host = None if embedded else host_name or socket.gethostname()
        self.pool = work_pool_name(port, embedded, host_name)
        self.deployment = deployment_name(port, embedded, host_name)
        self.client = get_client(sync_client=True)
        self.client.__enter__()
        self.deployment_id: Any = None
        self.instance = instance  # of the daemon's database: in every job run's key

    def close(self) -> None:
        self.client.__exit__(None, None, None)

    def info(self) -> dict[str, Any]:
        return {"work_pool": self.pool, "deployment": f"{FLOW_NAME}/{self.deployment}"}

    # the pool and the deployment
    def ensure_deployment(self) -> None:
        """Create (or update) the host's work pool and the job deployment."""
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.exceptions import ObjectAlreadyExists

        import flows

        try:
            self.client.create_work_pool(
                WorkPoolCreate(
                    name=self.pool,
                    type="process",
                    description="tomato daemon on this host: one work queue per pipeline",
                )
            )
        except ObjectAlreadyExists:
            pass
        flow_id = self.client.create_flow_from_name(FLOW_NAME)
        self.deployment_id = self.client.create_deployment(
            flow_id=flow_id,
            name=self.deployment,
            work_pool_name=self.pool,
            entrypoint=ENTRYPOINT,
            path=str(Path(flows.__file__).resolve().parent.parent),
            description="One tomato job per flow run. Run it with a `payload` to submit a job "
            "(as `ketchup submit` does); the tomato daemon starts it once a pipeline that "
            "holds its sample is ready. A Prefect worker never runs these jobs itself.",
            parameter_openapi_schema=PARAMETERS,
            tags=["tomato"],
        )
        self.heartbeat()

    def heartbeat(self) -> None:
        """Mark the work pool as served, so the UI shows it Ready."""
        send_worker_heartbeat(
            self.client, self.pool, f"tomato-daemon-{self.port}", WORKER_HEARTBEAT_S
        )

    def highest_jobid(self) -> int:
        """The highest job id of this host's flow runs on the server (0 if none)."""
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
        from prefect.client.schemas.sorting import FlowRunSort

        if self.host is None:
            return 0
        runs = self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"{HOST_TAG}{self.host}"])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=20,
        )
        ids = [r.parameters.get("jobid") for r in runs]
        return max((i for i in ids if isinstance(i, int)), default=0)

    # a job's flow run
    def create(self, job: Job) -> tuple[str, str]:
        """The job's flow run, waiting (PAUSED Queued), named ``job-<id>``: its id and the
        id of that first state. A job submitted from a flow run (``parent_flow_run_id``)
        gets a sub-run of it, when this server holds that flow run."""
        from prefect.client.schemas.objects import State, StateType

        key = f"{self.pool}-{self.instance}-job-{job.id}"
        parent_task_run_id = self._wrapper_task_run(job, key) if job.parent_flow_run_id else None
        stype, sname = PREFECT_STATE["q"]
        flow_run = self.client.create_flow_run_from_deployment(
            self.deployment_id,
            parameters=job_parameters(job),
            state=State(type=StateType(stype), name=sname),
            name=f"job-{job.id}",
            tags=job_tags(job, self.host),
            idempotency_key=key,
            parent_task_run_id=parent_task_run_id,
        )
        if job.parent_flow_run_id and parent_task_run_id is None:
            self.log(
                str(flow_run.id),
                f"tomato: job {job.id} was submitted from flow run {job.parent_flow_run_id}, "
                "which this Prefect server does not hold, so it is not linked to it",
                logging.WARNING,
            )
        return str(flow_run.id), str(flow_run.state.id) if flow_run.state else ""

    def _wrapper_task_run(self, job: Job, key: str) -> UUID | None:
        """A task run in the job's parent flow run that stands for the job (as Prefect's
        ``run_deployment`` makes one), or None if this server has no such flow run.

        The job's flow run is created with it as its parent task run, so the UI shows the
        job under the parent's graph and the parent on the job's page; Prefect's server then
        copies each state of the job's flow run onto it. ``key`` makes it once per job.
        """
        from prefect.exceptions import ObjectNotFound
        from prefect.states import Pending
        from prefect.tasks import Task

        wrapper = Task(name=f"{FLOW_NAME}/{self.deployment}", fn=_stands_for_a_job)
        wrapper.task_key = f"{FLOW_NAME}.{self.deployment}"
        # a 404 must not reach the sync: it would take it for the job's flow run deleted
        try:
            parent = self.client.read_flow_run(job.parent_flow_run_id)
            task_run = self.client.create_task_run(
                task=wrapper,
                flow_run_id=parent.id,
                dynamic_key=key,
                name=f"job-{job.id}",
                extra_tags=["tomato"],
                state=Pending(),
            )
        except ObjectNotFound:
            return None
        return task_run.id

    def adopt(self, flow_run_id: str, job: Job) -> str:
        """A run made in Prefect becomes the flow run of ``job``: renamed, given the job's
        parameters and tags, and put in the queue. Returns the id of its new state."""
        self.client.update_flow_run(
            flow_run_id,
            name=f"job-{job.id}",
            parameters=job_parameters(job),
            tags=job_tags(job, self.host),
        )
        return self.set_status(flow_run_id, job.status, f"tomato job {job.id}", force=True)

    def tag(self, flow_run_id: str, job: Job) -> None:
        """Show the job's pipeline, priority and hold on its flow run (tags, see
        :func:`job_tags`)."""
        self.client.update_flow_run(flow_run_id, tags=job_tags(job, self.host))

    def set_status(
        self,
        flow_run_id: str,
        status: str,
        message: str | None = None,
        force: bool = False,
        held: bool = False,
    ) -> str:
        """Set the state that stands for a tomato status; returns the new state's id.

        Waiting and paused states are forced (a PAUSED state may only be left through
        Prefect's resume otherwise); others go through Prefect's rules unless ``force``,
        so that a state the flow run wrote itself in the meantime is not overwritten. A held
        queued job's state is named Held.
        """
        from prefect.client.schemas.objects import State, StateType

        stype, sname = prefect_state(status, held)
        result = self.client.set_flow_run_state(
            flow_run_id,
            State(type=StateType(stype), name=sname, message=message),
            force=force or status in ("q", "qw", "rp"),
        )
        return str(result.state.id) if result.state is not None else ""

    def mark_crashed(self, flow_run_id: str, message: str) -> str:
        from prefect.states import Crashed

        result = self.client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)
        return str(result.state.id) if result.state is not None else ""

    def refuse(self, flow_run_id: str, message: str) -> None:
        """A run made in Prefect that cannot become a job ends Failed, saying why."""
        from prefect.states import Failed

        self.log(flow_run_id, message, logging.ERROR)
        self.client.set_flow_run_state(flow_run_id, Failed(message=message), force=True)

    def log(self, flow_run_id: str, message: str, level: int = logging.INFO) -> None:
        """A line in the flow run's log, from tomato."""
        from datetime import UTC, datetime

        from prefect.client.schemas.actions import LogCreate

        self.client.create_logs(
            [
                LogCreate(
                    name="tomato",
                    level=level,
                    message=message,
                    timestamp=datetime.now(UTC),
                    flow_run_id=flow_run_id,
                )
            ]
        )

    def emit(self, events: list[dict[str, Any]]) -> None:
        """Send events to Prefect's event feed (see :mod:`tomato_cli.orchestration.events`)."""
        self.client.request("POST", "/events", json=events)

    # automations (periodic snapshots)
    def create_automation(self, spec: dict[str, Any]) -> str:
        response = self.client.request("POST", "/automations/", json=spec)
        return str(response.json()["id"])

    def delete_automation(self, automation_id: str) -> None:
        from prefect.exceptions import PrefectHTTPStatusError

        try:
            self.client.request("DELETE", "/automations/{id}", path_params={"id": automation_id})
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 404:
                raise

    def automations(self, prefix: str) -> list[tuple[str, str]]:
        """(id, name) of the automations whose name starts with ``prefix`` (all of them: a
        lab server holds every host's, and the users' own)."""
        found: list[tuple[str, str]] = []
        offset, page = 0, 200
        while True:
            body = {"limit": page, "offset": offset}
            batch = self.client.request("POST", "/automations/filter", json=body).json()
            found += [(str(a["id"]), a["name"]) for a in batch if a["name"].startswith(prefix)]
            if len(batch) < page:
                return found
            offset += page

    # what users did in Prefect
    def unexpected(
        self, expected: dict[tuple[str, ...], list[str]]
    ) -> dict[str, tuple[str, str, str]]:
        """``{flow run id: (state type, state name, state id)}`` of the runs whose state is
        none of the types expected for them (``{expected types: [flow run ids]}``).

        The server does the filtering, so with hundreds of jobs the usual answer is empty.
        """
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterId,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        out: dict[str, tuple[str, str, str]] = {}
        for types, ids in expected.items():
            unlike = FlowRunFilterStateType(not_any_=[StateType(t) for t in types])
            for i in range(0, len(ids), CHUNK):
                chunk = ids[i : i + CHUNK]
                runs = self.client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        id=FlowRunFilterId(any_=chunk), state=FlowRunFilterState(type=unlike)
                    ),
                    limit=len(chunk),
                )
                for run in runs:
                    if run.state is not None:
                        state = run.state
                        out[str(run.id)] = (state.type.value, state.name or "", str(state.id))
        return out

    def missing(self, flow_run_ids: list[str]) -> set[str]:
        """The ids among ``flow_run_ids`` whose flow run no longer exists (deleted)."""
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        gone: set[str] = set()
        for i in range(0, len(flow_run_ids), CHUNK):
            chunk = flow_run_ids[i : i + CHUNK]
            id_filter = FlowRunFilter(id=FlowRunFilterId(any_=chunk))
            if self.client.count_flow_runs(flow_run_filter=id_filter) == len(chunk):
                continue  # the usual case: one cheap count
            runs = self.client.read_flow_runs(flow_run_filter=id_filter, limit=len(chunk))
            gone |= set(chunk) - {str(r.id) for r in runs}
        return gone

    def new_runs(self, known: list[str]) -> list[dict[str, Any]]:
        """Runs of the job deployment that are at work but are not a live job's flow run:
        made in Prefect (Run, Retry), or taken by a worker. Each as
        ``{"id", "name", "parameters", "state_type", "state_name", "state_time"}``."""
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterId,
            FlowRunFilter,
            FlowRunFilterId,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        runs = self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(not_any_=known) if known else None,
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType(t) for t in ACTIVE_TYPES])
                ),
            ),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[self.deployment_id])),
            limit=CHUNK,
        )
        return [
            {
                "id": str(run.id),
                "name": run.name,
                "parameters": dict(run.parameters or {}),
                "state_type": run.state.type.value if run.state else "",
                "state_name": (run.state.name or "") if run.state else "",
                "state_time": run.state.timestamp if run.state else None,
            }
            for run in runs
        ]
