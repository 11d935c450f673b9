"""The leases on pipelines' slots in Prefect, held by running jobs' flow runs.

The gate takes a pipeline's slot (through the Prefect sync) before a job starts; the job's
lease id is kept in the state store. Each round of the sync renews the leases of live jobs,
gives back those of ended ones (so does the gate, before it takes a slot), and after a
(re)connect retakes what a restarted server forgot (see
:mod:`tomato_cli.orchestration.pipeline_slots`). A job the gate started while Prefect was
away has no lease: its flow run takes the slot once it exists in Prefect.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from tomato_cli.daemon.state import StateStore
from tomato_cli.models import FINAL_STATUSES, LIVE_STATUSES

if TYPE_CHECKING:
    from tomato_cli.orchestration.pipeline_slots import PipelineSlots

log = logging.getLogger(__name__)


class SlotLeases:
    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._renewed: dict[str, float] = {}  # lease id -> when it was last renewed
        self._ended_lock = threading.Lock()  # the gate and the sync both give back

    def take(self, slots: PipelineSlots, pipeline: str, flow_run_id: str) -> str:
        """The pipeline's slot for the job's flow run (a lease id); raises if Prefect
        refuses (see :class:`~tomato_cli.orchestration.pipeline_slots.SlotTaken`).

        The slots of ended jobs are given back first: the job that just ended on this
        pipeline holds its slot until then, and waiting for the sync's next round to give
        it back would hold up every job that follows another on the same pipeline."""
        self.give_back_ended(slots)
        lease = slots.take(pipeline, flow_run_id)
        self._renewed[lease] = time.monotonic()
        return lease

    def give_back_ended(self, slots: PipelineSlots) -> None:
        """Give back the slots of ended jobs; one Prefect refuses now is tried again later
        (and expires on its own), without holding up the others."""
        with self._ended_lock:
            for jobid, lease in self.store.leases(FINAL_STATUSES).items():
                if self.give_back(slots, lease):
                    self.store.set_lease(jobid, None)

    def give_back(self, slots: PipelineSlots | None, lease_id: str) -> bool:
        """Give back one slot; False (logged) if Prefect did not take it (it expires on its
        own, or is tried again)."""
        self._renewed.pop(lease_id, None)
        try:
            if slots is not None:
                slots.give_back(lease_id)
                return True
        except Exception as exc:
            log.warning("could not give back lease %s: %s", lease_id, exc)
        return False

    def keep(self, slots: PipelineSlots, connecting: bool = False) -> None:
        """Renew the slots of live jobs, give back those of ended jobs, after a (re)connect
        retake what a restarted server forgot, and take those of jobs started while
        Prefect was away."""
        from tomato_cli.orchestration.pipeline_slots import RENEW_S

        self.give_back_ended(slots)
        now = time.monotonic()
        lost = []
        for jobid, lease in self.store.leases(LIVE_STATUSES).items():
            if connecting or now - self._renewed.get(lease, 0.0) > RENEW_S:
                if slots.renew(lease):
                    self._renewed[lease] = now
                else:
                    lost.append(jobid)
        for jobid in lost:
            self._take_for(slots, jobid, "Prefect lost the slot of {}; retaking it")
        for jobid in self.store.unleased(LIVE_STATUSES):
            why = "started while Prefect was away; taking the slot of {} now"
            self._take_for(slots, jobid, why, logging.INFO)

    def _take_for(
        self, slots: PipelineSlots, jobid: int, why: str, level: int = logging.WARNING
    ) -> None:
        """Take the slot of a live job's pipeline for its flow run. The daemon gave the job
        the pipeline: a holder Prefect still knows of is a lease it failed to give back."""
        from tomato_cli.orchestration.pipeline_slots import SlotTaken

        job = self.store.job(jobid)
        if job is None or job.pipeline is None or job.flow_run_id is None:
            return  # no flow run yet: the next round
        log.log(level, "job %s: %s", jobid, why.format(job.pipeline))
        try:
            lease = slots.take(job.pipeline, job.flow_run_id)
        except SlotTaken:
            slots.clear(job.pipeline)
            lease = slots.take(job.pipeline, job.flow_run_id)
        self._renewed[lease] = time.monotonic()
        self.store.set_lease(jobid, lease)
