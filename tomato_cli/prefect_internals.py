"""Every place where tomato relies on Prefect 3.9 internals, each guarded.

Each adjustment first checks the Prefect version and the shape of what it relies on or
replaces, and raises :class:`PrefectInternalsChanged` (with what changed) if Prefect is not
as expected: a newer Prefect fails loudly at start-up instead of silently losing a fix.
Moving to a newer Prefect means re-checking this module (and its tests in
tests/unit/test_prefect_internals.py and tests/integration/test_prefect_server.py).

| adjustment | where it is applied | why |
|---|---|---|
| SQLite writers take turns | embedded server | no "database is locked" under load |
| websockets pass the request limit | embedded server | ~90 running jobs hung the server |
| server services switched off | embedded server | CPU per job |
| no suspension observer per flow run | job runner | a thread and a websocket per job |
| API clients share one TLS context | job runner | ~3 MiB per job's process |
| run an existing flow run | job's process | the daemon made the flow run |
| drain logs and events within a bound, then exit | job's process | none waits for a gone server |
| the server app in-process, migrated by a fork | embedded server | fixes above; memory |
| worker heartbeat without a worker | daemon | the work pool shows Ready |
"""

from __future__ import annotations

import importlib.metadata
import inspect
import time
import types
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

SUPPORTED = "3.9"

# Server services tomato does not use (setting names under server.services). The
# scheduler, late-runs and pause-expiration services would move or mark tomato's waiting
# runs, and cancels are handled by the daemon. (The triggers service, with the actions
# it runs, and the event persister run the automations of periodic snapshots; the
# foreman shows the pool, its queues and the deployment Not Ready when the daemon is
# gone; the task run recorder records the runs of job steps; the repossessor frees a
# pipeline's slot whose lease the daemon could not give back; the vacuum of events
# bounds the database; the cleanup reconciler serves the Prefect workers a user may run
# on this server for flows of their own. The UI, the event stream out and block
# registration stay too.)
OFF_SERVICES = (
    "scheduler",
    "late_runs",
    "pause_expirations",
    "cancellation_cleanup",
)


class PrefectInternalsChanged(RuntimeError):
    """The installed Prefect is not shaped as tomato expects."""


def prefect_version() -> str:
    return importlib.metadata.version("prefect")


def check_version() -> None:
    """Cheap (no import of Prefect): refuse a Prefect other than 3.9.x."""
    version = prefect_version()
    if version.split(".")[:2] != SUPPORTED.split("."):
        raise PrefectInternalsChanged(
            f"Prefect {version} is installed; tomato-prefect supports Prefect {SUPPORTED}.x "
            f"(reinstall with: pip install 'prefect=={SUPPORTED}.*')"
        )


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise PrefectInternalsChanged(
            f"Prefect {prefect_version()}: {what}; tomato-prefect supports Prefect {SUPPORTED}.x"
        )


def _params(func: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(func).parameters)


def _references(module: types.ModuleType, name: str) -> bool:
    """Whether code of ``module`` looks ``name`` up as a global (so that replacing the
    module attribute changes what that code calls)."""

    def code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
        yield code
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                yield from code_objects(const)

    for obj in vars(module).values():
        funcs = []
        if inspect.isfunction(obj) and obj.__module__ == module.__name__:
            funcs.append(obj)
        elif inspect.isclass(obj) and obj.__module__ == module.__name__:
            funcs += [f for f in vars(obj).values() if inspect.isfunction(f)]
        for func in funcs:
            func = inspect.unwrap(func)
            if any(name in c.co_names for c in code_objects(func.__code__)):
                return True
    return False


# --- the embedded server -------------------------------------------------------------------
def queue_sqlite_writers(turn: Callable[[], Any]) -> None:
    """Every SQLite write transaction of the server first takes ``turn()`` (an async
    context manager), then begins IMMEDIATE, so that its snapshot cannot go stale.

    Prefect decides BEGIN DEFERRED or IMMEDIATE from a context variable read when a
    connection first executes. The write transaction's connection is begun at once, and
    the variable is set back to DEFERRED for its body: a session opened inside it (Prefect
    reads in a second session while emitting events) must read, not wait for the write
    lock its own task holds.
    """
    check_version()
    from contextvars import ContextVar

    from prefect.server.database import configurations

    config = getattr(configurations, "AioSqliteConfiguration", None)
    _expect(config is not None, "AioSqliteConfiguration is gone")
    original = getattr(config, "begin_transaction", None)
    _expect(
        original is not None and _params(original)[:3] == ["self", "session", "with_for_update"],
        "AioSqliteConfiguration.begin_transaction(self, session, with_for_update) changed",
    )
    mode = getattr(configurations, "SQLITE_BEGIN_MODE", None)
    _expect(isinstance(mode, ContextVar), "configurations.SQLITE_BEGIN_MODE is gone")
    assert mode is not None

    @asynccontextmanager
    async def begin_transaction(self: Any, session: Any, with_for_update: bool = False) -> Any:
        async with turn():
            async with original(self, session, with_for_update=True) as transaction:
                await session.connection()  # BEGIN IMMEDIATE, now
                token = mode.set("DEFERRED")
                try:
                    yield transaction
                finally:
                    mode.reset(token)

    config.begin_transaction = begin_transaction  # type: ignore[union-attr]


