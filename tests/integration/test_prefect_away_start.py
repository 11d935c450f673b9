"""Jobs start while the embedded Prefect server is not up yet; Prefect catches up after.

The daemon is the truth: a job submitted right after `tomato start` returns runs at once,
outside Prefect's flow engine, and its flow run appears in Prefect, with the job's state,
its pipeline's slot and its controls, once the server answers. The server is held back
deliberately (SIGSTOP on its process group right after `tomato start`, SIGCONT later), so
the test does not depend on how long the server takes to start on a busy machine.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import xarray as xr

from tests.integration.harness import Tomato, counter_payload, eventually

pytestmark = pytest.mark.slow


def server_pid(world: Tomato) -> int | None:
    """The embedded server's process (a session leader) once the daemon started it."""
    info = world.ok("tomato", "status")
    port = info["prefect"]["api_url"].removesuffix("/api").rsplit(":", 1)[1]
    pidfile = Path(info["datadir"]) / f"prefect-{port}" / "server.pid"
    return int(pidfile.read_text()) if pidfile.exists() else None


@pytest.fixture
def held(fresh: Tomato) -> Iterator[tuple[Tomato, int]]:
    """A daemon just started, its Prefect server stopped before it could answer."""
    fresh.init()
    fresh.start()
    pid = eventually(lambda: server_pid(fresh), 30, "the embedded server was started")
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield fresh, pid
    finally:
        try:
            os.killpg(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def prefect(world: Tomato) -> dict[str, Any]:
    return world.ok("tomato", "status")["prefect"]


def flow_run(world: Tomato, flow_run_id: str) -> dict[str, Any]:
    return httpx.get(f"{prefect(world)['api_url']}/flow_runs/{flow_run_id}").json()


def state_type(world: Tomato, jobid: int) -> str | None:
    frid = world.job(jobid)["flow_run_id"]
    return flow_run(world, frid)["state"]["type"] if frid else None


def slot(world: Tomato, pipeline: str) -> int:
    api = prefect(world)["api_url"]
    return httpx.get(f"{api}/v2/concurrency_limits/pipeline:{pipeline}").json()["active_slots"]


def run_log(world: Tomato, flow_run_id: str) -> str:
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 50}
    found = httpx.post(f"{prefect(world)['api_url']}/logs/filter", json=body).json()
    return "\n".join(r["message"] for r in found)


def samples(path: Path) -> int:
    with xr.open_datatree(path) as dt:
        return dt["counter"].sizes["uts"]


def test_jobs_run_before_prefect_answers_and_appear_in_it_after(
    held: tuple[Tomato, int], tmp_path: Path
) -> None:
    world, server = held
    assert not prefect(world)["healthy"]
    world.prepare("pip-counter-1", "early")
    world.prepare("pip-counter-2", "early-long")
    # a whole job, start to results file, while Prefect cannot answer (bounds: generous
    # limits for a busy 2-core machine, not speed; the job itself samples for 3 s)
    early = world.submit(counter_payload("early", 3, 0.1), cwd=tmp_path)
    assert world.wait_job(early, ("r", "c"), timeout=60)["pipeline"] == "pip-counter-1"
    done = world.wait_job(early, timeout=60)
    assert done["status"] == "c", done
    assert samples(tmp_path / f"results.{early}.nc") == 30
    # a long one, running when Prefect comes: it is mirrored live and controlled from there
    long = world.submit(counter_payload("early-long", 120, 0.1), cwd=tmp_path)
    running = world.wait_job(long, ("r",), timeout=60)
    assert running["flow_run_id"] is None and done["flow_run_id"] is None
    assert not prefect(world)["healthy"]  # all of the above without Prefect

    os.killpg(server, signal.SIGCONT)
    world.wait_prefect(timeout=150)
    # the ended job's flow run shows its end; the running one's shows it running, on its
    # pipeline, holding the pipeline's slot
    eventually(lambda: state_type(world, early) == "COMPLETED", 60, "the early job Completed")
    eventually(lambda: state_type(world, long) == "RUNNING", 60, "the long job Running")
    frid = world.job(long)["flow_run_id"]
    assert "pipeline:pip-counter-2" in flow_run(world, frid)["tags"]
    assert "outside Prefect's flow engine" in run_log(world, frid)
    eventually(lambda: slot(world, "pip-counter-2") == 1, 60, "the long job holds the slot")
    # Cancel in Prefect (what the UI's button sets) stops the job, its data kept
    api = prefect(world)["api_url"]
    reply = httpx.post(
        f"{api}/flow_runs/{frid}/set_state",
        json={"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True},
    )
    assert reply.status_code in (200, 201), reply.text
    cancelled = world.wait_job(long, timeout=60)
    assert cancelled["status"] == "cd", cancelled
    assert samples(tmp_path / f"results.{long}.nc") > 0
    eventually(lambda: state_type(world, long) == "CANCELLED", 60, "Cancelled in Prefect")
    eventually(lambda: slot(world, "pip-counter-2") == 0, 60, "the slot given back")
    # with Prefect up, the next job runs in Prefect's engine as ever
    world.prepare("pip-counter-1", "later")
    later = world.submit(counter_payload("later", 1, 0.1), cwd=tmp_path)
    assert world.wait_job(later, timeout=120)["status"] == "c"
    eventually(lambda: state_type(world, later) == "COMPLETED", 60, "Completed by its engine")
    later_run = world.job(later)["flow_run_id"]
    assert "outside Prefect's flow engine" not in run_log(world, later_run)
    finished = "Finished in state Completed"
    eventually(lambda: finished in run_log(world, later_run), 60, "its engine's own log")
