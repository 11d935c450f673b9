"""The pipeline slots' leases: an ended job's slot is free for the next job at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_daemon_sync_status import _job
from tomato_cli.daemon.slot_leases import SlotLeases
from tomato_cli.daemon.state import StateStore


class SlotsOfOnePipeline:
    """A pipeline slot as Prefect keeps it: one holder at a time."""

    def __init__(self) -> None:
        self.holder: str | None = None
        self.given_back: list[str] = []

    def take(self, pipeline: str, flow_run_id: str) -> str:
        if self.holder is not None:
            raise RuntimeError(f"Prefect refuses: the slot of {pipeline!r} is held")
        self.holder = f"lease-{flow_run_id}"
        return self.holder

    def give_back(self, lease_id: str) -> None:
        self.given_back.append(lease_id)
        if self.holder == lease_id:
            self.holder = None


def test_the_next_job_takes_the_slot_of_one_that_just_ended(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "tomato.db")
    leases, slots = SlotLeases(store), SlotsOfOnePipeline()
    first, second = _job(store), _job(store)
    store.save_launch(first.id, "grant", leases.take(slots, "pip-1", "f1"))  # type: ignore[arg-type]
    first.status = "c"  # ended; the sync has not had its round yet
    store.save_job(first)
    lease = leases.take(slots, "pip-1", "f2")  # type: ignore[arg-type]
    assert lease == "lease-f2" and slots.given_back == ["lease-f1"]
    assert store.leases(("c",)) == {}  # and not given back a second time by the sync
    store.save_launch(second.id, "grant", lease)
    leases.keep(slots)  # type: ignore[arg-type]
    assert slots.given_back == ["lease-f1"] and slots.holder == "lease-f2"  # live: kept


def test_a_live_jobs_slot_is_not_taken(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "tomato.db")
    leases, slots = SlotLeases(store), SlotsOfOnePipeline()
    first = _job(store)
    store.save_launch(first.id, "grant", leases.take(slots, "pip-1", "f1"))  # type: ignore[arg-type]
    first.status = "r"
    store.save_job(first)
    with pytest.raises(RuntimeError, match="is held"):
        leases.take(slots, "pip-1", "f2")  # type: ignore[arg-type]
    assert slots.given_back == [] and slots.holder == "lease-f1"


class RefusingOnce(SlotsOfOnePipeline):
    """Prefect refusing the first give-back (busy: 503), then taking it."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = False

    def give_back(self, lease_id: str) -> None:
        if not self.refused:
            self.refused = True
            raise RuntimeError("503 Service Unavailable")
        super().give_back(lease_id)

    def take(self, pipeline: str, flow_run_id: str) -> str:
        return f"lease-{flow_run_id}"  # another pipeline's slot: free


def test_a_slot_prefect_will_not_take_back_holds_up_no_start(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "tomato.db")
    leases, slots = SlotLeases(store), RefusingOnce()
    first = _job(store)
    store.save_launch(first.id, "grant", "lease-f1")
    first.status = "c"
    store.save_job(first)
    assert leases.take(slots, "pip-2", "f2") == "lease-f2"  # type: ignore[arg-type]
    assert store.leases(("c",)) == {first.id: "lease-f1"}  # kept, to give back later
    leases.keep(slots)  # type: ignore[arg-type]
    assert slots.given_back == ["lease-f1"] and store.leases(("c",)) == {}
