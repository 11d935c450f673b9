"""Taking lab jobs: the jobs submitted for the whole lab (see
:mod:`tomato_cli.orchestration.lab_queue`), on a host that uses a lab server.

A host takes a waiting lab job only when it can start it at once (a pipeline with its roles
and techniques is ready, holds its sample and runs nothing), so a lab job waits in the lab
queue, not on one host, and goes to whichever host is ready first. Prefect's own rules let
only one host's claim through. A job this host cannot take gets one log line on its run
saying why (once per reason), so a job nobody can run waits visibly.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from tomato_cli.daemon.state import StateStore
from tomato_cli.models import Job, Payload, PayloadError, parse_payload, parse_payload_text

if TYPE_CHECKING:
    from tomato_cli.orchestration.flow_runs import FlowRuns
    from tomato_cli.orchestration.lab_queue import LabQueue

log = logging.getLogger(__name__)


class ClaimHost(Protocol):
    """What taking lab jobs needs of the daemon."""

    host_name: str
    store: StateStore

    def startable(self, payload: Payload) -> str | None:
        """None if this host could start the payload now, else why not."""

    def submit_from_prefect(
        self, flow_run_id: str | None, parameters: dict[str, Any], retry_of: Job | None
    ) -> Job: ...

    def attach_flow_run(self, jobid: int, flow_run_id: str, state_id: str) -> None: ...


class LabClaims:
    def __init__(self, host: ClaimHost) -> None:
        self.host = host
        self.said: dict[str, str] = {}  # lab run -> the last reason logged on it
        self.refused: set[str] = set()  # lab runs this host took and could not make a job of

    def round(self, flow_runs: FlowRuns, lab: LabQueue) -> list[Job]:
        """Give back abandoned claims; take what this host can start now."""
        for run_id in lab.abandoned():
            lab.put_back(run_id, "the host that took it did not start it; waiting again")
            flow_runs.log(run_id, "tomato: a claim by a host that went away was given back")
        taken = []
        for run in lab.waiting():
            try:
                job = self._consider(flow_runs, lab, run)
            except Exception as exc:  # one bad lab job never holds up the others
                log.warning("lab job %s: %s: %s", run["id"], type(exc).__name__, exc)
                continue
            if job is not None:
                taken.append(job)
        return taken

    def _consider(self, flow_runs: FlowRuns, lab: LabQueue, run: dict[str, Any]) -> Job | None:
        run_id, params = run["id"], run["parameters"]
        if run_id in self.refused:
            return None
        pinned = params.get("host")
        if pinned and pinned != self.host.host_name:
            return None  # the pinned host says why it waits
        try:
            payload = _payload(params.get("payload"), run_id)
        except PayloadError as exc:
            flow_runs.refuse(run_id, f"tomato refused this lab job: {exc}")
            return None
        why = self.host.startable(payload)
        if why is not None:
            name = self.host.host_name
            self._say(flow_runs, run_id, f"tomato host {name} cannot start it: {why}")
            return None
        if not lab.claim(run_id):
            return None  # another host was first
        try:
            job = self.host.submit_from_prefect(run_id, {"payload": params.get("payload")}, None)
        except ValueError as exc:
            self.refused.add(run_id)
            lab.put_back(run_id, f"waiting again: host {self.host.host_name} refused it")
            flow_runs.log(run_id, f"tomato host {self.host.host_name} cannot run it: {exc}")
            return None
        job.flow_run_id = run_id
        state_id = flow_runs.adopt(run_id, job)
        self.host.attach_flow_run(job.id, run_id, state_id)
        flow_runs.log(run_id, f"tomato: host {self.host.host_name} took it as job {job.id}")
        log.info("lab job %s taken as job %s", run_id, job.id)
        self.said.pop(run_id, None)
        return job

    def _say(self, flow_runs: FlowRuns, run_id: str, message: str) -> None:
        if self.said.get(run_id) != message:
            self.said[run_id] = message
            flow_runs.log(run_id, message)


def _payload(value: Any, run_id: str) -> Payload:
    source = f"payload of lab job {run_id}"
    if value is None:
        raise PayloadError(f"{source}: no `payload` parameter was given")
    if isinstance(value, str):
        return parse_payload_text(value, source)
    return parse_payload(value, source)
