"""The guards around Prefect internals: they pass on the installed Prefect and fail loudly
when what they rely on changes. (What each adjustment does is tested against a real server
in tests/integration/test_prefect_server.py and test_concurrency.py.)"""

from __future__ import annotations

import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tomato_cli import prefect_internals as internals


def run(code: str) -> subprocess.CompletedProcess[str]:
    """Apply adjustments in a process of their own: they change Prefect's classes."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_supported_version_is_installed() -> None:
    internals.check_version()


def test_another_version_is_refused_with_the_way_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(internals, "prefect_version", lambda: "3.10.2")
    with pytest.raises(internals.PrefectInternalsChanged) as info:
        internals.check_version()
    assert "Prefect 3.10.2 is installed" in str(info.value)
    assert "prefect==3.9.*" in str(info.value)


def test_global_references_are_found() -> None:
    import prefect.flow_engine as engine

    assert internals._references(engine, "observe_flow_run_suspension")
    assert not internals._references(engine, "no_such_name_anywhere")


def test_suspension_guard_refuses_an_engine_that_no_longer_looks_it_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If Prefect called the observer through another module, replacing the attribute of
    prefect.flow_engine would silently do nothing: the guard must say so instead."""
    import prefect.flow_engine as engine

    monkeypatch.setattr(internals, "_references", lambda module, name: False)
    original = engine.observe_flow_run_suspension
    with pytest.raises(internals.PrefectInternalsChanged, match="no longer calls"):
        internals.skip_suspension_observer()
    assert engine.observe_flow_run_suspension is original


def test_suspension_observer_is_replaced() -> None:
    out = run(
        "import prefect.flow_engine as e\n"
        "from tomato_cli import prefect_internals as i\n"
        "before = e.observe_flow_run_suspension\n"
        "i.skip_suspension_observer()\n"
        "assert e.observe_flow_run_suspension is not before\n"
        "with e.observe_flow_run_suspension('id', None): pass\n"
        "print('ok')"
    )
    assert out.stdout.strip() == "ok", out.stderr


def test_api_clients_share_one_tls_context() -> None:
    out = run(
        "import ssl\n"
        "from tomato_cli import prefect_internals as i\n"
        "i.share_client_tls_context()\n"
        "from prefect.client.orchestration import PrefectClient, SyncPrefectClient\n"
        "api = 'http://127.0.0.1:9/api'\n"
        "clients = (PrefectClient, SyncPrefectClient)\n"
        "pools = [c(api=api)._client._transport._pool for c in clients]\n"
        "assert pools[0]._ssl_context is pools[1]._ssl_context\n"
        "assert isinstance(pools[0]._ssl_context, ssl.SSLContext)\n"
        "assert pools[0]._ssl_context.verify_mode == ssl.CERT_REQUIRED\n"
        "import prefect.client.orchestration as o\n"
        "assert o.ssl.create_default_context() is not o.ssl.create_default_context()\n"
        "assert o.ssl.CERT_NONE is ssl.CERT_NONE\n"
        "print('ok')"
    )
    assert out.stdout.strip() == "ok", out.stderr


def test_tls_sharing_guard_refuses_a_client_that_builds_its_context_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import inspect

    monkeypatch.setattr(inspect, "getsource", lambda obj: "ctx = make_context()")
    with pytest.raises(internals.PrefectInternalsChanged, match="TLS context"):
        internals.share_client_tls_context()


def test_server_adjustments_apply_to_the_installed_prefect() -> None:
    out = run(
        "from prefect.server.database import configurations as c\n"
        "from prefect.server.api import server as s\n"
        "from tomato_cli import prefect_internals as i\n"
        "from tomato_cli.orchestration.prefect_server import writer_turn\n"
        "tx, call = c.AioSqliteConfiguration.begin_transaction, s.RequestLimitMiddleware.__call__\n"
        "i.queue_sqlite_writers(writer_turn)\n"
        "i.free_websockets_from_request_limit()\n"
        "i.check_service_settings()\n"
        "assert c.AioSqliteConfiguration.begin_transaction is not tx\n"
        "assert s.RequestLimitMiddleware.__call__ is not call\n"
        "print('ok')"
    )
    assert out.stdout.strip() == "ok", out.stderr


def test_server_guards_refuse_changed_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.server.database import configurations

    class Changed:
        async def begin_transaction(self, session, read_only=False):  # noqa: ANN001
            pass

    monkeypatch.setattr(configurations, "AioSqliteConfiguration", Changed)
    with pytest.raises(internals.PrefectInternalsChanged, match="begin_transaction"):
        internals.queue_sqlite_writers(lambda: None)


def test_service_switches_name_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    internals.check_service_settings()
    env = internals.service_env()
    assert env["PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED"] == "false"
    # the services that tomato's features (or a user's own Prefect workers) need stay on
    kept = ("triggers", "event_persister", "foreman", "task_run_recorder", "repossessor")
    for used in (*kept, "cleanup_reconciler"):
        assert f"PREFECT_SERVER_SERVICES_{used.upper()}_ENABLED" not in env
    monkeypatch.setattr(internals, "OFF_SERVICES", ("scheduler", "no_such_service"))
    with pytest.raises(internals.PrefectInternalsChanged, match="no_such_service"):
        internals.check_service_settings()


