"""Steering the queue, the pure parts: filters of `cancel --all`, priorities, marks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tomato_cli.cli.job_filters import matching, parse_statuses
from tomato_cli.daemon.queue_control import checked_priority
from tomato_cli.daemon.state import StateStore, job_marks
from tomato_cli.models import Job, PayloadError, parse_payload
from tomato_cli.rpc import RpcError

METHOD = [
    {"component_role": "c", "technique_name": "count", "max_duration": 1, "sampling_interval": 1}
]


def row(jobid: int, status: str, pipeline: str | None = None, sample: str = "s") -> dict[str, Any]:
    return {
        "id": jobid,
        "status": status,
        "pipeline": pipeline,
        "payload": {"sample": {"identifier": sample}},
    }


def test_statuses_default_to_every_cancellable_one() -> None:
    assert parse_statuses(None) == ("q", "qw", "r", "rp")
    assert parse_statuses("q, qw") == ("q", "qw")


@pytest.mark.parametrize(
    "text, reason", [("", "one or more"), ("x,q", "unknown status"), ("c", "cannot be chosen")]
)
def test_bad_statuses_say_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_statuses(text)


def test_every_filter_given_must_match() -> None:
    jobs = [row(1, "q"), row(2, "r", "p1"), row(3, "r", "p2", "t"), row(4, "c", "p1")]
    ids = lambda found: [j["id"] for j in found]  # noqa: E731
    assert ids(matching(jobs, ("q", "qw", "r", "rp"))) == [1, 2, 3]
    assert ids(matching(jobs, ("q",))) == [1]
    assert ids(matching(jobs, ("q", "r"), pipeline="p1")) == [2]
    assert ids(matching(jobs, ("q", "r"), sample="t")) == [3]
    assert ids(matching(jobs, ("q", "r"), pipeline="p1", sample="t")) == []


@pytest.mark.parametrize("value", [-1, 1.5, "3", True, None])
def test_a_priority_is_a_whole_number_0_or_more(value: Any) -> None:
    with pytest.raises(RpcError, match="priority"):
        checked_priority(value)
    assert checked_priority(0) == 0 and checked_priority(12) == 12


@pytest.mark.parametrize("value", [-1, 1.5, "high", "2"])
def test_a_payloads_priority_is_checked(value: Any) -> None:
    with pytest.raises(PayloadError, match="priority"):
        parse_payload(
            {"sample": {"identifier": "s"}, "method": METHOD, "settings": {"priority": value}}
        )


def test_a_payload_without_priority_is_written_as_tomato_22_writes_it() -> None:
    plain = parse_payload({"sample": {"identifier": "s"}, "method": METHOD})
    assert plain.settings.priority == 0
    assert "priority" not in plain.model_dump()["settings"]
    ranked = parse_payload(
        {"sample": {"identifier": "s"}, "method": METHOD, "settings": {"priority": 4}}
    )
    assert ranked.model_dump()["settings"]["priority"] == 4


def test_the_store_lists_queued_jobs_whose_marks_prefect_lacks(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    payload = parse_payload({"sample": {"identifier": "s"}, "method": METHOD})
    with store.transaction() as db:
        jobid = store.new_job_id(db)
    job = Job(id=jobid, payload=payload, status="q", flow_run_id="run-1")
    store.save_job(job)
    store.set_prefect_status(jobid, "q", "state-1")
    assert [(j.id, shown) for j, shown in store.jobs_unmarked()] == [(jobid, None)]
    store.set_prefect_marks(jobid, job_marks(job))
    assert store.jobs_unmarked() == []
    job.priority, job.held = 7, True
    store.save_job(job)
    assert [(j.id, shown) for j, shown in store.jobs_unmarked()] == [(jobid, "0:0")]
    assert job_marks(job) == "7:1"
    store.set_prefect_marks(jobid, job_marks(job))
    assert store.jobs_unmarked() == []


def test_the_short_list_holds_every_live_job_and_the_last_ended(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    store = StateStore(tmp_path / "state.db")
    payload = parse_payload({"sample": {"identifier": "s"}, "method": METHOD})
    start = datetime(2026, 1, 1, tzinfo=UTC)
    # ids 1-6: 1, 3, 5 ended (5 first, then 1, then 3), 2, 4, 6 queued or running
    ends = {1: 2, 3: 3, 5: 1}
    for _ in range(6):
        with store.transaction() as db:
            jobid = store.new_job_id(db)
        status = "c" if jobid in ends else ("q" if jobid % 4 else "r")
        done = start + timedelta(hours=ends[jobid]) if jobid in ends else None
        store.save_job(Job(id=jobid, payload=payload, status=status, completed_at=done))
    shown, left_out = store.jobs_shown(2)
    assert [j.id for j in shown] == [1, 2, 3, 4, 6] and left_out == 1  # 5 ended first
    shown, left_out = store.jobs_shown(0)
    assert [j.id for j in shown] == [2, 4, 6] and left_out == 3
    shown, left_out = store.jobs_shown(50)
    assert [j.id for j in shown] == [1, 2, 3, 4, 5, 6] and left_out == 0
