"""Sampler scheduling, in process."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from drivers.example_counter import ExampleCounterDriver
from drivers.sampler import Sampler, sample_count

# Bounds on waits for a sampler thread: generous, for a machine whose cores another
# process keeps busy; a passing run returns as soon as the thread is done.
DONE_S = 30.0


def _done(runner: Sampler) -> dict[str, Any]:
    """The status once the sampling thread has ended (its task done, stopped or failed)."""
    deadline = time.monotonic() + DONE_S
    while not runner.done:
        assert time.monotonic() < deadline, runner.status()
        time.sleep(0.01)
    return runner.status()


def _runner(duration: float, interval: float, **kwargs: Any) -> Sampler:
    comp = ExampleCounterDriver({}).create_component("a", "1")
    return Sampler(
        "a,1", comp, "count", duration, interval, threading.Lock(), threading.RLock(), **kwargs
    )


def test_sample_count_rule() -> None:
    assert sample_count(1.0, 0.1) == 10
    assert sample_count(0.3, 0.1) == 3
    assert sample_count(2.0, 0.01) == 200
    assert sample_count(1.05, 0.1) == 10
    assert sample_count(0.05, 0.1) == 0


def test_counts_like_reference() -> None:
    runner = _runner(1.0, 0.1)
    runner.start()
    status = _done(runner)
    assert status["done"] and not status["running"] and status["error"] is None
    uts, rows = runner.drain()
    assert len(uts) == 10
    assert [row["val"] for row in rows] == [0] * 9 + [1]
    assert set(rows[0]) == {"val", "max", "min", "param", "choice"}
    assert runner.drain() == ([], [])


def test_stop_is_prompt() -> None:
    # slots 60 s apart: a sampler that finished its wait for the next slot before it looked
    # at the stop would take 60 s; a prompt one ends at once (5 s: a busy machine's delay)
    runner = _runner(600, 60)
    runner.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    runner.stop(timeout=5)
    assert time.monotonic() - t0 < 5
    assert runner.status()["stopped"] and runner.done


def test_measure_error_ends_task() -> None:
    runner = _runner(5, 0.01)

    def broken(technique: str, elapsed: float) -> dict[str, Any]:
        raise RuntimeError("sensor unplugged")

    runner.component.measure = broken  # type: ignore[method-assign]
    runner.start()
    status = _done(runner)  # the first sample fails: the task ends, not its 5 s
    assert not status["running"]
    assert status["error"] == "RuntimeError: sensor unplugged"


def test_late_slots_caught_up_or_skipped() -> None:
    hang_lock = threading.Lock()
    comp = ExampleCounterDriver({}).create_component("a", "1")
    readings: list[float] = []

    def clock() -> float:  # the wall clock of the samples' stamps; its first reading is
        readings.append(now := time.time())  # the sampler's own start
        return now

    runner = Sampler(
        "a,1",
        comp,
        "count",
        1.0,
        0.01,
        hang_lock,
        threading.RLock(),
        catchup_window=0.2,
        clock=clock,
    )
    with hang_lock:
        runner.start()
        time.sleep(0.5)  # a stall of ~50 slots: ~30 are skipped, the rest caught up
    status = _done(runner)
    assert status["samples"] + status["missed"] == 100
    uts, _ = runner.drain()
    assert all(b > a for a, b in zip(uts, uts[1:], strict=False))
    # How many slots the stall made overdue by more than the catch-up window follows from
    # how long it lasted as the sampler saw it, not from the 0.5 s asked for (a busy machine
    # stretches it, and may start the sampler's thread late): the first sample waited for
    # the lock, so it is stamped at the stall's end. Slot n is due n * 0.01 s after the
    # start; the sampler looks at slot 2 right after that stamp and skips the slots overdue
    # by more than 0.2 s, then catches up the other ~20.
    stall = uts[0] - readings[0]
    overdue = math.floor((stall - 0.2 - 0.02) / 0.01) + 1
    assert overdue >= 20  # the stall was long enough to test a skip
    # +-1: the sampler reads its clock for slot 2 a moment after the first stamp
    assert overdue - 1 <= status["missed"] <= overdue + 1, (status["missed"], stall)


def test_buffer_is_bounded() -> None:
    runner = _runner(0.2, 0.001, buffer_limit=50)
    runner.start()
    status = _done(runner)
    assert status["buffered"] == 50
    assert status["dropped"] == status["samples"] - 50 > 0


def test_a_stop_condition_ends_the_task_on_the_sample_that_meets_it() -> None:
    """``count`` at 10 ms gives 0 for 99 samples, then 1: the task ends on sample 100,
    as a task that ran its course (not stopped, no error), with nothing after it."""
    from tomato_cli.models.conditions import Bound

    cond = Bound("val >= 1", "counter", "val", ">=", 1.0, None)
    runner = _runner(60.0, 0.01, stop_when=[cond])
    runner.start()
    status = _done(runner)
    assert status["error"] is None and not status["stopped"]
    assert status["condition"]["text"] == "val >= 1" and status["condition"]["value"] == 1
    uts, rows = runner.drain()
    # 0 on every sample before it, 1 on the last: the task ended on the first sample that
    # met it. How many came before depends on the slots a busy machine made the sampler
    # skip (its catch-up rule), 99 on an idle one.
    assert len(rows) > 1
    assert [row["val"] for row in rows] == [0] * (len(rows) - 1) + [1]
    assert status["condition"]["uts"] == uts[-1]
