"""The adjustments to Prefect internals, checked for their effect on a real server."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.integration.harness import Tomato

# Every running flow run of a deployment keeps one events websocket open. Prefect admits
# at most 100 requests at once on SQLite; websockets must not count against that.
SUBSCRIBERS = """
import asyncio, sys, time
import httpx
from prefect.events.clients import PrefectEventSubscriber

async def main(api: str, n: int) -> None:
    subscribers = [PrefectEventSubscriber(api_url=api, reconnection_attempts=0) for _ in range(n)]
    for subscriber in subscribers:
        await subscriber.__aenter__()
    start = time.monotonic()
    async with httpx.AsyncClient() as client:
        try:
            reply = await client.get(api + "/health", timeout=15)
            print(reply.status_code, round(time.monotonic() - start, 2), flush=True)
        except httpx.TimeoutException:
            print("timeout", flush=True)
    for subscriber in subscribers:
        await subscriber.__aexit__(None, None, None)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def test_server_answers_with_more_open_event_streams_than_its_request_limit(lab: Tomato) -> None:
    api = lab.ok("tomato", "status")["prefect"]["api_url"]
    out = subprocess.run(
        [sys.executable, "-c", SUBSCRIBERS, api, "120"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    status, seconds = out.stdout.split()
    assert status == "200"
    assert float(seconds) < 5


# A flow run of a deployment, run the way job runners run it; prints the threads alive
# while the flow body runs.
OBSERVED = """
import sys, threading
from prefect import flow
from prefect.client.orchestration import get_client
from tomato_cli import prefect_internals

@flow(name="tomato-internals-probe", persist_result=False)
def probe() -> list:
    return sorted(t.name for t in threading.enumerate())

if sys.argv[1] == "adjusted":
    prefect_internals.skip_suspension_observer()
with get_client(sync_client=True) as client:
    flow_id = client.create_flow_from_name("tomato-internals-probe")
    deployment = client.create_deployment(flow_id, "probe", entrypoint="probe.py:probe")
    run = client.create_flow_run_from_deployment(deployment)
state = prefect_internals.run_existing_flow_run(probe, run, {})
print("|".join(state.result()))
"""


@pytest.mark.parametrize("mode", ["adjusted", "stock"])
def test_job_runners_run_flow_runs_without_a_suspension_observer(lab: Tomato, mode: str) -> None:
    """The stock engine starts an observer thread (and an events websocket) per flow run of
    a deployment; job runners must not (the stock case shows the test can tell)."""
    api = lab.ok("tomato", "status")["prefect"]["api_url"]
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(lab.root / "probe-home")}
    out = subprocess.run(
        [sys.executable, "-c", OBSERVED, mode], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    threads = out.stdout.strip().splitlines()[-1].split("|")
    observers = [t for t in threads if "observer_thread" in t]
    assert (observers == []) == (mode == "adjusted"), threads
