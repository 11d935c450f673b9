"""Which snapshot automations a (re)connecting daemon keeps, removes and makes anew."""

from __future__ import annotations

from pathlib import Path

from tomato_cli.daemon.snapshots import Periodic, PeriodicSnapshots
from tomato_cli.daemon.state import StateStore
from tomato_cli.orchestration.events import Origin

ORIGIN = Origin("bench-a", 1234)


class ListedAutomations:
    """The automations a Prefect server lists, and what the daemon removed."""

    def __init__(self, listed: list[tuple[str, str]]) -> None:
        self.listed = listed
        self.deleted: list[str] = []

    def automations(self, prefix: str) -> list[tuple[str, str]]:
        return [(i, n) for i, n in self.listed if n.startswith(prefix)]

    def delete_automation(self, automation_id: str) -> None:
        self.deleted.append(automation_id)


def name(jobid: int, origin: Origin = ORIGIN) -> str:
    return f"tomato snapshots of job {jobid} ({origin.ident})"


def snapshots(tmp_path: Path) -> PeriodicSnapshots:
    store = StateStore(tmp_path / "tomato.db")
    return PeriodicSnapshots(store, lambda job: None, lambda event: None, lambda: True, ORIGIN)  # type: ignore[arg-type,return-value]


def test_reconnecting_keeps_live_jobs_automations_and_removes_the_rest(tmp_path: Path) -> None:
    snaps = snapshots(tmp_path)
    snaps.jobs = {
        1: Periodic(1, 10.0, automation_id="a1"),  # the daemon made it: keep it
        2: Periodic(2, 10.0),  # a daemon restart: adopt what the server has
        3: Periodic(3, 10.0, automation_id="gone"),  # deleted meanwhile: make it anew
    }
    other = Origin("bench-b", 1234)
    prefect = ListedAutomations(
        [
            ("a1", name(1)),
            ("a2", name(2)),
            ("stray", name(1)),  # a second copy for job 1
            ("old", name(7)),  # an ended job's
            ("b1", name(1, other)),  # another host's: not ours to touch
            ("u1", "my own automation"),
        ]
    )
    snaps._adopt_automations(prefect)  # type: ignore[arg-type]
    assert snaps.jobs[1].automation_id == "a1"
    assert snaps.jobs[2].automation_id == "a2"
    assert snaps.jobs[3].automation_id is None  # reconcile() creates it again
    assert sorted(prefect.deleted) == ["old", "stray"]
