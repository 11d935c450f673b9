"""The job flow: one flow run per tomato job; each technique step is one Prefect task.

A job the daemon started while Prefect was away runs the same steps outside Prefect's
flow engine (:func:`run_outside_engine`), each in a thread of its own; the daemon writes
its flow run's states once Prefect is back.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from functools import partial
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import Abort, MissingContextError
from prefect.futures import wait
from prefect.states import Cancelled, Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from drivers.samples import Block, collect_task_data
from flows.conditions import Conditions, ConditionUnitsError, record
from flows.context import JobRun, NotGranted, granted_context
from flows.plan import run_method
from flows.plot_artifact import create_plot_artifact
from flows.progress import Progress
from tomato_cli.models import Job, Task
from tomato_cli.models.context import JobContext
from tomato_cli.names import LAB_DEPLOYMENT
from tomato_cli.store.results import write_final_results


class StepError(RuntimeError):
    """A technique step failed on its instrument."""


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """The run's logger in Prefect's engine; outside it, the job's own log."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def polling_interval(step: Task) -> float:
    """How often the flow collects samples from the driver (at most 1 s of data at risk)."""
    if step.polling_interval:
        return step.polling_interval
    return min(1.0, max(0.1, step.sampling_interval))


def _wait_trigger(run: JobRun, name: str) -> bool:
    """Wait until the task called ``name`` started; False if the job was cancelled first."""
    event = run.started[name]
    while not event.wait(0.05):
        if run.cancel.is_set() or run.steps_done.is_set():
            return False
    return True


def _collect(run: JobRun, role: str, index: int, conditions: Conditions | None = None) -> int:
    """Store the samples the driver holds; check them against the job's limits and the
    step's ``conditions``."""

    quantity = run.repeat_quantity

    def check(block: Block) -> None:
        run.limits.check_block(role, block)
        if conditions is not None:
            conditions.check_block(role, block)
        if quantity is not None and quantity.until.role == role:
            quantity.add(index, block.uts, block.data.get(quantity.until.variable, []))

    # a job with repeats numbers every sample's repeat (0: a step outside them)
    repeat = {"repeat": run.repeat_no.get(index, 0)} if run.job.payload.repeats else None
    fetch = partial(run.driver_call, role, "task_data")
    n, latest = collect_task_data(fetch, run.store, role, index, check, repeat)
    if n:
        run.samples[role] = run.samples.get(role, 0) + n
        run.latest[role] = latest
    return n


def _start_task(
    run: JobRun, step: Task, role: str, duration: float, stop_when: Conditions
) -> float:
    own = stop_when.on_own()  # the driver host checks them on each sample it takes
    run.driver_call(
        role,
        "task_start",
        technique_name=step.technique_name,
        max_duration=duration,
        sampling_interval=step.sampling_interval,
        task_params=step.task_params,
        **({"stop_when": [c.as_dict() for c in own]} if own else {}),
    )
    return time.monotonic()


