"""The order a job's steps run in: each role's steps one after the other, the roles side by
side, and repeat groups (``repeats``) run over until ``times`` or their ``until``.

One plan drives both ways of running steps (:class:`StepRunner`): as Prefect task runs in
the flow engine, or in threads outside it. A repeat's steps are submitted afresh for each
repeat (``<name> #<n>`` in the Prefect UI), after the previous repeat ended; steps after a
group on roles the group does not use are submitted before the group starts, so they run
alongside it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from flows.conditions import record
from tomato_cli.models.conditions import Met
from tomato_cli.models.repeats import RepeatQuantity

if TYPE_CHECKING:
    from flows.context import JobRun

log = logging.getLogger(__name__)


class StepRunner(Protocol):
    """How steps run: submitted with the handles they wait for, then waited on."""

    def submit(self, index: int, name: str, after: Sequence[Any]) -> Any: ...

    def wait(self, handles: Sequence[Any]) -> None: ...

    def error(self, handle: Any) -> str | None:
        """Why the step did not complete, or None if it did."""


@dataclass
class Group:
    number: int  # its index in ``repeats``
    start: int  # method indices start..end, inclusive
    end: int
    times: int

    @property
    def indices(self) -> range:
        return range(self.start, self.end + 1)


def step_name(index: int, run: JobRun) -> str:
    step = run.job.payload.method[index]
    return step.task_name or f"{index}-{step.component_role}-{step.technique_name}"


def _groups(run: JobRun) -> dict[int, Group]:
    method = run.job.payload.method
    where = {t.task_name: i for i, t in enumerate(method) if t.task_name}
    groups = {}
    for g, repeat in enumerate(run.job.payload.repeats or []):
        at = [where[name] for name in repeat.steps]
        groups[at[0]] = Group(g, at[0], at[-1], repeat.times)
    return groups


def run_method(run: JobRun, runner: StepRunner) -> list[str]:
    """Run every step in order; returns why those that did not complete did not."""
    method = run.job.payload.method
    groups = _groups(run)
    last: dict[str, Any] = {}  # role -> the handle of its latest step
    handles: list[Any] = []
    submitted: set[int] = set()
    errors: list[str] = []

    def submit(index: int, name: str) -> Any:
        role = method[index].component_role
        handle = runner.submit(index, name, [last[role]] if role in last else [])
        last[role] = handle
        handles.append(handle)
        return handle

    i = 0
    while i < len(method):
        group = groups.get(i)
        if group is None:
            if i not in submitted:
                submit(i, step_name(i, run))
            i += 1
            continue
        roles = {method[k].component_role for k in group.indices}
        following = min((s for s in groups if s > group.end), default=len(method))
        for k in range(group.end + 1, following):
            if method[k].component_role not in roles:  # runs alongside the group
                submit(k, step_name(k, run))
                submitted.add(k)
        errors += _repeat(run, runner, group, submit)
        i = group.end + 1
    runner.wait(handles)
    return errors + [e for h in handles if (e := runner.error(h)) is not None]


def _repeat(run: JobRun, runner: StepRunner, group: Group, submit: Any) -> list[str]:
    """Run the group's steps ``times`` over; stop early when its ``until`` holds after a
    repeat, the job is cancelled, or a step did not complete (its error is reported with
    the others)."""
    until = run.context.conditions.of_repeat(group.number)
    first: float | None = None
    try:
        for number in range(1, group.times + 1):
            if run.cancel.is_set():
                break
            quantity = RepeatQuantity(until) if until is not None else None
            with run.lock:
                run.repeat_quantity = quantity
                run.repeat_no.update(dict.fromkeys(group.indices, number))
            this = [submit(k, f"{step_name(k, run)} #{number}") for k in group.indices]
            runner.wait(this)
            if any(runner.error(h) is not None for h in this):
                break
            if until is None or quantity is None:
                continue
            value = quantity.value()
            log.info("repeat %d: %s(%s) = %s", number, until.func, until.variable, value)
            if value is None:
                continue
            first = value if first is None else first
            if until.holds(value, first):
                met = Met(until.text, until.role, until.variable, value, until.units, time.time())
                record(run, met, None, repeat=number)
                break
    finally:
        with run.lock:
            run.repeat_quantity = None
    return []
