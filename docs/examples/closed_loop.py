"""A closed loop in a Prefect flow: run a short counter job, read its data, and choose the
next job's parameter from it (docs/usage.md, "Closed loops from Python / Prefect").

Run it with Prefect's API set to the daemon's (`prefect.api_url` in `tomato status -y`),
so that the jobs' flow runs show as sub-runs of this flow's run:

    PREFECT_API_URL=http://127.0.0.1:4200/api python closed_loop.py --sample my-sample

The pipeline must hold the sample and be ready (`tomato pipeline load`, `ready`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from prefect import flow, get_run_logger

from tomato_cli.client import connect


def counter_payload(sample: str, technique: str, **task_params: float) -> dict[str, Any]:
    """Two seconds of one technique on the pipeline's ``counter``; the pipeline is ready
    again afterwards (``unlock_when_done``), so that the next job can start on it."""
    step = {
        "component_role": "counter",
        "technique_name": technique,
        "max_duration": 2.0,
        "sampling_interval": 0.1,
        "task_params": task_params,
    }
    return {
        "version": "2.2",
        "sample": {"identifier": sample},
        "method": [step],
        "settings": {"unlock_when_done": True},
    }


@flow(name="closed-loop")
def closed_loop(sample: str, port: int = 1234, appdir: str | None = None) -> dict[str, Any]:
    """Count for 2 s; then draw random numbers up to one more than the highest count."""
    log = get_run_logger()
    daemon = connect(port=port, appdir=appdir)

    first = daemon.submit(counter_payload(sample, "count"))
    if (status := first.wait(timeout=600)) != "c":
        raise RuntimeError(f"job {first.jobid} ended {status}")
    peak = float(first.results()["counter"]["val"].max())
    log.info("job %s counted up to %s", first.jobid, peak)

    # the next experiment, chosen from the last one's data
    second = daemon.submit(counter_payload(sample, "random", min=0.0, max=peak + 1))
    if (status := second.wait(timeout=600)) != "c":
        raise RuntimeError(f"job {second.jobid} ended {status}")
    drawn = second.results()["counter"]["val"]
    log.info("job %s drew %d numbers up to %s", second.jobid, drawn.size, peak + 1)
    return {"jobs": [first.jobid, second.jobid], "peak": peak, "drawn_max": float(drawn.max())}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", required=True, help="The sample loaded into the pipeline.")
    parser.add_argument("--port", type=int, default=1234, help="The daemon's port.")
    parser.add_argument("--appdir", default=None, help="The folder of its settings file.")
    args = parser.parse_args()
    print(json.dumps(closed_loop(args.sample, args.port, args.appdir)))