@task(cache_policy=NO_CACHE, log_prints=True)
def run_step(run: JobRun, index: int) -> dict[str, Any]:
    """Run method[index] on its component until it ends, is stopped, or the job is cancelled.

    A pause stops the step on the hardware (its data kept); on resume the step runs for
    the rest of its ``max_duration``.
    """
    logger = _logger()
    step = run.job.payload.method[index]
    role = step.component_role
    if step.start_with_task_name and not _wait_trigger(run, step.start_with_task_name):
        return {"samples": 0, "ended": "cancelled before start"}
    if not run.wait_while_paused() or run.cancel.is_set():
        return {"samples": 0, "ended": "cancelled before start"}
    if run.context.conditions.error:
        raise StepError(f"{role}: not started: {run.context.conditions.error}")
    conditions = Conditions(run.context.conditions.of_step(index), role)
    stop_on = run.started.get(step.stop_with_task_name) if step.stop_with_task_name else None
    started = _start_task(run, step, role, step.max_duration, conditions)
    if step.task_name:
        run.started[step.task_name].set()
    logger.info(
        "%s: %s for %.6g s every %.6g s",
        role,
        step.technique_name,
        step.max_duration,
        step.sampling_interval,
    )
    poll = polling_interval(step)
    samples, ended, ran_s = 0, "completed", 0.0
    try:
        while True:
            stop = run.cancel.wait(poll)
            if not stop and stop_on is not None and stop_on.is_set():
                stop, ended = True, f"stopped by task {step.stop_with_task_name!r}"
            if not stop and conditions.check_latest(run.latest, skip=role) is not None:
                stop, ended = True, "condition"
            if stop:
                if ended == "completed":
                    ended = "cancelled"
                run.driver_call(role, "task_stop")
                samples += _collect(run, role, index, conditions)
                break
            samples += _collect(run, role, index, conditions)
            if conditions.met is not None:  # a normal end: the next step goes on
                run.driver_call(role, "task_stop")  # (the driver host may have stopped it)
                samples += _collect(run, role, index, conditions)
                break
            if not run.resumed.is_set():
                run.driver_call(role, "task_stop")  # paused: the instrument stops now
                samples += _collect(run, role, index, conditions)
                ran_s += time.monotonic() - started
                logger.info("%s: paused after %.6g s of %.6g s", role, ran_s, step.max_duration)
                if not run.wait_while_paused():
                    ended = "cancelled"
                    break
                left = step.max_duration - ran_s
                if left < step.sampling_interval:
                    break  # nothing left to sample
                logger.info("%s: resumed for the remaining %.6g s", role, left)
                started = _start_task(run, step, role, left, conditions)
                continue
            status = run.driver_call(role, "task_status")
            if status.get("error"):
                samples += _collect(run, role, index, conditions)  # keep what came before
                raise StepError(f"{role}: {step.technique_name} failed: {status['error']}")
            if not status.get("running"):
                samples += _collect(run, role, index, conditions)
                break
    except ConditionUnitsError as exc:
        run.driver_call(role, "task_stop")
        raise StepError(f"{role}: stop_when: {exc}") from None
    finally:
        if step.task_name:
            run.finished[step.task_name].set()
    if conditions.met is not None:
        ended = conditions.met.describe()
        record(run, conditions.met, index)
    logger.info("%s: %s %s with %d samples", role, step.technique_name, ended, samples)
    return {"samples": samples, "ended": ended}


@task(cache_policy=NO_CACHE)
def reset_components(run: JobRun) -> None:
    for role in run.context.components:
        run.driver_call(role, "reset")


@task(cache_policy=NO_CACHE)
def write_results(run: JobRun, ended: Job) -> tuple[str, str | None]:
    path, problem = write_final_results(run.context, ended)
    return str(path), problem


def _failure(state: Any) -> str:
    """Why a step did not complete: its exception's own words where there is one."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as error:
        exc = error
    return str(exc) if isinstance(exc, BaseException) else str(state.message)


@flow(name="tomato-job", task_runner=ThreadPoolTaskRunner(max_workers=64), persist_result=False)
def tomato_job(jobid: int | None = None, payload: dict[str, Any] | str | None = None):
    """Run one tomato job on the pipeline the daemon's gate granted it.

    A run made in Prefect carries a ``payload``: the daemon turns it into a job, which then
    waits for its pipeline like any other. Run in any other way (a Prefect worker, a
    script), the flow refuses before it touches anything.
    """
    from prefect.runtime import deployment, flow_run

    logger = get_run_logger()
    try:
        context = granted_context(str(flow_run.id))
    except NotGranted as exc:
        logger.error("refused: %s", exc)
        if deployment.name == LAB_DEPLOYMENT:  # a lab job a worker took: back in the queue
            _back_to_lab_queue(str(flow_run.id))
        raise Abort(f"tomato: {exc}") from None
    return _run(JobRun(context), in_engine=True)


def run_outside_engine(context: JobContext) -> None:
    """Run a job the daemon started while Prefect was away, without Prefect's engine: the
    same steps, each in its own thread. Its grant came over the runner's private pipe."""
    if context.grant is None:
        raise NotGranted("a job without the daemon's grant does not run")
    _run(JobRun(context), in_engine=False)


def _run(run: JobRun, in_engine: bool) -> Any:
    """The job: its steps (roles in parallel, each role's steps in order), then its end."""
    payload_ = run.job.payload
    _logger().info(
        "job %s: sample %r on pipeline %r%s",
        run.job.id,
        payload_.sample.identifier,
        run.job.pipeline,
        "" if in_engine else " (outside Prefect's engine: Prefect was away at its start)",
    )
    run.report("r")
    run.watch_mailbox()
    run.limits.watch_while_paused()
    progress = None
    if in_engine:  # the UI's view of the job: artifacts of its flow run
        progress = Progress(run)
        create_plot_artifact(run)
        progress.start()
    errors = _steps_in_engine(run) if in_engine else _steps_outside_engine(run)
    run.steps_done.set()
    return _finish(run, errors, progress, in_engine)