def test_heartbeat_guard() -> None:
    calls = []

    class Client:
        def send_worker_heartbeat(
            self,
            work_pool_name,
            worker_name,
            heartbeat_interval_seconds=None,  # noqa: ANN001
        ):
            calls.append((work_pool_name, worker_name, heartbeat_interval_seconds))

    internals.send_worker_heartbeat(Client(), "pool", "me", 30.0)
    assert calls == [("pool", "me", 30.0)]
    with pytest.raises(internals.PrefectInternalsChanged, match="send_worker_heartbeat"):
        internals.send_worker_heartbeat(types.SimpleNamespace(), "pool", "me", 30.0)


# a script's first lines: a fresh PREFECT_HOME with its SQLite database, set before Prefect
# is imported (its settings are read then)
SERVER_HOME = """
import os, sys, tempfile
home = tempfile.mkdtemp()
os.environ.update({
    "PREFECT_HOME": home,
    "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
})
"""

NESTED_READ = (
    SERVER_HOME
    + """
import asyncio
from tomato_cli import prefect_internals
from tomato_cli.orchestration.prefect_server import writer_turn
prefect_internals.queue_sqlite_writers(writer_turn)
import httpx
from prefect.server.api.server import create_app

async def main() -> None:
    app = create_app(ephemeral=True)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://x/api") as client:
            await client.post("/work_pools/", json={"name": "pool", "type": "process"})
            queue = (await client.post("/work_pools/pool/queues", json={"name": "q"})).json()
            # pausing emits a status event, which Prefect reads in a second session
            # while the write transaction is open
            reply = await asyncio.wait_for(
                client.patch(f"/work_queues/{queue['id']}", json={"is_paused": True}), 20
            )
            print(reply.status_code)

asyncio.run(main())
"""
)


def test_a_read_inside_a_write_transaction_does_not_wait_for_its_own_lock() -> None:
    """Without DEFERRED for the body, the second session began IMMEDIATE and waited for the
    write lock of its own task until SQLite's 60 s busy timeout."""
    out = run(NESTED_READ)
    assert out.stdout.strip() == "204", out.stderr[-2000:]


# run_server as the embedded server runs it, with uvicorn replaced by the app's lifespan
# and one request through an in-process transport
SERVED = (
    SERVER_HOME
    + """
import asyncio
import httpx, uvicorn
from tomato_cli import prefect_internals

def run(app, **options):
    async def main() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x/api") as client:
                reply = await client.post("/flows/", json={"name": "probe"})
                print("served", reply.status_code, "alembic" in sys.modules, options["port"])
    asyncio.run(main())

uvicorn.run = run
migrated = prefect_internals.migrate_in_child()
print("migrated", migrated, "alembic" in sys.modules)
prefect_internals.run_server("127.0.0.1", 4321, migrated=migrated)
"""
)


def test_the_server_runs_on_a_database_its_forked_child_migrated() -> None:
    """Alembic runs in the child only: the server creates and serves without loading it
    (what migrating leaves behind would stay in the server's memory)."""
    out = run(SERVED)
    lines = out.stdout.split("\n")
    assert "migrated True False" in lines, out.stderr[-2000:]
    assert "served 201 False 4321" in lines, out.stderr[-2000:]


NOT_FORKED = (
    SERVER_HOME
    + """
import threading
from tomato_cli import prefect_internals
with open(f"{home}/prefect.db", "w") as db:
    db.write("not a database")
print("broken", prefect_internals.migrate_in_child())
os.remove(f"{home}/prefect.db")
stop = threading.Event()
threading.Thread(target=stop.wait).start()
print("threads", prefect_internals.migrate_in_child(), os.path.exists(f"{home}/prefect.db"))
stop.set()
"""
)


def test_the_server_migrates_itself_where_the_child_did_not() -> None:
    """A child that fails, or a process with threads (no fork), leaves migrating to the
    server's own start, as stock Prefect does (which reports a failure in its log)."""
    out = run(NOT_FORKED)
    lines = out.stdout.split("\n")
    assert "broken False" in lines, out.stderr[-2000:]
    assert "threads False False" in lines, out.stderr[-2000:]


def test_a_server_whose_port_is_taken_says_so_and_touches_no_database(tmp_path: Path) -> None:
    """uvicorn binds only after the app's start-up (migrations, services): the port is
    checked first, as `prefect server start` does, and the daemon reports why."""
    from tomato_cli.orchestration.server import EmbeddedServer, PrefectTarget

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        home = tmp_path / "prefect"
        target = PrefectTarget(f"http://127.0.0.1:{port}/api", embedded=True, home=home)
        server = EmbeddedServer(target, port, tmp_path / "prefect-server.log")
        why = server.ensure()
    assert why is not None and f"port {port} on 127.0.0.1 is in use" in why, why
    assert server.proc is not None and server.proc.returncode == 1
    assert not list(home.glob("*.db")), "no database made beside the port's owner"


def test_a_server_that_fails_after_its_start_line_is_not_reported_by_that_line(
    tmp_path: Path,
) -> None:
    """The start line is information: only ``tomato: `` lines are reasons the daemon shows."""
    from tomato_cli.orchestration.server import EmbeddedServer, PrefectTarget

    home = tmp_path / "prefect"
    (home / "prefect.db").mkdir(parents=True)  # SQLite cannot open it: the start-up fails
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = PrefectTarget(f"http://127.0.0.1:{port}/api", embedded=True, home=home)
    server = EmbeddedServer(target, port, tmp_path / "prefect-server.log")
    why = server.ensure()
    log = server.logfile.read_text()
    assert "embedded Prefect server on 127.0.0.1" in log, log[-2000:]
    assert why == "embedded Prefect server did not become healthy (see prefect-server.log)", why