def free_websockets_from_request_limit() -> None:
    """Only HTTP requests count against Prefect's limit of concurrent requests on SQLite;
    an open websocket (one per watching client) held its place for as long as it lived."""
    check_version()
    from prefect.server.api import server

    middleware = getattr(server, "RequestLimitMiddleware", None)
    _expect(middleware is not None, "prefect.server.api.server.RequestLimitMiddleware is gone")
    limited = middleware.__call__  # type: ignore[union-attr]
    _expect(
        _params(limited) == ["self", "scope", "receive", "send"],
        "RequestLimitMiddleware.__call__(self, scope, receive, send) changed",
    )
    _expect("app" in _params(middleware.__init__), "RequestLimitMiddleware(app, ...) changed")

    async def call(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
        else:
            await limited(self, scope, receive, send)

    middleware.__call__ = call  # type: ignore[method-assign,union-attr]


def check_service_settings() -> None:
    """The service switches of ``OFF_SERVICES`` exist (an unknown PREFECT_* variable would
    be ignored silently, leaving the service on)."""
    check_version()
    from prefect.settings import get_current_settings

    services = get_current_settings().server.services
    for name in OFF_SERVICES:
        service = getattr(services, name, None)
        _expect(
            service is not None and hasattr(service, "enabled"),
            f"the setting server.services.{name}.enabled is gone",
        )


def service_env() -> dict[str, str]:
    """Environment that switches the ``OFF_SERVICES`` off."""
    return {f"PREFECT_SERVER_SERVICES_{name.upper()}_ENABLED": "false" for name in OFF_SERVICES}


def migrate_in_child() -> bool:
    """Bring the server's database to Prefect's schema in a forked child process, so that
    the server process itself never runs Alembic.

    Prefect migrates in the server's lifespan: Alembic loads all of its migration scripts
    (on a check at head too), and what that leaves behind stays in the server's memory for
    its life (idle USS 194 MiB after creating a database, 162 after a check at head, 152
    without either). The child shares the server's imports (forked after them), so this
    costs no import time. True if the child migrated: the server must then be created with
    migrate-on-start off (:func:`run_server`). False where there is no fork or this process
    already runs threads (Prefect then migrates at start, as stock); a failed child also
    gives False, so that the server's own migration reports the error as it always did.
    """
    check_version()
    import asyncio
    import os
    import sys
    import threading
    import traceback

    import prefect.server.api.server  # noqa: F401 - imported once, for the child and the server
    from prefect.server.database import interface, provide_database_interface
    from prefect.settings import get_current_settings

    _expect(
        hasattr(get_current_settings().server.database, "migrate_on_start"),
        "the setting server.database.migrate_on_start is gone",
    )
    _expect(
        hasattr(interface.PrefectDBInterface, "run_migrations_upgrade"),
        "PrefectDBInterface.run_migrations_upgrade is gone",
    )
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return False

    async def migrate() -> None:
        db = provide_database_interface()
        await db.run_migrations_upgrade()
        await (await db.engine()).dispose()

    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError:  # EAGAIN, ENOMEM: the server migrates itself
        return False
    if pid == 0:  # the child: migrate, then leave without running the parent's exit code
        code = 1
        try:
            asyncio.run(migrate())
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def run_server(host: str, port: int, migrated: bool) -> None:
    """Prefect's server app in this process (after the server fixes), as ``prefect server
    start`` runs it with one worker: ``uvicorn.run(create_app(final=True))`` with the
    server's settings. Without Prefect's CLI (the import of its command framework), and
    without migrating at start if :func:`migrate_in_child` did."""
    check_version()
    import uvicorn
    from prefect.server.api.server import create_app
    from prefect.settings import (
        PREFECT_API_DATABASE_MIGRATE_ON_START,
        get_current_settings,
        temporary_settings,
    )

    _expect(
        _params(create_app)[:4] == ["settings", "ephemeral", "webserver_only", "final"],
        "prefect.server.api.server.create_app(settings, ephemeral, webserver_only, final) changed",
    )
    updates: dict[Any, Any] = {PREFECT_API_DATABASE_MIGRATE_ON_START: False} if migrated else {}
    with temporary_settings(updates=updates):
        server = get_current_settings().server
        uvicorn.run(
            app=create_app(final=True),
            host=host,
            port=port,
            timeout_keep_alive=server.api.keepalive_timeout,
            ws_ping_interval=server.api.websocket_ping_interval,
            ws_ping_timeout=server.api.websocket_ping_timeout,
            log_level=server.logging_level.lower(),
        )


# --- the job runner ------------------------------------------------------------------------
@contextmanager
def _no_suspension_observer(*args: Any, **kwargs: Any) -> Iterator[None]:
    yield


def skip_suspension_observer() -> None:
    """Run flow runs without Prefect's per-run suspension observer.

    For every flow run of a deployment, Prefect's engine starts a thread with its own event
    loop and an events websocket, only to notice a suspension set from outside. The server
    matches every event against every such subscription: with 160 running jobs that was a
    third of its CPU, and 160 threads in the runners. Pauses and cancels made in Prefect
    reach tomato jobs through the daemon instead.
    """
    check_version()
    import prefect.flow_engine as engine

    _expect(
        callable(getattr(engine, "observe_flow_run_suspension", None)),
        "prefect.flow_engine.observe_flow_run_suspension is gone",
    )
    _expect(
        _references(engine, "observe_flow_run_suspension"),
        "the flow engine no longer calls observe_flow_run_suspension as a module global",
    )
    engine.observe_flow_run_suspension = _no_suspension_observer  # type: ignore[assignment]


def share_client_tls_context() -> None:
    """Prefect's API clients in this process share one TLS context per CA file, built now.

    Each client builds its own from the CA bundle, about 0.8 MiB of OpenSSL memory, and a
    job's process makes four. Built once in the job runner before it forks, the context's
    pages are shared by every job's process. Only Prefect's client module gets the shared
    one, and it never changes a context built from a CA file (its insecure one, built
    without, is still built each time).
    """
    check_version()
    import ssl
    import threading

    import certifi
    import prefect.client.orchestration as orchestration
    from prefect.settings import PREFECT_API_SSL_CERT_FILE

    for client in (orchestration.PrefectClient, orchestration.SyncPrefectClient):
        _expect(
            getattr(orchestration, "ssl", None) is ssl
            and "ssl.create_default_context(cafile=cert_file)" in inspect.getsource(client),
            f"{client.__name__} no longer builds its TLS context with ssl.create_default_context",
        )
    built: dict[str, ssl.SSLContext] = {}
    lock = threading.Lock()

    def create_default_context(
        purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH,
        *,
        cafile: str | None = None,
        capath: str | None = None,
        cadata: str | bytes | None = None,
    ) -> ssl.SSLContext:
        if purpose is not ssl.Purpose.SERVER_AUTH or cafile is None or capath or cadata:
            return ssl.create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)
        with lock:
            if cafile not in built:
                built[cafile] = ssl.create_default_context(purpose, cafile=cafile)
            return built[cafile]

    shared = types.ModuleType("ssl")  # the ssl module, but for create_default_context
    shared.__dict__["__getattr__"] = lambda name: getattr(ssl, name)
    shared.__dict__["create_default_context"] = create_default_context
    orchestration.ssl = shared  # type: ignore[attr-defined]
    create_default_context(cafile=PREFECT_API_SSL_CERT_FILE.value() or certifi.where())


