"""Runs the embedded Prefect server: ``prefect server start`` with one SQLite adjustment.

Prefect opens SQLite write transactions as DEFERRED. Under many concurrent writers
(hundreds of submissions while jobs run) a deferred transaction that read first and then
writes fails at once with "database is locked" (SQLITE_BUSY_SNAPSHOT), whatever the busy
timeout; Prefect answers 503 and clients retry. Beginning every transaction IMMEDIATE
makes writers queue on SQLite's busy timeout instead, so nothing fails. PostgreSQL
servers are not affected and not changed.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any


def queue_sqlite_writers() -> None:
    from prefect.server.database import configurations

    config = configurations.AioSqliteConfiguration
    original = config.begin_transaction

    @asynccontextmanager
    async def begin_transaction(
        self: Any, session: Any, with_for_update: bool = False
    ) -> AsyncGenerator[Any, None]:
        async with original(self, session, with_for_update=True) as transaction:
            yield transaction

    config.begin_transaction = begin_transaction  # type: ignore[method-assign]


def main() -> None:
    queue_sqlite_writers()
    from prefect.cli import app

    sys.argv = ["prefect", "server", "start", *sys.argv[1:]]
    sys.exit(app())


if __name__ == "__main__":
    main()
