"""Feeds the pipelines overview in the Prefect UI from the daemon's state.

Called by the Prefect sync on each of its rounds, so only while Prefect answers; it
looks at the state at most every ``CHECK_S`` and the artifact decides whether anything
worth an update changed (see ``tomato_cli.orchestration.overview``).
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tomato_cli.models.job import LIVE_STATUSES
from tomato_cli.orchestration.overview import OverviewArtifact, PipelineRow, overview_key

if TYPE_CHECKING:
    from tomato_cli.daemon.prefect_sync import PrefectSync
    from tomato_cli.daemon.state import StateStore

log = logging.getLogger(__name__)

CHECK_S = 1.0


@dataclass(frozen=True)
class _JobTimes:
    launched: float | None
    planned: float
    flow_run_id: str | None


class OverviewFeed:
    """One daemon's overview: gathers its rows and offers them to the artifact."""

    def __init__(self, key: str):
        self.artifact = OverviewArtifact(key)
        self.times: dict[int, _JobTimes] = {}  # of running jobs, read once per job
        self.checked_at = 0.0

    def tick(self, sync: PrefectSync) -> None:
        if time.monotonic() - self.checked_at < CHECK_S or sync.flow_runs is None:
            return
        self.checked_at = time.monotonic()
        state = sync.store
        statuses = {ref.id: ref.status for ref in state.job_refs(LIVE_STATUSES)}
        rows = []
        now = time.time()
        for pip in state.pipelines().values():
            row = PipelineRow(pip.name, pip.sampleid, pip.ready, pip.jobid)
            if pip.jobid is not None:
                times = self._times(state, pip.jobid)
                progress = None
                if times is not None and times.launched is not None and times.planned > 0:
                    progress = min(1.0, max(0.0, (now - times.launched) / times.planned))
                row = PipelineRow(
                    pip.name,
                    pip.sampleid,
                    pip.ready,
                    pip.jobid,
                    statuses.get(pip.jobid),
                    progress,
                    times.flow_run_id if times is not None else None,
                )
            rows.append(row)
        for jobid in [j for j in self.times if j not in statuses]:
            del self.times[jobid]
        self.artifact.offer(sync.flow_runs.client, rows, sync.target.ui_url)

    def _times(self, state: StateStore, jobid: int) -> _JobTimes | None:
        if jobid not in self.times:
            job = state.job(jobid)
            if job is None:
                return None
            launched = job.launched_at.timestamp() if job.launched_at else None
            self.times[jobid] = _JobTimes(launched, job.payload.planned_duration(), job.flow_run_id)
        return self.times[jobid]


_FEEDS: weakref.WeakKeyDictionary[PrefectSync, OverviewFeed] = weakref.WeakKeyDictionary()


def publish_overview(sync: PrefectSync) -> None:
    """The Prefect sync's hook: keep the overview current; never disturbs the sync."""
    try:
        if sync.flow_runs is None:
            return
        feed = _FEEDS.get(sync)
        if feed is None:
            feed = _FEEDS[sync] = OverviewFeed(overview_key(sync.flow_runs.pool))
        feed.tick(sync)
    except Exception as exc:
        log.warning("pipelines overview not updated: %s", exc)
