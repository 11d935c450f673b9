"""The daemon's view of Prefect: the job deployment, flow runs and pipeline slots.

Imports Prefect lazily, so that the daemon answers before Prefect is loaded or healthy.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

from tomato_cli.orchestration.states import PREFECT_STATE
from tomato_cli.prefect_internals import send_worker_heartbeat

log = logging.getLogger(__name__)

FLOW_NAME = "tomato-job"
WORKER_HEARTBEAT_S = 30.0


def work_pool_name(port: int, embedded: bool, host_name: str | None = None) -> str:
    """The daemon's work pool: ``tomato`` on its own server, host and port on a shared one.

    ``host_name`` is the daemon's ``[daemon] name`` (default: the machine's host name).
    """
    return "tomato" if embedded else f"tomato-{host_name or socket.gethostname()}-{port}"


def deployment_name(port: int, embedded: bool, host_name: str | None = None) -> str:
    return "tomato" if embedded else f"{host_name or socket.gethostname()}-{port}"


def pipeline_limit_name(pipeline: str) -> str:
    return f"pipeline:{pipeline}"


class FlowRuns:
    """The daemon's jobs and pipelines in Prefect: the deployment, job flow runs, slots."""

    def __init__(self, port: int, embedded: bool, host_name: str | None = None):
        from prefect.client.orchestration import get_client

        self.port = port
        self.pool = work_pool_name(port, embedded, host_name)
        self.deployment = deployment_name(port, embedded, host_name)
        self.client = get_client(sync_client=True)
        self.client.__enter__()
        self.deployment_id = None
        self.slots: dict[str, bool] | None = None  # pipeline -> busy, as Prefect has it

    def close(self) -> None:
        self.client.__exit__(None, None, None)

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
                    description="tomato daemon on this host: its pipelines run these jobs",
                )
            )
        except ObjectAlreadyExists:
            pass
        flow_id = self.client.create_flow_from_name(FLOW_NAME)
        self.deployment_id = self.client.create_deployment(
            flow_id=flow_id,
            name=self.deployment,
            work_pool_name=self.pool,
            entrypoint="flows/job.py:tomato_job",
            path=str(Path(flows.__file__).resolve().parent.parent),
            description="One tomato job: created by `ketchup submit`, started by the tomato "
            "daemon once a matching pipeline is ready.",
            parameter_openapi_schema={
                "title": "Parameters",
                "type": "object",
                "properties": {"jobid": {"title": "jobid", "type": "integer"}},
                "required": ["jobid"],
            },
            tags=["tomato"],
        )
        self.heartbeat()

    def heartbeat(self) -> None:
        """Mark the work pool as served, so the UI shows it ready."""
        send_worker_heartbeat(
            self.client, self.pool, f"tomato-daemon-{self.port}", WORKER_HEARTBEAT_S
        )

    def sync_pipeline_slots(self, pipelines: dict[str, bool]) -> None:
        """One global concurrency limit (limit 1) per pipeline, its slot taken while busy.

        Reads Prefect's limits once, then only sends what changed: cheap with many
        pipelines, where every job start and end calls this.
        """
        from prefect.client.schemas.actions import (
            GlobalConcurrencyLimitCreate,
            GlobalConcurrencyLimitUpdate,
        )

        if self.slots is None:
            self.slots = {}
            offset = 0
            while page := self.client.read_global_concurrency_limits(limit=200, offset=offset):
                offset += len(page)
                for limit in page:
                    if limit.name.startswith("pipeline:"):
                        self.slots[limit.name.removeprefix("pipeline:")] = limit.active_slots > 0
        for name in [n for n in self.slots if n not in pipelines]:
            self.remove_pipeline_slot(name)
            del self.slots[name]
        for name, busy in pipelines.items():
            if name not in self.slots:
                self.client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(
                        name=pipeline_limit_name(name), limit=1, active=True, active_slots=0
                    )
                )
                self.slots[name] = False
            if self.slots[name] != busy:
                self.client.update_global_concurrency_limit(
                    pipeline_limit_name(name),
                    GlobalConcurrencyLimitUpdate(active_slots=int(busy)),
                )
                self.slots[name] = busy

    def remove_pipeline_slot(self, pipeline: str) -> None:
        from prefect.exceptions import ObjectNotFound

        try:
            self.client.delete_global_concurrency_limit_by_name(pipeline_limit_name(pipeline))
        except ObjectNotFound:
            pass

    def create(self, jobid: int, status: str, sample: str) -> str:
        from prefect.client.schemas.objects import State, StateType

        stype, sname = PREFECT_STATE[status]
        flow_run = self.client.create_flow_run_from_deployment(
            self.deployment_id,
            parameters={"jobid": jobid},
            state=State(type=StateType(stype), name=sname),
            name=f"job-{jobid}",
            tags=["tomato", f"sample:{sample}"],
            idempotency_key=f"{self.pool}-job-{jobid}",
        )
        return str(flow_run.id)

    def set_status(self, flow_run_id: str, status: str, message: str | None = None) -> None:
        """Set the Prefect state that stands for a tomato status (daemon-side changes only).

        Queue states are forced (PAUSED to PAUSED); others go through Prefect's rules, so
        that a state the flow run wrote itself in the meantime is never overwritten.
        """
        from prefect.client.schemas.objects import State, StateType

        stype, sname = PREFECT_STATE[status]
        self.client.set_flow_run_state(
            flow_run_id,
            State(type=StateType(stype), name=sname, message=message),
            force=status in ("q", "qw"),
        )

    def mark_crashed(self, flow_run_id: str, message: str) -> None:
        from prefect.states import Crashed

        self.client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)

    def changed_elsewhere(
        self, running: list[str], waiting: list[str]
    ) -> dict[str, tuple[str, str]]:
        """(state type, state name) of the flow runs whose state someone else changed.

        That is running jobs asked to cancel and waiting jobs no longer PAUSED (resumed
        or rescheduled in the UI). The server does the filtering, so with hundreds of
        jobs the usual answer is short and cheap.
        """
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterId,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        cancel = FlowRunFilterStateType(any_=[StateType.CANCELLING, StateType.CANCELLED])
        not_paused = FlowRunFilterStateType(not_any_=[StateType.PAUSED])
        out: dict[str, tuple[str, str]] = {}
        for ids, wanted in ((running, cancel), (waiting, not_paused)):
            for i in range(0, len(ids), 200):
                chunk = ids[i : i + 200]
                runs = self.client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        id=FlowRunFilterId(any_=chunk), state=FlowRunFilterState(type=wanted)
                    ),
                    limit=len(chunk),
                )
                for run in runs:
                    if run.state is not None:
                        out[str(run.id)] = (run.state.type.value, run.state.name or "")
        return out

    def info(self) -> dict[str, Any]:
        return {"work_pool": self.pool, "deployment": f"{FLOW_NAME}/{self.deployment}"}
