"""What `tomato status` says about the Prefect sync (no Prefect needed to tell)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

from tomato_cli.daemon.jobs import JobControl
from tomato_cli.daemon.lifecycle import JobLifecycle
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


class RecordingFlowRuns:
    """What a push asked of Prefect (the calls only; nothing is sent)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def set_status(
        self, frid: str, status: str, message=None, force: bool = False, held: bool = False
    ) -> str:
        self.calls.append(("set_status", status))
        return f"state-{len(self.calls)}"

    def tag(self, frid: str, job: Job) -> None:
        self.calls.append(("tag", job.status))


def test_a_pause_before_the_flow_run_started_waits_for_it(tmp_path: Path) -> None:
    """Paused between the gate's start and its engine's Running: a Paused state pushed now
    would be overwritten by that Running, and read as a resume from Prefect."""
    sync, store = _sync(tmp_path)
    job = _job(store)
    store.set_prefect_status(job.id, "q", "created")
    job.status, job.pipeline = "rp", "pip-1"
    store.save_job(job)
    flow_runs = RecordingFlowRuns()
    sync.pusher.push(flow_runs, job, "q")  # type: ignore[arg-type]
    assert flow_runs.calls == []
    assert [j.id for j, _ in store.jobs_unsynced()] == [job.id]  # still to do
    job.connected_at = now()  # its flow runs
    store.save_job(job)
    sync.pusher.push(flow_runs, job, "q")  # type: ignore[arg-type]
    assert flow_runs.calls == [("set_status", "rp")]
    assert store.own_state_ids()[job.id] == "state-1"


def test_a_waiting_state_is_not_pushed_once_the_job_started(tmp_path: Path) -> None:
    sync, store = _sync(tmp_path)
    job = _job(store)
    store.set_prefect_status(job.id, "q", "created")
    stale = job.model_copy(update={"status": "qw"})  # what this round read
    job.status = "r"  # the gate started it meanwhile
    store.save_job(job)
    flow_runs = RecordingFlowRuns()
    sync.pusher.push(flow_runs, stale, "q")  # type: ignore[arg-type]
    assert flow_runs.calls == []
    sync.pusher.push(flow_runs, job, "q")  # the next round
    assert flow_runs.calls == [("tag", "r")]
    assert store.own_state_ids()[job.id] == "created"  # its Running is its engine's


def test_a_flow_run_that_reported_its_end_is_never_one_to_mark_crashed(tmp_path: Path) -> None:
    """The sync, woken by the end, must already know that the run's engine writes its own
    final state: else it pushes Crashed over the Failed the engine is about to write."""
    store = StateStore(tmp_path / "tomato.db")
    lifecycle = JobLifecycle(store)
    control = JobControl(store, lifecycle, threading.RLock(), None, 0, lambda: tmp_path)  # type: ignore[arg-type]
    job = _job(store)
    job.status = "rd"  # a user set Failed in Prefect; the job is being stopped
    store.save_job(job)
    store.set_prefect_status(job.id, "rd", "state-failed")
    seen: list[list[int]] = []
    lifecycle.listen(lambda change: seen.append([j.id for j, _ in store.jobs_unsynced()]))
    control.runner_report(job.id, "ce", "Failed or Crashed set in Prefect (Failed)")
    assert seen == [[]]  # nothing for the sync to push when it is told
    assert store.job_status(job.id) == "ce"


def test_a_push_read_before_the_end_does_not_undo_it(tmp_path: Path) -> None:
    """A round read the job stopping (rd); its flow run reported the end (ce) while the
    round pushed rd: the stale push must not make the end look unpushed (the next round
    would mark the run Crashed over the Failed its engine wrote)."""
    sync, store = _sync(tmp_path)
    control = JobControl(store, JobLifecycle(store), threading.RLock(), None, 0, lambda: tmp_path)  # type: ignore[arg-type]
    job = _job(store)
    job.status, job.connected_at = "rd", now()
    store.save_job(job)
    store.set_prefect_status(job.id, "r")
    [(read, pushed)] = store.jobs_unsynced()  # the round reads it
    control.runner_report(job.id, "ce", "Failed or Crashed set in Prefect (Failed)")
    sync.pusher.push(RecordingFlowRuns(), read, pushed)  # type: ignore[arg-type]
    assert store.jobs_unsynced() == []


class StartingFlowRuns(RecordingFlowRuns):
    """Prefect answering a push while the gate starts the job (the race of a busy host)."""

    def __init__(self, store: StateStore, jobid: int) -> None:
        super().__init__()
        self.store, self.jobid = store, jobid

    def set_status(
        self, frid: str, status: str, message=None, force: bool = False, held: bool = False
    ) -> str:
        job = self.store.job(self.jobid)
        assert job is not None
        job.status = "r"
        self.store.save_job(job)
        return super().set_status(frid, status, message, force, held)


def test_a_waiting_state_pushed_while_the_job_starts_stays_tomatos_own(tmp_path: Path) -> None:
    """Else watching Prefect takes the Waiting state for a user's Pause of the running job."""
    sync, store = _sync(tmp_path)
    job = _job(store)
    store.set_prefect_status(job.id, "q", "created")
    job.status = "qw"
    store.save_job(job)
    sync.pusher.push(StartingFlowRuns(store, job.id), job, "q")  # type: ignore[arg-type]
    assert store.own_state_ids()[job.id] == "state-1"  # the Waiting state: tomato's
    assert [(j.id, pushed) for j, pushed in store.jobs_unsynced()] == [(job.id, "q")]  # r: next
