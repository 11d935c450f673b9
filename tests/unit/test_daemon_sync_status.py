"""What `tomato status` says about the Prefect sync (no Prefect needed to tell)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from tomato_cli.daemon.prefect_sync import PrefectSync
from tomato_cli.daemon.state import StateStore, now
from tomato_cli.models import Job, parse_payload
from tomato_cli.orchestration.server import PrefectTarget


def _sync(tmp_path: Path) -> tuple[PrefectSync, StateStore]:
    store = StateStore(tmp_path / "tomato.db")
    target = PrefectTarget("http://127.0.0.1:1/api", embedded=False)
    return PrefectSync(SimpleNamespace(store=store), target, None, 1234), store  # type: ignore[arg-type]


def _job(store: StateStore) -> Job:
    payload = parse_payload(
        {
            "sample": {"identifier": "s"},
            "method": [
                {
                    "component_role": "counter",
                    "technique_name": "count",
                    "max_duration": 1,
                    "sampling_interval": 0.1,
                }
            ],
        }
    )
    with store.transaction() as db:
        jobid = store.new_job_id(db)
    job = Job(id=jobid, payload=payload, status="q", submitted_at=now(), flow_run_id="f")
    store.save_job(job)
    return job


def test_starting_healthy_lagging_failing(tmp_path: Path) -> None:
    sync, store = _sync(tmp_path)
    assert sync.public()["sync"] == {"state": "starting", "lagging": 0, "error": None}
    sync.healthy = True
    assert sync.public()["sync"]["state"] == "healthy"
    job = _job(store)  # not yet in Prefect
    assert sync.public()["sync"] == {"state": "lagging", "lagging": 1, "error": None}
    store.set_prefect_status(job.id, "q")
    assert sync.public()["sync"]["state"] == "healthy"
    sync.error = "job 1: PrefectHTTPStatusError: 409"
    assert sync.public()["sync"] == {
        "state": "failing",
        "lagging": 0,
        "error": "job 1: PrefectHTTPStatusError: 409",
    }
    sync.healthy, sync.error = False, "Prefect server does not answer"
    assert sync.public()["sync"]["state"] == "failing"
