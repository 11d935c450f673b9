"""Scenario m (ours only): a stop condition checked on every sample at 1 ms sampling.

A job of two steps: ``count`` at 1 ms with ``stop_when: "val >= 5"`` (the counter gives
the whole seconds since the step started, so the condition first holds on sample 5000),
then ``random`` (values 100-200) for 1 s. Beside it, the same ``count`` step for 5 s
without a condition, as in scenario d. tomato 2.2 has no conditions: nothing to compare.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.core import FINAL, new_world, wait_jobs
from bench.stats import Row, row
from bench.world import World, log

INTERVAL = 0.001
CROSSING_S = 5.0  # val >= 5 first holds this long after the step starts


def _payload(path: Path, condition: bool) -> Path:
    count: dict[str, Any] = {
        "component_role": "counter",
        "technique_name": "count",
        "max_duration": 30.0 if condition else CROSSING_S,
        "sampling_interval": INTERVAL,
    }
    method = [count]
    if condition:
        count["stop_when"] = "val >= 5"
        method.append(
            {
                "component_role": "counter",
                "technique_name": "random",
                "max_duration": 1.0,
                "sampling_interval": INTERVAL,
                "task_params": {"min": 100, "max": 200},
            }
        )
    doc = {"version": "tomato-prefect-1", "sample": {"identifier": "bench-m"}, "method": method}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _values(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import xarray as xr

    with xr.open_datatree(path) as dt:
        return dt["counter"]["uts"].values.astype(float), dt["counter"]["val"].values


def _one(world: World, payload: Path) -> tuple[np.ndarray, np.ndarray]:
    world.prepare("pip-counter-1", "bench-m")
    time.sleep(1)
    jobid, _ = world.submit(payload)
    jobs, _ = wait_jobs(world, [jobid], FINAL, timeout=180)
    job = jobs.get(jobid, {})
    if job.get("status") != "c":
        raise RuntimeError(f"m: job {jobid} ended {job.get('status')}: {job.get('error')}")
    return _values(Path(job["respath"]))


def scenario_m(repeats: int) -> list[Row]:
    m: dict[str, list[float]] = {}
    world = new_world("ours")
    try:
        world.start()
        world.wait_usable()
        with_cond = _payload(world.workdir / "m-cond.yml", True)
        without = _payload(world.workdir / "m-plain.yml", False)
        for i in range(repeats):
            uts, val = _one(world, with_cond)
            step0 = val < 100
            u0, v0 = uts[step0], val[step0]
            crossing = int(np.argmax(v0 >= 5))  # the first sample that meets the condition
            after = len(v0) - crossing - 1  # samples of the step taken after it
            m.setdefault("kept", []).append(100.0 * (crossing + 1) / (CROSSING_S / INTERVAL))
            m.setdefault("after", []).append(float(after))
            m.setdefault("cross_at", []).append(u0[crossing] - (u0[0] - INTERVAL))
            m.setdefault("next", []).append(float(uts[~step0][0] - u0[-1]))
            plain_uts, _ = _one(world, without)
            m.setdefault("plain", []).append(100.0 * len(plain_uts) / (CROSSING_S / INTERVAL))
            log(
                f"m #{i}: {crossing + 1} samples to the crossing, {after} after it, crossing "
                f"at {m['cross_at'][-1]:.4f} s, next step's first sample "
                f"{m['next'][-1] * 1000:.1f} ms later; without the condition "
                f"{len(plain_uts)} samples in 5 s"
            )
    finally:
        world.teardown()
    note = "ours only: tomato 2.2 has no conditions"
    return [
        row(
            "m",
            "samples kept up to the crossing, % of ideal (1 ms, `stop_when: val >= 5`)",
            m.get("kept"),
            note=note,
            fmt="{:.2f}",
        ),
        row("m", "the same 5 s step without a condition, % of ideal", m.get("plain"), fmt="{:.2f}"),
        row(
            "m",
            "samples taken after the one that met the condition",
            m.get("after"),
            fmt="{:.0f}",
            note="the driver host's sampler checks each sample and ends the task on it",
        ),
        row("m", "the crossing sample, s after the step's start", m.get("cross_at"), fmt="{:.4f}"),
        row(
            "m",
            "crossing → the next step's first sample (s)",
            m.get("next"),
            fmt="{:.3f}",
            note="the flow collects (every 0.1 s at 1 ms), stops, starts the next task; + 1 ms",
        ),
    ]
