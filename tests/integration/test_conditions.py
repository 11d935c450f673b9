"""Methods that react to their data: a step's ``stop_when`` and a job's ``end_when``,
against a real daemon, its driver hosts and its Prefect server.

The built-in counter's ``count`` gives the whole seconds since the step started (at 1 s
sampling: 1, 2, 3, ... one more per sample); ``random`` draws in [min, max]. One daemon
for the module; each test uses its own pipeline and sample.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import netCDF4
import numpy as np
import pytest
import xarray as xr
import yaml

from tests.integration.harness import Tomato, eventually, running
from tests.integration.waits import wait_stored

DEVICES = {
    "devices": [
        {
            "name": "dev-cond",
            "driver": "example_counter",
            "address": "cond-addr",
            "channels": [str(i) for i in range(1, 6)],
        },
        {"name": "dev-psutil", "driver": "psutil", "address": "psutil-addr", "channels": ["1"]},
    ],
    "pipelines": [
        {
            "name": "cond-*",
            "devices": [{"role": "counter", "device": "dev-cond", "channel": "each"}],
        },
        {
            "name": "cond-mixed",
            "devices": [
                {"role": "counter", "device": "dev-cond", "channel": "5"},
                {"role": "psutil", "device": "dev-psutil", "channel": "1"},
            ],
        },
    ],
}
VERSION = "tomato-prefect-1"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tomato]:
    with running(tmp_path_factory.mktemp("cond"), DEVICES) as tomato:
        yield tomato


def step(technique: str, duration: float, interval: float, **extra: Any) -> dict[str, Any]:
    return {
        "component_role": "counter",
        "technique_name": technique,
        "max_duration": duration,
        "sampling_interval": interval,
        **extra,
    }


def payload(sample: str, *steps: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"version": VERSION, "sample": {"identifier": sample}, "method": list(steps), **top}


def submit(lab: Tomato, data: dict[str, Any]) -> int:
    path = lab.root / f"payload-{time.monotonic_ns()}.yml"
    path.write_text(yaml.safe_dump(data))
    return int(lab.ok("ketchup", "submit", str(path), cwd=lab.root)["id"])


def values(respath: str) -> tuple[np.ndarray, np.ndarray]:
    with xr.open_datatree(respath) as dt:
        return dt["counter"]["uts"].values.astype(float), dt["counter"]["val"].values


def conditions_attr(respath: str) -> list[dict[str, Any]]:
    with netCDF4.Dataset(respath) as nc:
        return json.loads(nc.getncattr("tomato_conditions"))


def events(lab: Tomato, name: str, jobid: int) -> list[dict[str, Any]]:
    body = {"filter": {"event": {"name": [name]}}, "limit": 50}
    found = httpx.post(f"{lab.api_url}/events/filter", json=body).json()["events"]
    return [e for e in found if e["resource"]["tomato.job.id"] == str(jobid)]


def flow_run_log(lab: Tomato, flow_run_id: str) -> str:
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200}
    return "\n".join(
        r["message"] for r in httpx.post(f"{lab.api_url}/logs/filter", json=body).json()
    )


def test_a_step_stops_on_the_sample_that_meets_its_condition_and_the_next_step_runs(
    lab: Tomato,
) -> None:
    lab.prepare("cond-1", "stop-at-20")
    jobid = submit(
        lab,
        payload(
            "stop-at-20",
            step("count", 60, 1.0, stop_when="val >= 20"),
            step("random", 2, 0.5, task_params={"min": 100, "max": 200}),
        ),
    )
    done = lab.wait_job(jobid, timeout=180)
    assert done["status"] == "c", done
    _, val = values(done["respath"])
    counted = val[val < 100]
    # it stops on the sample with 20: not at 19, not 20 samples later
    assert counted[-1] == 20 and (counted[:-1] < 20).all(), counted
    assert len(val[val >= 100]) == 4, "the next step ran its course"
    [met] = conditions_attr(done["respath"])
    assert (met["step"], met["condition"], met["variable"], met["value"]) == (
        0,
        "val >= 20",
        "val",
        20,
    )
    log = (Path(done["jobpath"]) / "job.log").read_text()
    assert "condition 'val >= 20' met: counter.val = 20" in log
    assert "condition 'val >= 20' met" in flow_run_log(lab, done["flow_run_id"])
    [event] = eventually(
        lambda: events(lab, "tomato.step.condition_met", jobid), 60, "the event in Prefect"
    )
    assert event["payload"]["condition"] == "val >= 20" and event["payload"]["step"] == 0
    assert (event["payload"]["variable"], event["payload"]["value"]) == ("val", 20)


def test_a_condition_with_for_holds_off_brief_crossings_and_fires_on_a_held_one(
    lab: Tomato,
) -> None:
    lab.prepare("cond-2", "held")
    # random in [0, 10] at 0.1 s: above 5 about every other sample, never for 2 s on end
    # (the chance of 20 in a row is one in a million); in [16, 20] it always holds
    brief = {"min": 0, "max": 10}
    always = {"min": 16, "max": 20}
    jobid = submit(
        lab,
        payload(
            "held",
            step("random", 4, 0.1, task_params=brief, stop_when="val > 5 for 2 s"),
            step("random", 20, 0.1, task_params=always, stop_when="val > 5 for 2 s"),
        ),
    )
    done = lab.wait_job(jobid, timeout=180)
    assert done["status"] == "c", done
    uts, val = values(done["respath"])
    first, held = val <= 10, uts[val >= 16]
    assert (val[first] > 5).any() and (val[first] <= 5).any(), "it crossed 5 and back"
    assert uts[first][-1] - uts[first][0] >= 3.8, "the first step ran its 4 s all the same"
    [met] = conditions_attr(done["respath"])
    assert met["step"] == 1, met
    # it fired on the first sample at which it had held for 2 s, and took no sample after
    assert held[-1] - held[0] >= 2.0 - 1e-6 and held[-2] - held[0] < 2.0, held - held[0]
    assert met["uts"] == pytest.approx(held[-1])


def test_a_job_level_limit_ends_a_paused_job(lab: Tomato) -> None:
    """While a job is paused no samples come: its limits are checked on its components'
    current values. Here the psutil role takes no samples before the pause (its step waits
    for a later one), so only that check can see its limit, which holds at once."""
    lab.prepare("cond-mixed", "limit")
    psutil_step = {
        "component_role": "psutil",
        "technique_name": "all_info",
        "max_duration": 5,
        "sampling_interval": 1,
        "start_with_task_name": "later",
    }
    jobid = submit(
        lab,
        payload(
            "limit",
            step("count", 120, 0.2, task_name="first"),
            step("count", 60, 0.2, task_name="later"),
            psutil_step,
            end_when=["counter.val > 1000", "psutil.mem_total > 1 kB"],
        ),
    )
    job = lab.wait_job(jobid, ("r",), timeout=60)
    kept = wait_stored(lab, jobid, 5)
    lab.ok("ketchup", "pause", str(jobid))
    # rp may last less than a poll of `ketchup status` on a busy machine: the job's own log
    # says that it paused, and that the limit ended it after that (the limit may be seen
    # before the running step notices the pause, so the job's line, not the step's)
    done = lab.wait_job(jobid, timeout=60)
    assert done["status"] == "c", done
    log = (Path(done["jobpath"]) / "job.log").read_text()
    paused = log.index(f"job {jobid}: paused")
    assert paused < log.index("condition 'psutil.mem_total > 1 kB' met"), log
    _, val = values(done["respath"])
    assert len(val) >= kept, "every sample is kept"
    [met] = conditions_attr(done["respath"])
    assert (met["step"], met["role"], met["variable"]) == (None, "psutil", "mem_total"), met
    assert met["value"] > 1000

    def completed_message() -> str | None:
        run = httpx.get(f"{lab.api_url}/flow_runs/{job['flow_run_id']}").json()
        return run["state"]["message"] if run["state"]["type"] == "COMPLETED" else None

    message = eventually(completed_message, 60, "Prefect shows it completed, and why")
    assert "ended by end_when: condition 'psutil.mem_total > 1 kB' met" in message
    [event] = eventually(lambda: events(lab, "tomato.job.condition_met", jobid), 60)
    assert event["payload"]["condition"] == "psutil.mem_total > 1 kB"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"stop_when": "volts >= 3"}, "'counter' has no variable 'volts'"),
        (
            {"stop_when": "val > 3 V"},
            "volt cannot be compared with counter.val, which has no units",
        ),
        ({"stop_when": "param > 3"}, "give units: counter.param is in s"),
        ({"stop_when": "choice > 3"}, "'counter' has no variable 'choice'"),
        ({"stop_when": "val > " + "9" * 200}, "at most 120 characters"),
        ({"stop_when": [["val > 3"]]}, "a condition is a string, not list"),
        ({"stop_when": "__import__('os').system('x') > 1"}, "cannot read condition"),
        ({"stop_when": ["val > 1"] * 9}, "at most 8 conditions"),
        ({"stop_when": "other.val > 1"}, "the job has no role 'other'"),
        ({"stop_when": "val > 1 for 0 s"}, "'for' must be more than 0 s"),
    ],
)
def test_bad_conditions_are_refused_at_submit_and_nothing_is_queued(
    lab: Tomato, change: dict[str, Any], reason: str
) -> None:
    before = len(lab.ok("ketchup", "status", "--all"))
    data = payload("bad", step("count", 5, 1.0, **change))
    path = lab.root / f"bad-{time.monotonic_ns()}.yml"
    path.write_text(yaml.safe_dump(data))
    msg = lab.fails("ketchup", "submit", str(path))
    assert reason in msg, msg
    assert len(lab.ok("ketchup", "status", "--all")) == before


def test_conditions_need_the_payload_version_of_tomato_prefect(lab: Tomato) -> None:
    data = payload("v22", step("count", 5, 1.0, stop_when="val > 3"))
    data["version"] = "2.2"
    path = lab.root / "v22.yml"
    path.write_text(yaml.safe_dump(data))
    msg = lab.fails("ketchup", "submit", str(path))
    assert "method[0].stop_when is new in tomato-prefect: give the payload version" in msg
    limits = payload("v22", step("count", 5, 1.0), end_when=["counter.val > 3"])
    limits["version"] = "2.2"
    path.write_text(yaml.safe_dump(limits))
    assert "end_when is new in tomato-prefect" in lab.fails("ketchup", "submit", str(path))


def repeat_data(respath: str) -> tuple[np.ndarray, np.ndarray]:
    with xr.open_datatree(respath) as dt:
        return dt["counter"]["repeat"].values, dt["counter"]["val"].values


def test_a_repeat_ends_by_its_until_on_a_quantity_computed_from_each_repeat(lab: Tomato) -> None:
    """``noisy`` draws 10 values in [20, 30]: its max passes 29.5 in about 2 repeats of
    5 (1 - 0.95**10); the group stops after the first repeat in which it did."""
    lab.prepare("cond-4", "repeats")
    jobid = submit(
        lab,
        payload(
            "repeats",
            step("count", 0.5, 0.1, task_name="up"),
            step("random", 1.0, 0.1, task_name="noisy", task_params={"min": 20, "max": 30}),
            step("count", 0.5, 0.1, task_name="after"),
            repeats=[{"steps": ["up", "noisy"], "times": 60, "until": "max(val, noisy) > 29.5"}],
        ),
    )
    done = lab.wait_job(jobid, timeout=600)
    assert done["status"] == "c", done
    repeat, val = repeat_data(done["respath"])
    last = int(repeat.max())
    assert sorted(set(repeat.tolist())) == list(range(last + 1)), "0 for the step after"
    assert ((repeat == 0) == (np.arange(len(repeat)) >= len(repeat) - 5)).all()
    for number in range(1, last + 1):
        noisy = val[(repeat == number) & (val >= 20)]
        assert len(noisy) == 10 and len(val[(repeat == number) & (val < 20)]) == 5
        assert (noisy.max() > 29.5) == (number == last), (number, noisy.max())
    [met] = conditions_attr(done["respath"])
    assert (met["repeat"], met["condition"]) == (last, "max(val, noisy) > 29.5")
    assert met["value"] == pytest.approx(val[(repeat == last) & (val >= 20)].max())


def test_each_repeat_shows_its_steps_as_tasks_in_prefect_and_cancel_ends_the_repeats(
    lab: Tomato,
) -> None:
    lab.prepare("cond-5", "cancel-repeats")
    jobid = submit(
        lab,
        payload(
            "cancel-repeats",
            step("count", 1.0, 0.1, task_name="a"),
            step("count", 1.0, 0.1, task_name="b"),
            repeats=[
                {"steps": ["a", "b"], "times": 1000, "until": "integral(val, a) < 50 % of first"}
            ],
        ),
    )
    job = lab.wait_job(jobid, ("r",), timeout=60)

    def task_runs() -> list[str]:
        body = {"flow_runs": {"id": {"any_": [job["flow_run_id"]]}}, "limit": 200}
        runs = httpx.post(f"{lab.api_url}/task_runs/filter", json=body).json()
        return sorted(r["name"] for r in runs)

    eventually(lambda: "b #3" in task_runs(), 120, "three repeats shown as task runs")
    lab.ok("ketchup", "cancel", str(jobid))
    done = lab.wait_job(jobid, timeout=60)
    assert done["status"] == "cd", done
    names = task_runs()
    assert {"a #1", "b #1", "a #2", "b #2", "a #3", "b #3"} <= set(names), names
    repeat, _ = repeat_data(done["respath"])
    assert 3 <= repeat.max() < 1000 and repeat.min() >= 1
    assert "a #1000" not in names


@pytest.mark.parametrize(
    ("repeats", "reason"),
    [
        ([{"steps": ["x"], "times": 2}], "repeats[0].steps: no step has task_name 'x'"),
        ([{"steps": ["b", "a"], "times": 2}], "must be consecutive steps of the method"),
        ([{"steps": ["a"], "times": 0}], "greater than or equal to 1"),
        ([{"steps": ["a"], "times": "many"}], "valid integer"),
        ([{"steps": ["a"], "times": 2, "until": "max(volts) > 1"}], "has no variable 'volts'"),
        ([{"steps": ["a"], "times": 2, "until": "integral(val) > 3"}], "give units"),
        ([{"steps": ["a"], "times": 2, "until": "integral(val) > 3 V"}], "cannot be compared"),
        ([{"steps": ["a"], "times": 2, "until": "max(val, b) > 3"}], "the repeat has no step 'b'"),
        ([{"steps": ["a"], "times": 2, "until": "eval(val) > 3"}], "cannot read until"),
        ([{"steps": ["a"], "times": 2}, {"steps": ["a"], "times": 2}], "in one repeat only"),
    ],
)
def test_bad_repeats_are_refused_at_submit_and_nothing_is_queued(
    lab: Tomato, repeats: list[dict[str, Any]], reason: str
) -> None:
    before = len(lab.ok("ketchup", "status", "--all"))
    data = payload(
        "bad",
        step("count", 1, 0.1, task_name="a"),
        step("count", 1, 0.1, task_name="b"),
        repeats=repeats,
    )
    path = lab.root / f"bad-{time.monotonic_ns()}.yml"
    path.write_text(yaml.safe_dump(data))
    msg = lab.fails("ketchup", "submit", str(path))
    assert reason in msg, msg
    assert len(lab.ok("ketchup", "status", "--all")) == before
