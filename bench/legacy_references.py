"""Write the tomato 2.2 results files that the legacy-driver tests compare against.

Usage: ``python -m bench.legacy_references <bin folder of a venv with tomato 2.2 and
tomato-example-counter, tomato-example-trig, tomato-psutil> [out folder]``. It runs each
payload of :data:`CASES` on tomato 2.2 and copies its results file to
``tests/data/tomato22_<case>.nc``. The tests run the same payloads on the same driver
packages through our daemon and compare variables, dimensions, coordinates and units.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from bench.world import World

CASES: dict[str, dict[str, Any]] = {
    "example_counter": {
        "driver": "example_counter",
        "technique": "random",
        "params": {"min": 5, "max": 6, "param": "2 s", "choice": "blue"},
    },
    "example_trig": {
        "driver": "example_trig",
        "technique": "trig_function",
        "params": {"points": 20, "function": "cos"},
    },
    "psutil": {"driver": "psutil", "technique": "all_info", "params": {}},
}
DURATION_S = 2.0
INTERVAL_S = 0.5


def payload(case: str) -> dict[str, Any]:
    """The payload of one case: one step of 2 s at 0.5 s on the role named after the case."""
    spec = CASES[case]
    return {
        "version": "2.2",
        "sample": {"identifier": f"s-{case}"},
        "user": {"identifier": "tests"},  # tomato 2.2 requires it in version-2.2 payloads
        "method": [
            {
                "component_role": case,
                "technique_name": spec["technique"],
                "max_duration": DURATION_S,
                "sampling_interval": INTERVAL_S,
                "task_params": spec["params"],
            }
        ],
    }


def devices(driver_names: dict[str, str]) -> dict[str, Any]:
    """One device and pipeline per case; ``driver_names`` maps case -> driver name to use."""
    return {
        "devices": [
            {"name": f"dev-{c}", "driver": d, "address": f"{c}-addr", "channels": ["1"]}
            for c, d in driver_names.items()
        ],
        "pipelines": [
            {"name": f"pip-{c}", "devices": [{"role": c, "device": f"dev-{c}", "channel": "1"}]}
            for c in driver_names
        ],
    }


def main() -> None:
    bin_dir = Path(sys.argv[1]).resolve()
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parents[1] / "tests" / "data"
    world = World("theirs")
    world.bin = bin_dir
    world.env["PATH"] = f"{bin_dir}:{world.env['PATH']}"
    try:
        world.init(yaml.safe_dump(devices({c: s["driver"] for c, s in CASES.items()})))
        world.start()
        world.wait_usable()
        for case in CASES:
            world.prepare(f"pip-{case}", f"s-{case}")
            path = world.workdir / f"{case}.yml"
            path.write_text(yaml.safe_dump(payload(case)))
            jobid, _ = world.submit(path)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                job = world.jobs(jobid)[0]
                if job["status"] in ("c", "ce", "cd"):
                    break
                time.sleep(0.5)
            assert job["status"] == "c", job
            shutil.copy(world.result_path(job), out / f"tomato22_{case}.nc")
            print(f"{case}: job {jobid} -> {out / f'tomato22_{case}.nc'}")
    finally:
        world.teardown()


if __name__ == "__main__":
    main()
