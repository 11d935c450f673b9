"""Runs the embedded Prefect server: Prefect's server app, as ``prefect server start`` runs
it, with two SQLite fixes, its database migrated by a short-lived child process.

The fixes are applied through :mod:`tomato_cli.prefect_internals`, which
checks that Prefect is shaped as they expect.

1. Writers take turns. Prefect opens SQLite write transactions as DEFERRED. One that
   reads first (creating a flow run from a deployment does) and then writes fails at
   once with "database is locked" (SQLITE_BUSY_SNAPSHOT) if any other writer committed
   in between, whatever the busy timeout; Prefect answers 503 and clients retry. Here
   every write transaction of the server first waits for its turn on one asyncio lock,
   then begins IMMEDIATE, so its snapshot cannot go stale. Waiting happens before a
   database connection is checked out, so waiters cannot starve the connection pool. A
   transaction opened while its task already holds the turn joins it instead of waiting
   on itself, and after ``TURN_LIMIT_S`` a waiter goes ahead anyway, so nothing waits
   forever.
2. Websockets are not requests. With SQLite, Prefect admits at most 100 requests at
   once, and an open websocket holds its place for as long as it lives. Every flow run
   of a deployment keeps one open (to watch for its own suspension), so about 90
   running jobs filled the limit and every other request, health checks included,
   waited forever. Here only HTTP requests count.

3. Alembic stays out of the server. The database is brought to Prefect's schema in a
   forked child before the server starts (see
   :func:`tomato_cli.prefect_internals.migrate_in_child`): what migrating leaves behind
   would stay in the server's memory for its life (about 40 MiB on a new database).

PostgreSQL servers are not changed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import weakref
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from contextvars import ContextVar

TURN_LIMIT_S = 10.0

_holding: ContextVar[bool] = ContextVar("tomato_sqlite_writer", default=False)
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)
log = logging.getLogger("tomato.prefect_server")


def _writer_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _locks.get(loop)
    if lock is None:
        lock = _locks[loop] = asyncio.Lock()
    return lock


@asynccontextmanager
async def writer_turn() -> AsyncGenerator[None, None]:
    """Hold the write turn of this event loop for the duration of the block."""
    if _holding.get():
        yield
        return
    lock = _writer_lock()
    try:
        async with asyncio.timeout(TURN_LIMIT_S):
            await lock.acquire()
        acquired = True
    except TimeoutError:
        acquired = False
        log.warning("a SQLite write waited %.0f s for its turn; going ahead", TURN_LIMIT_S)
    token = _holding.set(True)
    try:
        yield
    finally:
        _holding.reset(token)
        if acquired:
            lock.release()


def port_taken(host: str, port: int) -> str | None:
    """Why the server cannot listen on ``host:port``, checked as ``prefect server start``
    checks it, before anything else: uvicorn binds only after the app's start-up (the
    database migrated, the services running), which must not happen beside another server
    on the same database."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return f"port {port} on {host} is in use ({exc.strerror})"
    return None


def main() -> None:
    import argparse

    from tomato_cli import prefect_internals as internals

    parser = argparse.ArgumentParser(description="tomato's embedded Prefect server")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    refused = port_taken(args.host, args.port)
    if refused:
        print(f"tomato: {refused}", flush=True)  # the daemon reports the last such line
        sys.exit(1)
    try:
        internals.queue_sqlite_writers(writer_turn)
        internals.free_websockets_from_request_limit()
        internals.check_service_settings()
        migrated = internals.migrate_in_child()
        how = "migrated by a child process" if migrated else "migrated as the server starts"
        print(f"embedded Prefect server on {args.host}:{args.port}, database {how}", flush=True)
        internals.run_server(args.host, args.port, migrated=migrated)
    except internals.PrefectInternalsChanged as exc:
        print(f"tomato: {exc}", file=sys.stderr, flush=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
