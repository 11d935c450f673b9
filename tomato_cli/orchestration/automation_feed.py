"""Hears when Prefect's automations fire: one events websocket per daemon.

An automation of a tomato job (see :func:`tomato_cli.orchestration.events.snapshot_automation`)
does nothing itself; when it fires, Prefect emits ``prefect.automation.action.triggered``
for it, and the daemon does the work. This works the same whether the Prefect server is the
daemon's own or a lab server on another machine, which could not call back into a daemon
that listens on loopback only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

FIRED = "prefect.automation.action.triggered"


class AutomationFeed:
    """Calls ``on_fired(automation_id)`` for every firing, while started."""

    def __init__(self, api_url: str, on_fired: Callable[[str], None]) -> None:
        self.api_url = api_url
        self.on_fired = on_fired
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="automation-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                asyncio.run(self._listen())
            except Exception as exc:  # the server went away: the sync restarts us
                log.info("automation feed closed: %s", exc)
            self._stop.wait(2.0)

    async def _listen(self) -> None:
        from prefect.events.clients import PrefectEventSubscriber
        from prefect.events.filters import EventFilter, EventNameFilter

        events = EventFilter(event=EventNameFilter(name=[FIRED]))
        async with PrefectEventSubscriber(
            api_url=self.api_url, filter=events, reconnection_attempts=0
        ) as subscriber:
            async for event in subscriber:
                if self._stop.is_set():
                    return
                self.on_fired(event.resource.id.removeprefix("prefect.automation."))
