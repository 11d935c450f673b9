"""Which runs of an ended job's flow run are a user's Retry (no Prefect needed to tell)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_daemon_sync_status import _job
from tomato_cli.daemon.prefect_watch import ENGINE_END_GRACE_S, PrefectWatch
from tomato_cli.daemon.state import StateStore, now
from tomato_cli.models import Job


class Host:
    """The daemon as watching Prefect sees it; records what it is asked to submit."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.submitted: list[int | None] = []

    def submit_from_prefect(self, flow_run_id: Any, parameters: Any, retry_of: Job | None) -> Job:
        self.submitted.append(retry_of.id if retry_of else None)
        return _job(self.store)


class FlowRuns:
    def __init__(self) -> None:
        self.set: list[tuple[str, bool]] = []

    def set_status(self, frid: str, status: str, message: Any = None, force: bool = False) -> str:
        self.set.append((status, force))
        return "state-put-back"

    def log(self, frid: Any, message: str, level: int = 0) -> None:
        pass


@pytest.mark.parametrize(
    ("state_type", "since_end_s", "is_retry"),
    [
        ("RUNNING", -1.0, False),  # its engine is writing the end the job reported
        ("PENDING", -1.0, False),  # a state from before the end is the job's own
        ("SCHEDULED", 5.0, True),  # the UI's Retry: AwaitingRetry
        ("PENDING", 5.0, True),  # a worker is taking the Retry
        ("RUNNING", 5.0, True),  # a worker took the Retry and runs it
    ],
)
def test_an_ended_jobs_run_is_a_retry_only_once_it_was_moved_after_the_end(
    tmp_path: Path, state_type: str, since_end_s: float, is_retry: bool
) -> None:
    store = StateStore(tmp_path / "tomato.db")
    host = Host(store)
    job = _job(store)
    job.status, job.completed_at = "c", now()
    store.save_job(job)
    store.set_prefect_status(job.id, "c")  # the runner reported; its engine writes the end
    run = {
        "id": job.flow_run_id,
        "name": f"job-{job.id}",
        "parameters": {"jobid": job.id, "payload": {}},
        "state_type": state_type,
        "state_name": "",
        "state_time": job.completed_at + timedelta(seconds=since_end_s),
    }
    flow_runs = FlowRuns()
    PrefectWatch(host)._new_run(flow_runs, run, unsynced=set())  # type: ignore[arg-type]
    assert host.submitted == ([job.id] if is_retry else [])
    assert flow_runs.set == ([("c", True)] if is_retry else [])  # a Retry's run keeps the end


def test_an_end_its_engine_never_wrote_is_written_by_tomato(tmp_path: Path) -> None:
    """The runner reported the end, then died before its engine wrote it: the run would
    stay Running in Prefect; after a grace period, tomato writes the job's end."""
    store = StateStore(tmp_path / "tomato.db")
    host = Host(store)
    job = _job(store)
    job.status, job.error = "ce", "the job's process died"
    job.completed_at = now() - timedelta(seconds=ENGINE_END_GRACE_S + 5)
    store.save_job(job)
    store.set_prefect_status(job.id, "ce")
    run = {
        "id": job.flow_run_id,
        "parameters": {"jobid": job.id},
        "state_type": "RUNNING",
        "state_time": job.completed_at - timedelta(seconds=10),
    }
    flow_runs = FlowRuns()
    PrefectWatch(host)._new_run(flow_runs, run, unsynced=set())  # type: ignore[arg-type]
    assert host.submitted == [] and flow_runs.set == [("ce", True)]
