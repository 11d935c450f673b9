"""Jobs started while Prefect is away: the gate starts them without Prefect, and the sync
makes their flow runs, states and slots once Prefect answers (no Prefect needed here)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

from tests.unit.test_daemon_sync_status import RecordingFlowRuns, _sync
from tomato_cli.daemon.gate import Gate
from tomato_cli.daemon.jobs import JobControl
from tomato_cli.daemon.lifecycle import JobLifecycle
from tomato_cli.daemon.slot_leases import SlotLeases
from tomato_cli.daemon.state import PipelineState, StateStore, now
from tomato_cli.models import Component, Job, parse_payload


def _queued(store: StateStore, flow_run_id: str | None = None) -> Job:
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
    job = Job(id=jobid, payload=payload, status="q", submitted_at=now(), flow_run_id=flow_run_id)
    store.save_job(job)
    return job


class Slots:
    """The Prefect sync as the gate sees it: answering or not, and the slots it took."""

    def __init__(self, healthy: bool) -> None:
        self.healthy = healthy
        self.taken: list[tuple[str, str]] = []

    def take_slot(self, pipeline: str, flow_run_id: str) -> str:
        self.taken.append((pipeline, flow_run_id))
        return f"lease-{flow_run_id}"

    def give_back_slot(self, lease_id: str) -> None:
        raise AssertionError("nothing to give back")


def _gate(store: StateStore, slots: Slots, launched: list[int]) -> Gate:
    comp = Component.make("example_counter", "dev", "addr", "1", "counter")
    store.save_pipeline(PipelineState("pip-1", [comp], sampleid="s", ready=True))

    def launch(job: Job) -> int:
        launched.append(job.id)
        return 4242

    caps = lambda comp: ["count"]  # noqa: E731
    return Gate(store, JobLifecycle(store), threading.RLock(), caps, slots, launch)


def test_the_gate_starts_a_job_while_prefect_is_away(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "tomato.db")
    slots, launched = Slots(healthy=False), []
    job = _queued(store)  # no flow run: Prefect is still starting
    _gate(store, slots, launched).step()
    assert launched == [job.id] and store.job_status(job.id) == "r"
    assert slots.taken == [] and store.unleased(("r",)) == [job.id]
    assert not store.runs_in_engine(job.id)
    supervisor = SimpleNamespace(capabilities_of=lambda comp: ["count"], port_of=lambda d: 1)
    control = JobControl(store, JobLifecycle(store), threading.RLock(), supervisor, 0, Path)  # type: ignore[arg-type]
    assert control.context(store.job(job.id)).in_engine is False  # type: ignore[arg-type]


def test_with_prefect_there_the_job_waits_for_its_flow_run_and_slot(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "tomato.db")
    slots, launched = Slots(healthy=True), []
    job = _queued(store)
    gate = _gate(store, slots, launched)
    gate.step()
    assert launched == [] and store.job_status(job.id) == "qw"  # the sync makes its run
    job = store.job(job.id)  # type: ignore[assignment]
    job.flow_run_id = "f1"
    store.save_job(job)
    gate.step()
    assert launched == [job.id] and slots.taken == [("pip-1", "f1")]
    assert store.runs_in_engine(job.id) and store.leases(("r",)) == {job.id: "lease-f1"}


class MirroringFlowRuns(RecordingFlowRuns):
    """A Prefect that makes flow runs and keeps their log lines."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def create(self, job: Job) -> tuple[str, str]:
        self.calls.append(("create", job.status))
        return "f1", "queued-state"

    def log(self, frid: str, message: str) -> None:
        self.lines.append(message)


def test_the_sync_writes_every_state_of_a_job_outside_the_engine(tmp_path: Path) -> None:
    sync, store = _sync(tmp_path)

    def attach_flow_run(jobid: int, frid: str, state_id: str) -> None:  # as the daemon does
        attached = store.job(jobid)
        assert attached is not None
        attached.flow_run_id = frid
        store.save_job(attached)
        store.set_prefect_status(jobid, "q", state_id)

    sync.host.attach_flow_run = attach_flow_run  # type: ignore[attr-defined]
    control = JobControl(store, JobLifecycle(store), threading.RLock(), None, 0, lambda: tmp_path)  # type: ignore[arg-type]
    job = _queued(store)
    job.status, job.pipeline, job.jobpath = "r", "pip-1", str(tmp_path)
    store.save_job(job)
    store.save_launch(job.id, "grant", None, in_engine=False)
    flow_runs = MirroringFlowRuns()
    [(read, pushed)] = store.jobs_unsynced()
    sync.pusher.push(flow_runs, read, pushed)  # type: ignore[arg-type]
    # its run is made, set Running by tomato (no engine will), tagged, and says why
    assert flow_runs.calls == [("create", "r"), ("set_status", "r"), ("tag", "r")]
    assert "outside Prefect's flow engine" in flow_runs.lines[0]
    assert store.jobs_unsynced() == []
    control.runner_report(job.id, "c")
    # the end is for the sync to write too
    [(read, pushed)] = store.jobs_unsynced()
    assert (read.status, pushed) == ("c", "r")
    sync.pusher.push(flow_runs, read, pushed)  # type: ignore[arg-type]
    assert flow_runs.calls[-1] == ("set_status", "c") and store.jobs_unsynced() == []


def test_a_job_in_the_engine_still_has_its_end_written_by_its_engine(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "tomato.db")
    control = JobControl(store, JobLifecycle(store), threading.RLock(), None, 0, lambda: tmp_path)  # type: ignore[arg-type]
    job = _queued(store, "f1")
    job.status, job.pipeline, job.connected_at = "r", "pip-1", now()
    store.save_job(job)
    store.save_launch(job.id, "grant", "lease-f1")
    store.set_prefect_status(job.id, "r")
    control.runner_report(job.id, "c")
    assert store.jobs_unsynced() == []


class FreshSlots:
    """Prefect's pipeline slots after a (re)start: free, one holder each."""

    def __init__(self) -> None:
        self.holders: dict[str, str] = {}

    def take(self, pipeline: str, flow_run_id: str) -> str:
        assert pipeline not in self.holders
        self.holders[pipeline] = flow_run_id
        return f"lease-{flow_run_id}"

    def renew(self, lease_id: str) -> bool:
        return lease_id.removeprefix("lease-") in self.holders.values()


def test_a_job_started_without_prefect_takes_its_slot_once_its_run_exists(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path / "tomato.db")
    leases, slots = SlotLeases(store), FreshSlots()
    job = _queued(store)
    job.status, job.pipeline = "r", "pip-1"
    store.save_job(job)
    store.save_launch(job.id, "grant", None, in_engine=False)
    leases.keep(slots, connecting=True)  # type: ignore[arg-type]
    assert slots.holders == {}  # no flow run yet: nothing to hold the slot
    job.flow_run_id = "f1"
    store.save_job(job)
    leases.keep(slots)  # type: ignore[arg-type]
    assert slots.holders == {"pip-1": "f1"} and store.leases(("r",)) == {job.id: "lease-f1"}
    assert store.unleased(("r",)) == []
