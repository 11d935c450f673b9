"""Job ids: 1, 2, 3 on a host of its own; unique across the lab on a lab server."""

from __future__ import annotations

from pathlib import Path

from tomato_cli.daemon.state import StateStore


def _ids(store: StateStore, n: int, lab_number: int | None = None, floor: int = 0) -> list[int]:
    out = []
    for _ in range(n):
        with store.transaction() as db:
            out.append(store.new_job_id(db, lab_number, floor))
    return out


def test_ids_on_a_host_of_its_own(tmp_path: Path) -> None:
    assert _ids(StateStore(tmp_path / "t.db"), 3) == [1, 2, 3]


def test_lab_ids_carry_the_host_number_and_go_on_after_local_ones(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "t.db")
    assert _ids(store, 2) == [1, 2]  # before the host joined a lab
    assert _ids(store, 3, lab_number=7) == [107, 207, 307]
    other = StateStore(tmp_path / "other.db")
    assert set(_ids(other, 3, lab_number=8)).isdisjoint({107, 207, 307})


def test_a_host_started_afresh_goes_on_above_its_old_ids(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "new.db")
    assert _ids(store, 2, lab_number=4, floor=1504) == [1604, 1704]


def test_every_database_has_its_own_instance_name(tmp_path: Path) -> None:
    one, two = StateStore(tmp_path / "a.db"), StateStore(tmp_path / "b.db")
    assert one.instance and one.instance != two.instance
    assert StateStore(tmp_path / "a.db").instance == one.instance  # kept
