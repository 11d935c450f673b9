"""The gate's matching of queued jobs to pipelines (pure functions, no processes)."""

from __future__ import annotations

from typing import Any

from tomato_cli.daemon.gate import can_serve, is_free_for, plan, start_order
from tomato_cli.daemon.state import PipelineState
from tomato_cli.models import Component, Job, parse_payload

CAPS = {"example_counter": ["count", "random"], "psutil": ["all_info"]}


def caps(comp: Component) -> list[str]:
    return CAPS.get(comp.driver, [])


def job(jobid: int, sample: str = "s1", **roles: str) -> Job:
    roles = roles or {"counter": "count"}
    method: list[dict[str, Any]] = [
        {"component_role": r, "technique_name": t, "max_duration": 1, "sampling_interval": 0.1}
        for r, t in roles.items()
    ]
    payload = parse_payload({"sample": {"identifier": sample}, "method": method})
    return Job(id=jobid, payload=payload, status="q")


def pipeline(
    name: str,
    sample: str | None = "s1",
    ready: bool = True,
    jobid: int | None = None,
    channel: str = "1",
    **roles: str,
) -> PipelineState:
    roles = roles or {"counter": "example_counter"}
    comps = [Component.make(d, f"dev-{d}", "addr", channel, role) for role, d in roles.items()]
    return PipelineState(name, comps, sampleid=sample, ready=ready, jobid=jobid)


def pipelines(*pips: PipelineState) -> dict[str, PipelineState]:
    return {p.name: p for p in pips}


def test_roles_and_techniques_must_all_be_there() -> None:
    counter = pipeline("a")
    both = pipeline("b", counter="example_counter", host="psutil")
    assert can_serve(job(1), counter, caps)
    assert not can_serve(job(2, counter="count", host="all_info"), counter, caps)
    assert can_serve(job(3, counter="count", host="all_info"), both, caps)
    assert not can_serve(job(4, counter="fly"), both, caps)


def test_sample_ready_and_idle_are_all_needed() -> None:
    j = job(1, sample="s1")
    assert is_free_for(j, pipeline("a"))
    assert not is_free_for(j, pipeline("a", sample="other"))
    assert not is_free_for(j, pipeline("a", sample=None))
    assert not is_free_for(j, pipeline("a", ready=False))
    assert not is_free_for(j, pipeline("a", jobid=7))


def test_queued_jobs_see_qw_once_a_pipeline_could_run_them() -> None:
    statuses, assignments = plan(
        [job(1), job(2, other="count")], pipelines(pipeline("a", ready=False)), caps
    )
    assert statuses == {1: "qw", 2: "q"}
    assert assignments == []


def test_jobs_are_taken_in_submission_order_one_per_pipeline() -> None:
    statuses, assignments = plan(
        [job(3), job(1), job(2)], pipelines(pipeline("a"), pipeline("b", channel="2")), caps
    )
    assert statuses == {1: "qw", 2: "qw", 3: "qw"}
    assert assignments == [(1, "a"), (2, "b")]


def test_a_job_goes_to_the_pipeline_holding_its_sample() -> None:
    _, assignments = plan(
        [job(1, sample="x"), job(2, sample="y")],
        pipelines(pipeline("a", sample="y"), pipeline("b", sample="x", channel="2")),
        caps,
    )
    assert sorted(assignments) == [(1, "b"), (2, "a")]


def test_a_shared_component_serves_one_job_at_a_time() -> None:
    busy = pipeline("a", jobid=9)
    same_channel = pipeline("b")  # the same component as "a"
    _, assignments = plan([job(1)], pipelines(busy, same_channel), caps)
    assert assignments == []
    # and two free pipelines sharing a component get one job between them
    _, assignments = plan([job(1), job(2)], pipelines(pipeline("a"), pipeline("b")), caps)
    assert assignments == [(1, "a")]


def test_the_highest_priority_starts_first_then_the_oldest() -> None:
    queued = [job(1), job(2), job(3), job(4)]
    for j, priority in zip(queued, (0, 5, 1, 5), strict=True):
        j.priority = priority
    _, assignments = plan(queued, pipelines(pipeline("a")), caps)
    assert assignments == [(2, "a")]  # 5 before 1 and 0; of two at 5, the older
    assert [j.id for j in sorted(queued, key=start_order)] == [2, 4, 3, 1]


def test_a_held_job_keeps_its_status_and_is_passed_over() -> None:
    held, other = job(1), job(2)
    held.held, held.priority = True, 9
    statuses, assignments = plan([held, other], pipelines(pipeline("a")), caps)
    assert statuses == {1: "qw", 2: "qw"}
    assert assignments == [(2, "a")]
    held.held = False
    _, assignments = plan([held, other], pipelines(pipeline("a")), caps)
    assert assignments == [(1, "a")]
