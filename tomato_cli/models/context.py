"""What the daemon hands a job's flow run: the job, its components and where their drivers are."""

from __future__ import annotations

from pydantic import BaseModel

from tomato_cli.models.component import Component
from tomato_cli.models.job import Job
from tomato_cli.models.payload import BoundConditions
from tomato_cli.rpc import LOOPBACK


class RoleComponent(BaseModel):
    """The component that fills one role of the job's pipeline, and its driver host's port."""

    component: Component
    driver_port: int | None = None


class JobContext(BaseModel):
    """Everything a job's flow run needs, built by the daemon when the gate starts the job.

    ``grant`` is the daemon's proof that it gave this launch the job's pipeline: a flow run
    started any other way has none, and must not touch an instrument. ``in_engine`` is
    False for a job started while Prefect was away: it runs without Prefect's flow engine,
    and the daemon mirrors it into Prefect.
    """

    jobid: int
    daemon_port: int
    daemon_host: str = LOOPBACK
    job: Job
    components: dict[str, RoleComponent]  # by role
    flow_run_id: str | None = None
    grant: str | None = None
    in_engine: bool = True
    conditions: BoundConditions = BoundConditions()  # bound to this pipeline's drivers

    def component(self, role: str) -> Component:
        return self.components[role].component

    def component_json(self) -> dict[str, str]:
        """Each role's ``tomato_Component`` as JSON, for result files."""
        return {role: entry.component.model_dump_json() for role, entry in self.components.items()}
