"""A job outside Prefect's engine runs its steps as the engine would: roles in parallel,
each role's steps in order, and a step after a failed one on its role does not run."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

import flows.job
from tomato_cli.models import parse_payload


def _run(*roles: str) -> Any:
    method = [
        {"component_role": r, "technique_name": "count", "max_duration": 1, "sampling_interval": 1}
        for r in roles
    ]
    payload = parse_payload({"sample": {"identifier": "s"}, "method": method})
    return SimpleNamespace(job=SimpleNamespace(payload=payload))


def test_steps_keep_their_order_per_role_and_run_roles_in_parallel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[tuple[str, int]] = []
    both_running = threading.Barrier(2, timeout=10)  # a and b at once, or this times out

    def step(run: Any, index: int) -> dict[str, Any]:
        events.append(("start", index))
        if index in (0, 1):
            both_running.wait()
        time.sleep(0.05)
        events.append(("end", index))
        return {}

    monkeypatch.setattr(flows.job, "run_step", SimpleNamespace(fn=step))
    assert flows.job._steps_outside_engine(_run("a", "b", "a")) == []
    assert events.index(("end", 0)) < events.index(("start", 2))


def test_a_step_after_a_failed_one_on_its_role_does_not_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[int] = []

    def step(run: Any, index: int) -> dict[str, Any]:
        ran.append(index)
        if index == 0:
            raise flows.job.StepError("a: count failed: broken")
        return {}

    monkeypatch.setattr(flows.job, "run_step", SimpleNamespace(fn=step))
    errors = flows.job._steps_outside_engine(_run("a", "b", "a"))
    assert sorted(ran) == [0, 1]
    assert errors == [
        "a: count failed: broken",
        "2-a-count: not run: the step before it on its role did not complete",
    ]
