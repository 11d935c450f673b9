"""The job lifecycle table and JobLifecycle.move, on a real state store (no processes)."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pytest

from tomato_cli.daemon.lifecycle import (
    TRANSITIONS,
    Cause,
    Change,
    IllegalTransition,
    JobLifecycle,
    find_transition,
)
from tomato_cli.daemon.state import PipelineState, StateStore, now
from tomato_cli.models import Component, Job, parse_payload

STATUSES = ("q", "qw", "r", "rp", "rd", "c", "ce", "cd")

# The specification, written out: (source, target) -> the causes that may make it.
ALLOWED: dict[tuple[str | None, str], set[str]] = {
    (None, "q"): {"submit"},
    ("q", "qw"): {"gate"},
    ("qw", "q"): {"gate"},
    ("q", "r"): {"gate"},
    ("qw", "r"): {"gate"},
    ("q", "cd"): {"command", "prefect"},
    ("qw", "cd"): {"command", "prefect"},
    ("q", "ce"): {"prefect"},
    ("qw", "ce"): {"prefect"},
    ("r", "rp"): {"command", "prefect"},
    ("rp", "r"): {"command", "prefect"},
    ("r", "rd"): {"command", "prefect"},
    ("rp", "rd"): {"command", "prefect"},
    **{(s, t): {"runner", "recovery"} for s in ("r", "rp", "rd") for t in ("c", "cd", "ce")},
}


@pytest.mark.parametrize(
    "source, target, cause",
    list(itertools.product((None, *STATUSES), STATUSES, list(Cause))),
)
def test_table_allows_exactly_the_specified_transitions(source, target, cause) -> None:
    allowed = cause.value in ALLOWED.get((source, target), set())
    if allowed:
        assert find_transition(source, target, cause).target == target
    else:
        with pytest.raises(IllegalTransition) as info:
            find_transition(source, target, cause)
        assert cause.value in str(info.value) and target in str(info.value)


def test_every_row_says_what_it_means() -> None:
    assert all(row.meaning and row.causes and row.sources for row in TRANSITIONS)
    finals = {"c", "ce", "cd"}
    assert not any(finals & set(row.sources) for row in TRANSITIONS), "a final status is final"


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "tomato.db")


def _job(store: StateStore, status: str = "q", unlock: bool = False) -> Job:
    payload = parse_payload(
        {
            "sample": {"identifier": "s1"},
            "method": [
                {
                    "component_role": "counter",
                    "technique_name": "count",
                    "max_duration": 1,
                    "sampling_interval": 0.1,
                }
            ],
            "settings": {"unlock_when_done": unlock},
        }
    )
    with store.transaction() as db:
        jobid = store.new_job_id(db)
    job = Job(id=jobid, payload=payload, status=status, submitted_at=now())  # type: ignore[arg-type]
    store.save_job(job)
    return job


def _pipeline(store: StateStore, jobid: int | None) -> PipelineState:
    comp = Component.make("example_counter", "dev", "addr", "1", "counter")
    pip = PipelineState("pip-1", [comp], sampleid="s1", ready=True, jobid=jobid)
    store.save_pipeline(pip)
    return pip


def test_a_legal_move_is_applied_and_told(store: StateStore) -> None:
    lifecycle = JobLifecycle(store)
    seen: list[Change] = []
    lifecycle.listen(seen.append)
    job = _job(store)
    assert lifecycle.move(job, "qw", Cause.GATE)
    assert store.job_status(job.id) == "qw"
    assert [(c.job.id, c.source, c.job.status, c.cause) for c in seen] == [
        (job.id, "q", "qw", Cause.GATE)
    ]


def test_moves_of_a_rolled_back_transaction_are_never_told(store: StateStore) -> None:
    lifecycle = JobLifecycle(store)
    seen: list[Change] = []
    lifecycle.listen(seen.append)
    job = _job(store)
    with pytest.raises(RuntimeError, match="disk full"):
        with lifecycle.transaction() as db:
            assert lifecycle.move(job, "qw", Cause.GATE, db=db)
            raise RuntimeError("disk full")
    assert store.job_status(job.id) == "q"
    with lifecycle.transaction() as db:
        lifecycle.move(store.job(job.id), "cd", Cause.COMMAND, db=db)  # type: ignore[arg-type]
    lifecycle.committed()
    assert [(c.source, c.job.status) for c in seen] == [("q", "cd")]  # not the rolled back one


def test_an_illegal_move_is_refused_logged_and_not_applied(
    store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    lifecycle = JobLifecycle(store)
    seen: list[Change] = []
    lifecycle.listen(seen.append)
    job = _job(store, "c")
    with caplog.at_level(logging.WARNING):
        assert not lifecycle.move(job, "r", Cause.GATE)
    assert store.job_status(job.id) == "c" and seen == []
    assert f"job {job.id}: refused: gate cannot move a job from c to r" in caplog.text


def test_the_stored_status_counts_not_a_stale_copy(store: StateStore) -> None:
    lifecycle = JobLifecycle(store)
    job = _job(store, "r")
    stale = store.job(job.id)
    assert stale is not None
    assert lifecycle.move(job, "c", Cause.RUNNER)
    stale.status = "r"  # a copy read before the job ended
    assert not lifecycle.move(stale, "rp", Cause.COMMAND)
    assert store.job_status(job.id) == "c"


@pytest.mark.parametrize("unlock", [False, True])
def test_an_end_releases_the_pipeline(store: StateStore, unlock: bool) -> None:
    lifecycle = JobLifecycle(store)
    job = _job(store, "r", unlock=unlock)
    job.pipeline = "pip-1"
    store.save_job(job)
    _pipeline(store, job.id)
    assert lifecycle.move(job, "ce", Cause.RECOVERY, error="process died")
    stored = store.job(job.id)
    assert stored is not None and stored.status == "ce" and stored.error == "process died"
    assert stored.completed_at is not None
    pip = store.pipelines()["pip-1"]
    assert pip.jobid is None and pip.ready is unlock


def test_changes_in_a_transaction_are_told_after_commit(store: StateStore) -> None:
    lifecycle = JobLifecycle(store)
    seen: list[Change] = []
    lifecycle.listen(seen.append)
    job = _job(store)
    with store.transaction() as db:
        assert lifecycle.move(job, "r", Cause.GATE, db=db)
        assert seen == []
    lifecycle.committed()
    assert [c.job.status for c in seen] == ["r"]


def test_a_failing_listener_does_not_undo_the_change(store: StateStore) -> None:
    lifecycle = JobLifecycle(store)

    def broken(change: Change) -> None:
        raise RuntimeError("listener bug")

    lifecycle.listen(broken)
    job = _job(store)
    assert lifecycle.move(job, "cd", Cause.COMMAND)
    assert store.job_status(job.id) == "cd"
