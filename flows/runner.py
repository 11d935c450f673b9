"""A job runner process: imports Prefect and the job flow, then waits for one job.

Started by the daemon ahead of time. It reads one line from stdin (the job context) and
runs that job's existing flow run with Prefect's flow engine; EOF means "not needed".
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _redirect_output(jobdir: Path) -> None:
    jobdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(jobdir / "job.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def main() -> int:
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.context import PRELOADED
    from flows.job import tomato_job

    line = sys.stdin.readline()
    if not line.strip():
        return 0
    context = json.loads(line)
    jobid = int(context["jobid"])
    _redirect_output(Path(context["job"]["jobpath"]))
    os.environ["TOMATO_DAEMON_PORT"] = str(context["daemon_port"])
    PRELOADED[jobid] = context
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(context["flow_run_id"])
    workers = len(context["job"]["payload"]["method"]) + 2
    job_flow = tomato_job.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))
    state = run_flow(job_flow, flow_run=flow_run, parameters={"jobid": jobid}, return_type="state")
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())
