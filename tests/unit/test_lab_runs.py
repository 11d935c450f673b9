"""How a lab job's flow run reads in the terminal, and how a lab job is found."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prefect.client.schemas.objects import FlowRun, State, StateType

from tomato_cli.orchestration.lab_runs import LabJobNotFound, find_lab_run, lab_run_view

PAYLOAD = {"version": "2.2", "sample": {"identifier": "s1"}, "method": []}


def run(stype: str, name: str, tags: list[str], message: str | None = None, **params: Any):
    return FlowRun(
        id=uuid.uuid4(),
        name="clever-fox" if "jobid" not in params else f"job-{params['jobid']}",
        flow_id=uuid.uuid4(),
        tags=tags,
        parameters={"payload": PAYLOAD, **params},
        state=State(type=StateType(stype), name=name, message=message),
    )


def test_a_lab_job_nobody_took_is_queued_with_no_host_or_job_id() -> None:
    for stype, name in [("SCHEDULED", "Scheduled"), ("SCHEDULED", "Late"), ("PENDING", "Claimed")]:
        view = lab_run_view(run(stype, name, ["tomato", "lab", "sample:s1"], host="bench-b"))
        assert view["status"] == "q" and view["state"] == name
        assert (view["host"], view["jobid"], view["pinned"]) == (None, None, "bench-b")
        assert view["sample"] == "s1" and view["priority"] is None


def test_a_taken_lab_job_shows_its_host_job_id_and_status() -> None:
    tags = ["tomato", "sample:s1", "priority:5", "pipeline:pip-1", "host:bench-a"]
    cases = [
        ("PAUSED", "Queued", "q"),
        ("RUNNING", "Running", "r"),
        ("PAUSED", "Paused", "rp"),
        ("COMPLETED", "Completed", "c"),
        ("CANCELLED", "Cancelled", "cd"),
    ]
    for stype, name, status in cases:
        view = lab_run_view(run(stype, name, tags, jobid=302))
        assert (view["status"], view["host"], view["jobid"]) == (status, "bench-a", 302)
        assert (view["pipeline"], view["priority"], view["name"]) == ("pip-1", 5, "job-302")


def test_a_refused_lab_job_ended_ce_with_the_reason() -> None:
    view = lab_run_view(run("FAILED", "Failed", ["tomato", "lab"], "tomato refused this lab job"))
    assert (view["status"], view["host"], view["message"]) == (
        "ce",
        None,
        "tomato refused this lab job",
    )


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("pip-counter-1", "'pip-counter-1' is neither a flow run id (a UUID) nor a job id"),
        ("-3", "is neither a flow run id"),
        ("1" * 13, "is neither a flow run id"),
        ("x" * 500, "'" + "x" * 57 + "...' is neither"),
    ],
)
def test_a_reference_that_is_neither_a_run_nor_a_job_is_refused(ref: str, reason: str) -> None:
    with pytest.raises(LabJobNotFound) as err:
        find_lab_run(None, ref)  # refused before any call to the server
    assert reason in str(err.value)


class Runs:
    """A lab server that holds these flow runs (every filter matches them all: the filter is
    Prefect's, not tested here)."""

    def __init__(self, *held: FlowRun) -> None:
        self.held = list(held)

    def read_flow_run(self, run_id: uuid.UUID) -> FlowRun:
        from prefect.exceptions import ObjectNotFound

        for found in self.held:
            if found.id == run_id:
                return found
        raise ObjectNotFound(None)

    def read_flow_runs(self, **_: Any) -> list[FlowRun]:
        return self.held


def test_a_flow_run_that_is_not_a_tomato_job_is_refused() -> None:
    other = run("RUNNING", "Running", ["etl"])
    with pytest.raises(LabJobNotFound, match=f"flow run {other.id} \\(clever-fox\\) is not a"):
        find_lab_run(Runs(other), str(other.id))
    missing = uuid.uuid4()
    with pytest.raises(LabJobNotFound, match=f"the lab server has no flow run {missing}"):
        find_lab_run(Runs(other), f" {missing} ")


def test_a_job_id_finds_its_flow_run() -> None:
    mine = run("RUNNING", "Running", ["tomato", "host:bench-a"], jobid=302)
    assert find_lab_run(Runs(mine), "302") is mine
    with pytest.raises(LabJobNotFound, match="the lab server has no job 302"):
        find_lab_run(Runs(), "302")
    twin = run("RUNNING", "Running", ["tomato", "host:bench-b"], jobid=302)
    with pytest.raises(
        LabJobNotFound, match=f"job 302 names 2 flow runs; give one of them: {mine.id}, {twin.id}"
    ):
        find_lab_run(Runs(mine, twin), "302")