class _EngineSteps:
    """Steps as Prefect task runs of this flow run."""

    def __init__(self, run: JobRun) -> None:
        self.run = run

    def submit(self, index: int, name: str, after: Sequence[Any]) -> Any:
        named = run_step.with_options(task_run_name=name)
        return named.submit(self.run, index, wait_for=list(after) or None)

    def wait(self, handles: Sequence[Any]) -> None:
        wait(list(handles))

    def error(self, handle: Any) -> str | None:
        return None if handle.state.is_completed() else _failure(handle.state)


class _ThreadSteps:
    """Steps in threads, outside Prefect's flow engine: each waits for those before it."""

    def __init__(self, run: JobRun, pool: ThreadPoolExecutor) -> None:
        self.run, self.pool = run, pool

    def submit(self, index: int, name: str, after: Sequence[Any]) -> Any:
        context = contextvars.copy_context()  # the job's log follows it
        return self.pool.submit(context.run, _step_after, self.run, index, name, list(after))

    def wait(self, handles: Sequence[Any]) -> None:
        futures_wait(list(handles))

    def error(self, handle: Any) -> str | None:
        exc = handle.exception()
        return None if exc is None else str(exc)


def _steps_in_engine(run: JobRun) -> list[str]:
    """Each step a Prefect task run; returns why those that did not complete did not."""
    return run_method(run, _EngineSteps(run))


def _steps_outside_engine(run: JobRun) -> list[str]:
    """Each step in a thread of its own; returns why those that did not complete did not."""
    workers = max(1, len(run.job.payload.method))  # a repeat's steps wait for the last's
    with ThreadPoolExecutor(workers, thread_name_prefix="step") as pool:
        return run_method(run, _ThreadSteps(run, pool))


def _step_after(run: JobRun, index: int, name: str, after: list[Future]) -> dict[str, Any]:
    """Run step ``index`` once the steps before it on its role completed."""
    futures_wait(after)
    if any(f.exception() is not None for f in after):
        raise StepError(f"{name}: not run: the step before it on its role did not complete")
    try:
        return run_step.fn(run, index)
    except Exception:
        _logger().exception("step %s failed", name)
        raise


def _back_to_lab_queue(flow_run_id: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    with get_client(sync_client=True) as client:
        waiting = Scheduled(message="waiting for a tomato host (a worker took it)")
        client.set_flow_run_state(flow_run_id, waiting, force=True)


def _finish(run: JobRun, errors: list[str], progress: Progress | None, in_engine: bool) -> Any:
    """Reset the components, write the results, tell the daemon; the flow run's state."""
    reset, write = (
        (reset_components, write_results) if in_engine else (reset_components.fn, write_results.fn)
    )
    try:
        reset(run)
    except Exception as exc:
        errors.append(f"reset failed: {exc}")
    end_as, reason = run.end_as
    if errors:
        outcome, why = "ce", "; ".join(errors)
    elif run.cancel.is_set() and end_as == "c":  # a limit (end_when) ended it: its log says
        outcome, why = "c", None
    elif run.cancel.is_set():
        outcome, why = (end_as, reason) if end_as == "ce" else ("cd", "cancelled")
    else:
        outcome, why = "c", None
    ended = run.job.ended(outcome, why)  # type: ignore[arg-type]
    try:
        path, problem = write(run, ended)
        if problem:
            errors.append(problem)
    except Exception as exc:
        errors.append(f"writing results failed: {exc}")
        path = None
    run.store.close()
    total = sum(run.samples.values())
    # the daemon hears the end first: Prefect calls below may wait for an absent server
    if errors:
        message = "; ".join(errors)
        run.report("ce", message)
        state = Failed(message=message)
    elif run.cancel.is_set() and end_as == "ce":
        run.report("ce", reason)
        state = Failed(message=f"{reason}; {total} samples kept in {path}")
    elif run.cancel.is_set() and end_as == "c":
        run.report("c")
        state = Completed(message=f"{reason}; {total} samples written to {path}")
    elif run.cancel.is_set():
        run.report("cd", "cancelled")
        state = Cancelled(message=f"cancelled; {total} samples kept in {path}")
    else:
        run.report("c")
        state = Completed(message=f"{total} samples written to {path}")
    if progress is not None:
        progress.finish()
    return state
