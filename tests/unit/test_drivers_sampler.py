"""Sampler scheduling, in process."""

from __future__ import annotations

import threading
import time
from typing import Any

from drivers.example_counter import ExampleCounterDriver
from drivers.sampler import Sampler, sample_count


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
    time.sleep(1.2)
    status = runner.status()
    assert status["done"] and not status["running"] and status["error"] is None
    uts, rows = runner.drain()
    assert len(uts) == 10
    assert [row["val"] for row in rows] == [0] * 9 + [1]
    assert set(rows[0]) == {"val", "max", "min", "param", "choice"}
    assert runner.drain() == ([], [])


def test_stop_is_prompt() -> None:
    runner = _runner(60, 0.5)
    runner.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    runner.stop()
    assert time.monotonic() - t0 < 0.2
    assert runner.status()["stopped"] and runner.done


def test_measure_error_ends_task() -> None:
    runner = _runner(5, 0.01)

    def broken(technique: str, elapsed: float) -> dict[str, Any]:
        raise RuntimeError("sensor unplugged")

    runner.component.measure = broken  # type: ignore[method-assign]
    runner.start()
    time.sleep(0.1)
    status = runner.status()
    assert not status["running"]
    assert status["error"] == "RuntimeError: sensor unplugged"


def test_late_slots_caught_up_or_skipped() -> None:
    hang_lock = threading.Lock()
    comp = ExampleCounterDriver({}).create_component("a", "1")
    runner = Sampler(
        "a,1", comp, "count", 1.0, 0.01, hang_lock, threading.RLock(), catchup_window=0.2
    )
    with hang_lock:
        runner.start()
        time.sleep(0.5)  # a stall of ~50 slots: ~20 are skipped, the rest caught up
    time.sleep(0.7)
    status = runner.status()
    assert status["done"]
    assert 20 <= status["missed"] <= 35
    assert status["samples"] + status["missed"] == 100
    uts, _ = runner.drain()
    assert all(b > a for a, b in zip(uts, uts[1:], strict=False))


def test_buffer_is_bounded() -> None:
    runner = _runner(0.2, 0.001, buffer_limit=50)
    runner.start()
    time.sleep(0.4)
    status = runner.status()
    assert status["buffered"] == 50
    assert status["dropped"] == status["samples"] - 50 > 0
