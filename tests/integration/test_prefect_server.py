"""The embedded Prefect server stays responsive with many open event streams."""

from __future__ import annotations

import subprocess
import sys

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
