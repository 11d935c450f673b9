"""A job's conditions as its flow checks them: each step's ``stop_when``, the job's ``end_when``.

The flow checks every sample it collects, in order, so it can say which condition ended a
step and on which sample. For a driver of ours the driver host's sampler checks the same
conditions on each sample as it is taken and ends the task on the crossing sample (see
:mod:`drivers.sampler`); a tomato 2.x driver samples in its own thread, so its step is
stopped here, within one polling interval. A condition on another role is checked at each
collect of the step against that role's latest values.

Met conditions go to the job's log, to the daemon (which sends the Prefect event
``tomato.step.condition_met`` or ``tomato.job.condition_met``) and to ``conditions.json``
in the job folder, from which the results file's ``tomato_conditions`` attribute is written.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.samples import Block
from tomato_cli.models.conditions import Bound, ConditionWatch, Met
from tomato_cli.models.job import CONDITIONS_FILE
from tomato_cli.rpc import Unreachable, call

if TYPE_CHECKING:
    from flows.context import JobRun

log = logging.getLogger(__name__)

LIMIT_POLL_S = 1.0  # how often a paused job's limits are checked on its components


class ConditionUnitsError(ValueError):
    """The data came in units that a condition's threshold cannot be converted to."""


class Conditions:
    """Bound conditions of one role's samples (and of other roles' latest values)."""

    def __init__(self, bound: list[Bound], role: str | None) -> None:
        self.role = role
        roles = dict.fromkeys(cond.role for cond in bound)
        self._by_role = {r: ConditionWatch([c for c in bound if c.role == r]) for r in roles}
        self._units_seen: set[str] = set()
        self.met: Met | None = None

    def __bool__(self) -> bool:
        return bool(self._by_role)

    def on_own(self) -> list[Bound]:
        """The conditions on the step's own component (for its driver host)."""
        watch = self._by_role.get(self.role) if self.role else None
        return list(watch.conditions) if watch else []

    def roles(self) -> list[str]:
        return list(self._by_role)

    def check_block(self, role: str, block: Block) -> Met | None:
        """The samples of ``role`` just collected; the first condition met, if any."""
        watch = self._by_role.get(role)
        if self.met is not None or watch is None or not len(block):
            return self.met
        if role not in self._units_seen:  # the data's own units, for undeclared variables
            self._units_seen.add(role)
            try:
                watch.in_units(block.units)
            except ValueError as exc:
                raise ConditionUnitsError(str(exc)) from None
        self.met = watch.check_block(block.uts, block.data)
        return self.met

    def check_latest(
        self, latest: dict[str, dict[str, Any]], skip: str | None = None
    ) -> Met | None:
        """Other roles' latest values (checked at the time of the call)."""
        if self.met is not None:
            return self.met
        for role, watch in self._by_role.items():
            values = latest.get(role)
            if role != skip and values:
                self.met = watch.check(time.time(), values)
                if self.met is not None:
                    break
        return self.met


def record(run: JobRun, met: Met, step: int | None, repeat: int | None = None) -> None:
    """Say that ``met`` ended step ``step`` (None: the job; with ``repeat``: a repeat
    group after that repeat): job log, flow run log, daemon, job folder."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    if repeat is not None:
        what = f"the repeats after #{repeat} (until)"
    else:
        what = f"step {step}" if step is not None else "the job (end_when)"
    try:
        logger: logging.Logger | logging.LoggerAdapter = get_run_logger()
    except MissingContextError:  # outside Prefect's engine, or the paused-limits thread
        logger = log
    logger.info("%s: ended %s", met.describe(), what)
    detail = met.as_dict()
    entry = {"step": step, "condition": detail.pop("text"), **detail}
    if repeat is not None:
        entry["repeat"] = repeat
    with run.lock:
        run.conditions_met.append(entry)
        _write_json(run.jobdir / CONDITIONS_FILE, run.conditions_met)
    if repeat is not None:
        return  # the daemon's events are for stop_when and end_when
    try:
        call(
            run.daemon_port,
            "job_condition",
            host=run.daemon_host,
            jobid=run.job.id,
            step=step,
            condition=met.as_dict(),
        )
    except Unreachable:
        log.warning("job %s: the daemon did not hear of the condition met", run.job.id)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


class JobLimits:
    """The job's ``end_when``: checked on every collected block of each role, and while
    the job is paused (no samples come) on its components' current values."""

    def __init__(self, run: JobRun) -> None:
        self.run = run
        self.conditions = Conditions(run.context.conditions.of_job(), None)
        self._lock = threading.Lock()

    def check_block(self, role: str, block: Block) -> None:
        if not self.conditions:
            return
        with self._lock:
            if self.conditions.met is not None:
                return
            met = self.conditions.check_block(role, block)
        if met is not None:
            self._end(met)

    def watch_while_paused(self) -> None:
        """Background thread: the limits on the components' values while the job is paused."""
        if not self.conditions:
            return

        def loop() -> None:
            run = self.run
            while not run.steps_done.wait(LIMIT_POLL_S):
                if run.resumed.is_set() or self.conditions.met is not None:
                    continue
                values = {}
                for role in self.conditions.roles():
                    try:
                        status = run.driver_call(role, "status")
                    except Exception as exc:  # the next round tries again
                        log.warning("job %s: %s for its limits: %s", run.job.id, role, exc)
                        continue
                    values[role] = {**(status.get("attrs") or {}), **(status.get("idle") or {})}
                with self._lock:
                    met = self.conditions.check_latest(values)
                if met is not None:
                    self._end(met)
                    return

        context = contextvars.copy_context()  # the job's log follows it
        threading.Thread(target=context.run, args=(loop,), name="job-limits", daemon=True).start()

    def _end(self, met: Met) -> None:
        record(self.run, met, None)
        self.run.end_as = ("c", f"ended by end_when: {met.describe()}")
        self.run.cancel.set()
        self.run.resumed.set()  # a paused job wakes up to end
