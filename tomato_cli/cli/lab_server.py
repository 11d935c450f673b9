"""``tomato lab-server``: start, stop and show a lab-wide Prefect server on PostgreSQL.

Several tomato hosts share it (see docs/scale-out.md); the server itself is
:mod:`tomato_cli.orchestration.lab_server`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tomato_cli.cli.output import Common, emit, fail, sub_app
from tomato_cli.rpc import Reply

lab_app = sub_app(
    "A lab-wide Prefect server on PostgreSQL for several tomato hosts (see docs/scale-out.md)."
)
LAB_DIR = typer.Option(..., "--dir", help="Folder of the lab server (made on first start).")


def _lab_text(data: dict[str, Any]) -> str:
    prefect, pg = data["prefect"], data["postgres"]
    state = "healthy" if prefect["healthy"] else "running" if prefect["running"] else "stopped"
    lines = [
        f"Prefect API: {data['api_url']} ({state}, pid {prefect['pid'] or '-'})",
        f"Prefect UI:  {data['ui_url']}",
        f"PostgreSQL:  {'running' if pg['running'] else 'stopped'} ({pg['db']} "
        f"{pg['address']}, port {pg['port']})",
        f"credentials: {data['auth_file']}",
    ]
    tls = data.get("tls")
    if tls:
        lines.insert(
            1,
            f"TLS proxy:   {'running' if tls['running'] else 'stopped'}, certificate {tls['cert']}",
        )
    if prefect["healthy"]:
        lines += [
            "",
            "a tomato host uses it with, in its settings.toml:",
            "[prefect]",
            f'url = "{data["api_url"]}"',
            f'auth_file = "{data["auth_file"]}"   # a copy only its owner can read (chmod 600)',
        ]
        if tls:
            lines += ["", f"and trusts the certificate: SSL_CERT_FILE={tls['cert']} tomato start"]
    return "\n".join(lines)


@lab_app.command("start")
def lab_start(
    ctx: typer.Context,
    folder: Path = LAB_DIR,
    listen: str | None = typer.Option(
        None, "--listen", help="Address of the Prefect API (default 127.0.0.1; kept)."
    ),
    api_port: int | None = typer.Option(
        None, "--api-port", help="Port of the Prefect API (default 4200; kept)."
    ),
    db: str | None = typer.Option(
        None, "--db", help="How Prefect reaches PostgreSQL: socket or tcp (default socket; kept)."
    ),
    db_port: int | None = typer.Option(
        None, "--db-port", help="PostgreSQL's port (default 5433; kept)."
    ),
    allow_remote: bool | None = typer.Option(
        None, "--allow-remote/--loopback-only", help="Allow a --listen address off loopback."
    ),
    tls_port: int | None = typer.Option(
        None,
        "--tls-port",
        help="Serve the API over TLS on this port (a self-signed certificate unless DIR/tls "
        "has one; Prefect then listens on 127.0.0.1 only); 0 turns TLS off (kept).",
    ),
):
    """Start the lab server (set up on first use); returns once Prefect is healthy."""
    from tomato_cli.orchestration.lab_config import LabServerError
    from tomato_cli.orchestration.lab_server import LabServer

    opts: Common = ctx.obj
    try:
        data = LabServer(folder).start(
            listen=listen,
            api_port=api_port,
            db=db,
            db_port=db_port,
            allow_remote=allow_remote,
            tls_port=tls_port,
        )
    except LabServerError as exc:
        fail(opts, str(exc))
    reply = Reply(True, f"lab server started: Prefect API at {data['api_url']}", data)
    emit(opts, reply, _lab_text)


@lab_app.command("stop")
def lab_stop(ctx: typer.Context, folder: Path = LAB_DIR):
    """Stop the lab server's Prefect server, then its PostgreSQL."""
    from tomato_cli.orchestration.lab_config import LabServerError
    from tomato_cli.orchestration.lab_server import LabServer

    opts: Common = ctx.obj
    try:
        stopped = LabServer(folder).stop()
    except LabServerError as exc:
        fail(opts, str(exc))
    if not any(stopped.values()):
        fail(opts, f"no lab server runs in {Path(folder).absolute()}")
    emit(opts, Reply(True, f"lab server in {Path(folder).absolute()} stopped", stopped))


@lab_app.command("status")
def lab_status(ctx: typer.Context, folder: Path = LAB_DIR):
    """Where the lab server is and whether it runs (exit code 1 unless all of it runs)."""
    from tomato_cli.orchestration.lab_config import LabServerError
    from tomato_cli.orchestration.lab_server import LabServer

    opts: Common = ctx.obj
    try:
        data = LabServer(folder).status()
    except LabServerError as exc:
        fail(opts, str(exc))
    prefect, pg = data["prefect"], data["postgres"]
    ok = prefect["healthy"] and pg["running"]
    msg = (
        f"lab server in {data['dir']} is running"
        if ok
        else f"lab server in {data['dir']} is not running (Prefect "
        f"{'starting' if prefect['running'] else 'stopped'}, PostgreSQL "
        f"{'running' if pg['running'] else 'stopped'})"
    )
    emit(opts, Reply(ok, msg, data), _lab_text)
