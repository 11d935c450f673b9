"""The pipelines overview in the Prefect UI: one markdown artifact with a fixed key.

It lists every pipeline with its sample, ready flag, running job and that job's
progress. The artifact is made once and then updated in place (``PATCH``), so no history
of versions piles up. Bursts are coalesced: a change of sample, ready flag or job is
shown within ``COALESCE_S`` (many jobs starting at once make one update), progress
alone at most every ``PROGRESS_EVERY_S``.

Prefect is called with plain requests: the client's artifact helpers also emit events,
which would open an events connection from the daemon for nothing.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

COALESCE_S = 2.0
PROGRESS_EVERY_S = 15.0
BAR_CELLS = 10


@dataclass(frozen=True)
class PipelineRow:
    """One pipeline as the overview shows it."""

    name: str
    sampleid: str | None
    ready: bool
    jobid: int | None = None
    status: str | None = None  # of the job
    progress: float | None = None  # of the job, 0 to 1, by its planned duration
    flow_run_id: str | None = None


def overview_key(work_pool: str) -> str:
    """The artifact key of a daemon's overview (artifact keys allow a-z, 0-9 and '-')."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{work_pool}-pipelines".lower()).strip("-")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _bar(progress: float) -> str:
    filled = round(max(0.0, min(1.0, progress)) * BAR_CELLS)
    return f"{'▰' * filled}{'▱' * (BAR_CELLS - filled)} {100 * progress:.0f} %"


def overview_markdown(rows: list[PipelineRow], ui_url: str, updated: str) -> str:
    """The overview as a markdown table; jobs link to their flow run pages."""
    running = sum(1 for r in rows if r.jobid is not None)
    lines = [
        f"**{len(rows)} pipelines, {running} running a job** (updated {updated})",
        "",
        "| pipeline | sample | ready | job | status | progress |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        job = ""
        if row.jobid is not None:
            job = f"job {row.jobid}"
            if row.flow_run_id:
                job = f"[{job}]({ui_url}/runs/flow-run/{row.flow_run_id})"
        progress = _bar(row.progress) if row.progress is not None else ""
        cells = [
            _cell(row.name),
            _cell(row.sampleid or ""),
            "yes" if row.ready else "no",
            job,
            row.status or "",
            progress,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _shape(rows: list[PipelineRow]) -> list[tuple[object, ...]]:
    """The rows without progress: what makes an update urgent."""
    return [(r.name, r.sampleid, r.ready, r.jobid, r.status, r.flow_run_id) for r in rows]


def _shown(rows: list[PipelineRow]) -> list[tuple[object, ...]]:
    """The rows as drawn (progress in whole percent), to tell whether anything shows."""
    return [
        (r.name, r.sampleid, r.ready, r.jobid, r.status, r.flow_run_id)
        + (None if r.progress is None else round(100 * r.progress),)
        for r in rows
    ]


def update_due(
    shown: list[PipelineRow] | None, rows: list[PipelineRow], since_update: float
) -> bool:
    """Whether to update an overview that shows ``shown`` (None: none yet) with ``rows``,
    ``since_update`` seconds after its last update."""
    if shown is None:
        return True
    if _shown(rows) == _shown(shown):
        return False
    if _shape(rows) != _shape(shown):
        return since_update >= COALESCE_S
    return since_update >= PROGRESS_EVERY_S


class OverviewArtifact:
    """The one overview artifact of a daemon, kept current in place."""

    def __init__(self, key: str):
        self.key = key
        self.artifact_id: str | None = None
        self.shown: list[PipelineRow] | None = None
        self.updated_at = 0.0

    def offer(self, client: Any, rows: list[PipelineRow], ui_url: str) -> bool:
        """Update the artifact if :func:`update_due`; returns whether it did."""
        if not update_due(self.shown, rows, time.monotonic() - self.updated_at):
            return False
        markdown = overview_markdown(rows, ui_url, time.strftime("%Y-%m-%d %H:%M:%S"))
        self._write(client, markdown)
        self.shown, self.updated_at = rows, time.monotonic()
        return True

    def _write(self, client: Any, markdown: str) -> None:
        from prefect.exceptions import PrefectHTTPStatusError

        description = "tomato: every pipeline, its sample and its job"
        if self.artifact_id is None:
            self.artifact_id = self._latest_id(client)
        if self.artifact_id is not None:
            try:
                client.request(
                    "PATCH",
                    "/artifacts/{id}",
                    json={"data": markdown, "description": description},
                    path_params={"id": self.artifact_id},
                )
                return
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code != 404:
                    raise
                self.artifact_id = None  # deleted in the UI, or a new server database
        body = {"key": self.key, "type": "markdown", "data": markdown, "description": description}
        self.artifact_id = str(client.request("POST", "/artifacts/", json=body).json()["id"])

    def _latest_id(self, client: Any) -> str | None:
        """The id of the artifact under our key from before (a daemon restart)."""
        found = client.request(
            "POST",
            "/artifacts/latest/filter",
            json={"artifacts": {"key": {"any_": [self.key]}}, "limit": 1},
        ).json()
        return str(found[0]["latest_id"]) if found else None
