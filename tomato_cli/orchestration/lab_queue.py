"""The lab-wide queue on a lab server: jobs for the lab, not for one host.

A lab job is a run of the deployment ``tomato-job/lab`` (pool ``tomato-lab``), made by
``ketchup submit --lab`` or with Prefect's own tools. It waits Scheduled (Late, once its
time has passed: nobody has taken it yet) until one host claims it. A host claims a lab job
the way a Prefect worker claims a run: it proposes Pending, and Prefect's orchestration
rules accept the first such proposal and refuse every later one, so two hosts never both
take it. The host then makes the run its job's flow run (``job-<id>``, tagged with the host).
Lab-wide job ids: each host registers a number (a Prefect variable ``tomato_host_<n>``),
and numbers its jobs ``k * 100 + n``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from tomato_cli.names import CLAIMED, ENTRYPOINT, FLOW_NAME, HOST_TAG, LAB_DEPLOYMENT, LAB_POOL
from tomato_cli.orchestration.flow_runs import parameter_schema

log = logging.getLogger(__name__)

MAX_HOSTS = 99  # job ids are k * 100 + host number
ABANDONED_S = 60.0  # a claim that did not become a job within this is given up

PARAMETERS = parameter_schema(
    "The first tomato host with a ready pipeline that holds its sample takes it.",
    host={
        "title": "host",
        "description": "Only this tomato host may take the job (its [daemon] name).",
        "type": "string",
    },
)


class HostNumberTaken(RuntimeError):
    """Another host registered the number this host has stored."""


class LabQueue:
    """Calls on the lab-wide queue, with the client of the host's :class:`FlowRuns`."""

    def __init__(self, client: Any, host: str, port: int) -> None:
        self.client = client
        self.host = host
        self.label = f"{host}:{port}"
        self.deployment_id: Any = None

    def ensure(self) -> None:
        """The lab's pool and deployment exist (any host makes them)."""
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.exceptions import ObjectAlreadyExists

        import flows

        try:
            self.client.create_work_pool(
                WorkPoolCreate(
                    name=LAB_POOL,
                    type="process",
                    description="tomato jobs for the whole lab: the first host that can run "
                    "one takes it",
                )
            )
        except ObjectAlreadyExists:
            pass
        from pathlib import Path

        flow_id = self.client.create_flow_from_name(FLOW_NAME)
        self.deployment_id = self.client.create_deployment(
            flow_id=flow_id,
            name=LAB_DEPLOYMENT,
            work_pool_name=LAB_POOL,
            entrypoint=ENTRYPOINT,
            path=str(Path(flows.__file__).resolve().parent.parent),
            description="A tomato job for the lab: run it with a `payload` (and a `host` to pin "
            "it); the first tomato host with a ready pipeline that holds its sample takes it.",
            parameter_openapi_schema=PARAMETERS,
            tags=["tomato"],
        )

    def register(self, number: int | None) -> int:
        """This host's lab number: the stored one (checked), or the first free one."""
        from prefect.client.schemas.actions import VariableCreate
        from prefect.exceptions import ObjectAlreadyExists

        if number is not None:
            found = self.client.read_variable_by_name(f"tomato_host_{number}")
            if found is None:
                self.client.create_variable(
                    VariableCreate(name=f"tomato_host_{number}", value=self.label)
                )
            elif found.value != self.label:
                raise HostNumberTaken(
                    f"lab host number {number} is registered to {found.value}, not {self.label}"
                )
            return number
        for candidate in range(1, MAX_HOSTS + 1):
            try:
                self.client.create_variable(
                    VariableCreate(name=f"tomato_host_{candidate}", value=self.label)
                )
                return candidate
            except ObjectAlreadyExists:
                found = self.client.read_variable_by_name(f"tomato_host_{candidate}")
                if found is not None and found.value == self.label:
                    return candidate
        raise HostNumberTaken(f"all {MAX_HOSTS} lab host numbers are taken")

    def waiting(self) -> list[dict[str, Any]]:
        """Lab jobs no host has taken yet, oldest first."""
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterId,
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import FlowRunSort

        runs = self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            ),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[self.deployment_id])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=50,
        )
        return [
            {"id": str(r.id), "name": r.name, "parameters": dict(r.parameters or {})}
            for r in runs
            if not any(t.startswith(HOST_TAG) for t in r.tags)
        ]

    def claim(self, flow_run_id: str) -> bool:
        """Take a lab job: True if Prefect accepted this host's Pending, False if another
        host (or a worker) moved it first."""
        from prefect.client.schemas.responses import SetStateStatus
        from prefect.states import Pending

        state = Pending(name=CLAIMED, message=f"taken by tomato host {self.label}")
        result = self.client.set_flow_run_state(flow_run_id, state, force=False)
        return result.status == SetStateStatus.ACCEPT

    def abandoned(self) -> list[str]:
        """Lab jobs claimed (Pending, Claimed) more than ``ABANDONED_S`` ago that no host
        made its job: the claiming host died in between."""
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterId,
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateName,
        )

        runs = self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(name=FlowRunFilterStateName(any_=[CLAIMED]))
            ),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[self.deployment_id])),
            limit=50,
        )
        old = datetime.now(UTC) - timedelta(seconds=ABANDONED_S)
        return [
            str(r.id)
            for r in runs
            if r.state is not None
            and r.state.type.value == "PENDING"
            and r.state.timestamp < old
            and not any(t.startswith(HOST_TAG) for t in r.tags)
        ]

    def put_back(self, flow_run_id: str, why: str) -> None:
        from prefect.states import Scheduled

        self.client.set_flow_run_state(flow_run_id, Scheduled(message=why), force=True)
