"""The live view of one job: step progress, times and latest values from its samples."""

from __future__ import annotations

from typing import Any

from tomato_cli.cli.watch import EXIT_CODES, JobWatch, clock, view

T0 = 1_800_000_000.0


def job(status: str = "r", **extra: Any) -> dict[str, Any]:
    step = {"technique_name": "count", "sampling_interval": 1}
    return {
        "id": 3,
        "status": status,
        "pipeline": "pip-1",
        "launched_at": "2027-01-15T08:00:00+00:00",
        "payload": {
            "sample": {"identifier": "s1"},
            "method": [
                {**step, "component_role": "a", "max_duration": 10},
                {**step, "component_role": "a", "max_duration": 20, "task_name": "second"},
                {**step, "component_role": "b", "max_duration": 40},
            ],
        },
        **extra,
    }


def test_steps_wait_run_and_end_in_order() -> None:
    watch = JobWatch(job())
    assert [s.name for s in watch.steps] == ["0-count", "second", "2-count"]
    watch.add("a", [T0 + 1, T0 + 2], {"val": [1, 2]}, {"val": None}, step=0)
    lines = watch.lines(now=T0 + 6)
    assert [(line.state, line.elapsed) for line in lines] == [
        ("running", 5.0),
        ("waiting", 0.0),
        ("waiting", 0.0),
    ]
    assert lines[0].fraction == 0.5
    # left: 5 s of step 0 and all 20 s of step 1 on role a; 40 s on role b
    assert watch.remaining(T0 + 6) == 40.0
    watch.add("a", [T0 + 11], {"val": [3]}, {"val": None}, step=1)
    watch.add("b", [T0 + 11], {"t": [21.5]}, {"t": "degC"}, step=2)
    lines = watch.lines(now=T0 + 21)
    assert [(line.state, line.fraction) for line in lines] == [
        ("done", 1.0),
        ("running", 0.5),
        ("running", 0.25),
    ]
    assert watch.remaining(T0 + 21) == 30.0
    assert watch.latest == {"a": {"val": (3, None)}, "b": {"t": (21.5, "degC")}}


def test_an_ended_job_shows_what_ran_and_what_did_not() -> None:
    watch = JobWatch(job())
    watch.add("a", [T0 + 1, T0 + 4], {"val": [1, 2]}, {}, step=0)
    watch.job = job("cd", completed_at="2027-01-15T08:00:30+00:00")
    lines = watch.lines(now=T0 + 100)
    assert [line.state for line in lines] == ["done", "not run", "not run"]
    assert lines[0].fraction == 0.3  # cancelled after 3 of 10 s
    assert watch.remaining(T0 + 100) is None
    assert watch.elapsed(T0 + 100) == 30.0


def test_view_renders_bars_times_and_values() -> None:
    from rich.console import Console

    watch = JobWatch(job(error=None))
    watch.add("a", [T0 + 1], {"val": [1.23456789]}, {"val": "V"}, step=0)
    console = Console(width=120, record=True, file=open("/dev/null", "w"))
    console.print(view(watch, T0 + 6, note="the tomato daemon on port 1 does not answer"))
    text = console.export_text()
    assert "job 3" in text and "status r" in text
    assert "0:00:05 / 0:00:10" in text and " 50%" in text
    assert "1.23457" in text and "V" in text
    assert "does not answer" in text


def test_a_trace_is_summed_up_not_printed() -> None:
    import numpy as np

    watch = JobWatch(job())
    watch.add("a", [T0, T0 + 1], {"s11": np.zeros((2, 1000)), "t": np.array([1.5, 2.5])}, {}, 0)
    assert watch.latest["a"] == {"s11": ("trace of 1000 values", None), "t": (2.5, None)}


def test_clock_and_exit_codes() -> None:
    assert clock(None) == "-"
    assert clock(59.6) == "0:01:00"
    assert clock(90061) == "1d 1:01:01"
    assert EXIT_CODES == {"c": 0, "ce": 3, "cd": 4}
