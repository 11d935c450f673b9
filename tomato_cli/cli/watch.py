"""``ketchup status --watch`` and ``ketchup submit --wait``: follow one job until it ends.

In a terminal: a live view (rich) with a progress bar per step, elapsed and remaining
time and the latest values, read from the daemon (status) and the job's store (data).
With ``--yaml``: no view, one YAML mapping once the job has ended. Either way the exit
code tells how the job ended (:data:`EXIT_CODES`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import typer

from tomato_cli.cli.output import Common, fail, to_yaml
from tomato_cli.models.job import FINAL_STATUSES
from tomato_cli.rpc import Reply, Unreachable, call

# how a watched job ended, as the command's exit code (1 and 2 stay for errors and usage)
EXIT_CODES = {"c": 0, "ce": 3, "cd": 4}
POLL_S = 0.5
GIVE_UP_S = 60.0  # a daemon silent for this long ends the watch


@dataclass
class StepView:
    """One technique step as seen from its samples."""

    index: int
    role: str
    technique: str
    name: str
    max_duration: float
    first: float | None = None  # time of its first and last sample
    last: float | None = None
    samples: int = 0


@dataclass
class StepLine:
    step: StepView
    state: str  # waiting, running, done, not run
    elapsed: float
    fraction: float


def _time(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


@dataclass
class JobWatch:
    """What a live view shows of one job; fed with its status and its new samples."""

    job: dict[str, Any]
    steps: list[StepView] = field(default_factory=list)
    latest: dict[str, dict[str, tuple[Any, str | None]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for index, task in enumerate(self.job["payload"]["method"]):
            name = task.get("task_name") or f"{index}-{task['technique_name']}"
            self.steps.append(
                StepView(
                    index,
                    task["component_role"],
                    task["technique_name"],
                    name,
                    float(task["max_duration"]),
                )
            )

    def add(self, role: str, uts: Any, columns: dict[str, Any], units: dict[str, Any], step: int):
        """Take one batch of samples of ``role`` from method step ``step``."""
        if len(uts) == 0:
            return
        if 0 <= step < len(self.steps):
            view = self.steps[step]
            view.first = float(uts[0]) if view.first is None else view.first
            view.last = float(uts[-1])
            view.samples += len(uts)
        values = self.latest.setdefault(role, {})
        for name, column in columns.items():
            value = column[-1]
            if getattr(value, "ndim", 0) > 0:  # a trace: too long to show, say how long
                value = f"trace of {value.size} values"
            elif hasattr(value, "item"):
                value = value.item()
            values[name] = (value, units.get(name))

    @property
    def status(self) -> str:
        return str(self.job["status"])

    @property
    def ended(self) -> bool:
        return self.status in FINAL_STATUSES

    def lines(self, now: float) -> list[StepLine]:
        out = []
        for view in self.steps:
            later = [s for s in self.steps if s.role == view.role and s.index > view.index]
            followed = any(s.samples for s in later)
            if view.samples == 0:
                state = "not run" if self.ended or followed else "waiting"
                out.append(StepLine(view, state, 0.0, 0.0))
                continue
            assert view.first is not None and view.last is not None
            if self.ended or followed:
                elapsed = view.last - view.first
                done = followed or self.status == "c"
                fraction = 1.0 if done else min(1.0, elapsed / view.max_duration)
                out.append(StepLine(view, "done", elapsed, fraction))
            else:
                elapsed = max(0.0, now - view.first)
                fraction = min(1.0, elapsed / view.max_duration) if view.max_duration else 1.0
                out.append(StepLine(view, "running", elapsed, fraction))
        return out

    def elapsed(self, now: float) -> float:
        start = _time(self.job.get("launched_at"))
        if start is None:
            return 0.0
        end = _time(self.job.get("completed_at")) if self.ended else None
        return max(0.0, (end or now) - start)

    def remaining(self, now: float) -> float | None:
        """Planned time left: the longest role's running and waiting steps (None if ended)."""
        if self.ended:
            return None
        per_role: dict[str, float] = {}
        for line in self.lines(now):
            left = 0.0
            if line.state == "waiting":
                left = line.step.max_duration
            elif line.state == "running":
                left = max(0.0, line.step.max_duration - line.elapsed)
            per_role[line.step.role] = per_role.get(line.step.role, 0.0) + left
        return max(per_role.values(), default=0.0)


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def view(watch: JobWatch, now: float, note: str = ""):
    """The rich renderable of the live view."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    job = watch.job
    head = Text.assemble(
        (f"job {job['id']}", "bold"),
        f"  sample {job['payload']['sample']['identifier']}",
        f"  pipeline {job.get('pipeline') or '-'}  ",
        (f"status {watch.status}", "bold green" if watch.status == "c" else "bold"),
    )
    times = Text(f"elapsed {clock(watch.elapsed(now))}   remaining {clock(watch.remaining(now))}")
    steps = Table(box=None, pad_edge=False, show_edge=False)
    for column in ("step", "role", "technique", "progress", "", "time", "samples", "state"):
        steps.add_column(column, justify="right" if column in ("", "samples") else "left")
    for line in watch.lines(now):
        step = line.step
        steps.add_row(
            step.name,
            step.role,
            step.technique,
            ProgressBar(total=1.0, completed=line.fraction, width=30),
            f"{100 * line.fraction:3.0f}%",
            f"{clock(line.elapsed)} / {clock(step.max_duration)}",
            str(step.samples),
            line.state,
        )
    parts: list[Any] = [head, times, Text(""), steps]
    if watch.latest:
        latest = Table(box=None, pad_edge=False, show_edge=False, title_justify="left")
        for column in ("role", "quantity", "latest value", "units"):
            latest.add_column(column)
        for role, values in sorted(watch.latest.items()):
            for name, (value, units) in values.items():
                latest.add_row(role, name, _value(value), units or "")
        parts += [Text(""), latest]
    if job.get("error"):
        parts += [Text(""), Text(f"error: {job['error']}", style="red")]
    if note:
        parts += [Text(""), Text(note, style="yellow")]
    return Group(*parts)


def _job(opts: Common, jobid: int) -> dict[str, Any] | None:
    """The job as the daemon has it now; None while the daemon does not answer."""
    try:
        reply = call(opts.port, "job_status", timeout=10, host=opts.host, jobids=[jobid])
    except Unreachable:
        return None
    if not reply.success:
        fail(opts, reply.msg)
    return reply.data[0]


def _ended(opts: Common, job: dict[str, Any]) -> NoReturn:
    status = job["status"]
    msg = f"job {job['id']} ended with status {status}"
    if job.get("error"):
        msg += f": {job['error']}"
    if opts.as_yaml:
        sys.stdout.write(to_yaml(Reply(status == "c", msg, job).as_dict()))
    raise typer.Exit(EXIT_CODES.get(status, 1))


def watch_job(opts: Common, jobid: int) -> NoReturn:
    """Follow a job until it ends; exit with :data:`EXIT_CODES` of its final status."""
    job = _job(opts, jobid)
    if job is None:
        fail(opts, f"no tomato daemon answers on port {opts.port}; start it with `tomato start`")
    if opts.as_yaml:
        _wait_quietly(opts, jobid, job)
    _watch_live(opts, jobid, job)


def _wait_quietly(opts: Common, jobid: int, job: dict[str, Any]) -> NoReturn:
    silent_since: float | None = None
    while job["status"] not in FINAL_STATUSES:
        time.sleep(POLL_S)
        fresh = _job(opts, jobid)
        if fresh is None:
            silent_since = silent_since or time.monotonic()
            if time.monotonic() - silent_since > GIVE_UP_S:
                fail(opts, f"the tomato daemon on port {opts.port} stopped answering")
            continue
        job, silent_since = fresh, None
    _ended(opts, job)


def _watch_live(opts: Common, jobid: int, job: dict[str, Any]) -> NoReturn:
    from rich.console import Console
    from rich.live import Live

    from tomato_cli.store.tail import StoreTail

    watch = JobWatch(job)
    tail = StoreTail(Path(job["jobpath"])) if job.get("jobpath") else None
    silent_since: float | None = None
    note = ""
    console = Console()
    try:
        with Live(view(watch, time.time()), console=console, auto_refresh=False) as live:
            while True:
                if tail is not None:
                    for role, batch in tail.new_batches():
                        watch.add(role, batch.uts, batch.columns, batch.units, batch.step)
                live.update(view(watch, time.time(), note), refresh=True)
                if watch.ended:
                    break
                time.sleep(POLL_S)
                fresh = _job(opts, jobid)
                if fresh is None:
                    silent_since = silent_since or time.monotonic()
                    note = f"the tomato daemon on port {opts.port} does not answer"
                    if time.monotonic() - silent_since > GIVE_UP_S:
                        live.update(view(watch, time.time(), note), refresh=True)
                        live.stop()
                        fail(opts, f"the tomato daemon on port {opts.port} stopped answering")
                    continue
                watch.job, silent_since, note = fresh, None, ""
    except KeyboardInterrupt:
        sys.stderr.write(f"stopped watching; job {jobid} goes on\n")
        raise typer.Exit(130) from None
    _ended(opts, watch.job)