def run_existing_flow_run(flow: Any, flow_run: Any, parameters: dict[str, Any]) -> Any:
    """Run ``flow`` as the existing ``flow_run`` in this thread; returns its final state."""
    from prefect.flow_engine import run_flow

    _expect(
        {"flow", "flow_run", "parameters", "return_type"} <= set(_params(run_flow)),
        "prefect.flow_engine.run_flow(flow, flow_run, parameters, return_type) changed",
    )
    return run_flow(flow, flow_run=flow_run, parameters=parameters, return_type="state")


def drain_prefect_services(timeout: float) -> None:
    """Send what Prefect's log and event workers still hold, waiting ``timeout`` at most.

    Their at-exit drain waits without bound; a process that has called this may skip it
    (``os._exit``) and lose nothing that could still reach the server.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        _expect(
            "timeout" in _params(service.drain_all),
            f"{service.__name__}.drain_all(timeout=...) changed",
        )
    deadline = time.monotonic() + timeout
    for service in (APILogWorker, EventsWorker):
        service.drain_all(timeout=max(0.0, deadline - time.monotonic()))


# --- the daemon ------------------------------------------------------------------------------
def send_worker_heartbeat(client: Any, pool: str, name: str, interval_s: float) -> None:
    """Mark the work pool as served (Ready in the UI) without running a Prefect worker."""
    method = getattr(client, "send_worker_heartbeat", None)
    _expect(
        method is not None
        and {"work_pool_name", "worker_name", "heartbeat_interval_seconds"} <= set(_params(method)),
        "client.send_worker_heartbeat(work_pool_name, worker_name, ...) changed",
    )
    method(pool, name, heartbeat_interval_seconds=interval_s)
