"""Pipelines in Prefect: a work queue each, and a slot that the running job's flow run holds.

Each pipeline is a work queue of the host's work pool (concurrency limit 1, paused while the
pipeline is not ready, its description telling sample, ready and job), so the Work Pools
page shows every pipeline and its state. A flow run belongs to one work queue from its
creation and Prefect cannot move it, while a job's pipeline is chosen only when the gate
starts it; so the slot itself is a global concurrency limit ``pipeline:<name>`` (limit 1)
that the gate takes for the job's flow run with a lease (its holder is that flow run) and
keeps while the job runs or is paused. Prefect refuses a second holder.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

LEASE_S = 600.0  # renewed every RENEW_S; a lease outlives a daemon restart
RENEW_S = 120.0


def slot_name(pipeline: str) -> str:
    """The name of a pipeline's work queue (in its host's pool)."""
    return f"pipeline:{pipeline}"


@dataclass(frozen=True)
class PipelineView:
    """What Prefect shows of a pipeline."""

    sample: str | None
    ready: bool
    jobid: int | None

    def description(self) -> str:
        job = f"job {self.jobid}" if self.jobid is not None else "no job"
        ready = "ready" if self.ready else "not ready"
        return f"tomato pipeline: sample {self.sample or '(none)'}, {ready}, {job}"


class SlotTaken(RuntimeError):
    """Prefect refused the slot: another flow run holds it."""


class PipelineSlots:
    """Work queues, concurrency limits and leases of the daemon's pipelines in Prefect."""

    def __init__(self, pool: str, host: str | None = None) -> None:
        from prefect.client.orchestration import get_client

        self.pool = pool
        # concurrency limits are lab-wide: on a lab server, their names carry the host
        self.limit_prefix = f"pipeline:{host}:" if host else "pipeline:"
        self.client = get_client(sync_client=True)
        self.client.__enter__()
        self.lock = threading.Lock()  # the gate and the Prefect sync share this client
        self.shown: dict[str, PipelineView] | None = None  # as Prefect has them
        self.queue_ids: dict[str, Any] = {}

    def close(self) -> None:
        self.client.__exit__(None, None, None)

    def limit(self, pipeline: str) -> str:
        """The name of a pipeline's global concurrency limit (its slot)."""
        return f"{self.limit_prefix}{pipeline}"

    # the Work Pools page
    def show(self, pipelines: dict[str, PipelineView]) -> None:
        """Make the pipelines' work queues and limits match; sends only what changed."""
        with self.lock:
            if self.shown is None:
                self._read()
            assert self.shown is not None
            for name in [n for n in self.shown if n not in pipelines]:
                self._remove(name)
            for name, view in pipelines.items():
                if self.shown.get(name) != view:
                    self._put(name, view)

    def users_changes(self) -> dict[str, bool]:
        """Pipelines whose work queue a user paused or resumed in Prefect: ``{name: resumed}``.

        The daemon pauses a pipeline's queue while it is not ready and resumes it when it is
        ready; a queue whose pause differs from what the daemon set last is a user's change.
        """
        with self.lock:
            if self.shown is None:
                return {}
            changes: dict[str, bool] = {}
            for queue in self.client.read_work_queues(work_pool_name=self.pool):
                name = queue.name.removeprefix("pipeline:")
                view = self.shown.get(name)
                if queue.name.startswith("pipeline:") and view is not None and view.sample != "?":
                    if queue.is_paused == view.ready:
                        changes[name] = not queue.is_paused
            return changes

    def show_again(self, name: str) -> None:
        """Send the pipeline's queue again on the next :meth:`show` (a user's change undone)."""
        with self.lock:
            if self.shown is not None and name in self.shown:
                self.shown[name] = PipelineView("?", False, None)

    def poll(self) -> None:
        """Ask for the pool's scheduled runs as a worker would: Prefect then shows the
        pipelines' queues and the job deployment Ready (the daemon is their worker)."""
        with self.lock:
            names = ["default", *(slot_name(p) for p in self.shown or {})]
            self.client.get_scheduled_flow_runs_for_work_pool(self.pool, work_queue_names=names)

    def _read(self) -> None:
        self.shown = {}
        for queue in self.client.read_work_queues(work_pool_name=self.pool):
            if queue.name.startswith("pipeline:"):
                self.queue_ids[queue.name.removeprefix("pipeline:")] = queue.id
        # unknown views: every queue is sent once after a (re)connect
        self.shown = {name: PipelineView("?", False, None) for name in self.queue_ids}

    def _put(self, name: str, view: PipelineView) -> None:
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
        from prefect.exceptions import ObjectAlreadyExists

        assert self.shown is not None
        if name not in self.queue_ids:
            try:
                queue = self.client.create_work_queue(
                    slot_name(name),
                    description=view.description(),
                    is_paused=not view.ready,
                    concurrency_limit=1,
                    work_pool_name=self.pool,
                )
                self.queue_ids[name] = queue.id
            except ObjectAlreadyExists:
                queue = self.client.read_work_queue_by_name(slot_name(name), self.pool)
                self.queue_ids[name] = queue.id
            try:
                self.client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=self.limit(name), limit=1, active=True)
                )
            except ObjectAlreadyExists:
                pass
        if self.shown.get(name) != view:
            self.client.update_work_queue(
                self.queue_ids[name],
                description=view.description(),
                is_paused=not view.ready,
                concurrency_limit=1,
            )
        self.shown[name] = view

    def _remove(self, name: str) -> None:
        from prefect.exceptions import ObjectNotFound

        assert self.shown is not None
        queue_id = self.queue_ids.pop(name, None)
        try:
            if queue_id is not None:
                self.client.delete_work_queue_by_id(queue_id)
            self.client.delete_global_concurrency_limit_by_name(self.limit(name))
        except ObjectNotFound:
            pass
        del self.shown[name]

    # the slot a job's flow run holds
    def take(self, pipeline: str, flow_run_id: str) -> str:
        """Take the pipeline's slot for the flow run; returns the lease id.

        Raises :class:`SlotTaken` if Prefect refuses (another holder has it)."""
        from prefect.client.schemas.objects import ConcurrencyLeaseHolder
        from prefect.exceptions import PrefectHTTPStatusError

        holder = ConcurrencyLeaseHolder(type="flow_run", id=flow_run_id)
        with self.lock:
            try:
                response = self.client.increment_concurrency_slots_with_lease(
                    names=[self.limit(pipeline)],
                    slots=1,
                    mode="concurrency",
                    lease_duration=LEASE_S,
                    holder=holder,
                )
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code == 423:
                    raise SlotTaken(f"Prefect refuses: the slot of {pipeline!r} is held") from None
                raise
        return str(response.json()["lease_id"])

    def renew(self, lease_id: str) -> bool:
        """Renew a lease; False if Prefect no longer knows it (its server restarted)."""
        from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

        with self.lock:
            try:
                self.client.renew_concurrency_lease(lease_id, lease_duration=LEASE_S)
                return True
            except ObjectNotFound:
                return False
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code in (404, 410):
                    return False
                raise

    def give_back(self, lease_id: str) -> None:
        with self.lock:
            self.client.release_concurrency_slots_with_lease(lease_id)

    def clear(self, pipeline: str) -> None:
        """Zero a pipeline's slot count (leases lost with a restarted server)."""
        from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

        with self.lock:
            self.client.update_global_concurrency_limit(
                self.limit(pipeline), GlobalConcurrencyLimitUpdate(active_slots=0)
            )
