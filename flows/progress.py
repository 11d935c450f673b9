"""The job's progress bar and latest-values table in the Prefect UI.

Both are made once per job and then updated in place, so a week-long job costs Prefect
two artifacts, not a new version every half minute. Nothing here may stop a job: a
Prefect that is away only leaves the UI's view behind.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from typing import Any

from prefect.artifacts import (
    TableArtifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from flows.context import JobRun

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 5.0
LATEST_EVERY_S = 30.0


def latest_rows(run: JobRun) -> list[dict[str, Any]]:
    """One row per role and quantity: its latest value and the role's sample count."""
    return [
        {"role": role, "quantity": name, "value": value, "samples": run.samples.get(role, 0)}
        for role, values in sorted(run.latest.items())
        for name, value in values.items()
    ]


class Progress:
    """A job's progress artifact and latest-values table; made in the flow run's context."""

    def __init__(self, run: JobRun) -> None:
        self.run = run
        self.planned_s = run.job.payload.planned_duration()
        self.bar: Any = None
        self.table: Any = None
        try:
            self.bar = create_progress_artifact(0.0, description=f"tomato job {run.job.id}")
        except Exception as exc:
            log.warning("job %s: no progress artifact: %s", run.job.id, exc)

    def start(self) -> None:
        """Update both in the background, in this flow run's context (their owner)."""
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(self._loop,), daemon=True).start()

    def finish(self) -> None:
        try:
            if self.bar is not None:
                update_progress_artifact(self.bar, 100.0)
            self._table()
        except Exception as exc:
            log.warning("job %s: the UI's progress was not updated: %s", self.run.job.id, exc)

    def _loop(self) -> None:
        last_table = 0.0
        while not self.run.steps_done.wait(PROGRESS_EVERY_S):
            try:
                if self.bar is not None and self.planned_s > 0:
                    pct = min(99.0, 100.0 * self.run.active_s() / self.planned_s)
                    update_progress_artifact(self.bar, pct)
                if time.monotonic() - last_table >= LATEST_EVERY_S:
                    last_table = time.monotonic()
                    self._table()
            except Exception:  # Prefect away: the next round tries again
                pass

    def _table(self) -> None:
        rows = latest_rows(self.run)
        if not rows:
            return
        if self.table is None:
            self.table = create_table_artifact(
                rows, key=f"tomato-job-{self.run.job.id}-latest", description="latest values"
            )
            return
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import ArtifactUpdate

        data = TableArtifact(table=rows).format()
        with get_client(sync_client=True) as client:
            client.update_artifact(self.table, ArtifactUpdate(data=data))
