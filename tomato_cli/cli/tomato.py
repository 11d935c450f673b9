"""``tomato``: configure, start, stop and query the daemon; load samples into pipelines."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer

from tomato_cli.cli.driver import driver_app
from tomato_cli.cli.output import (
    Common,
    ask,
    emit,
    fail,
    make_app,
    run_app,
    table,
)
from tomato_cli.cli.spinner import working
from tomato_cli.rpc import Reply, Unreachable, call

app = make_app("Manage the tomato daemon and its pipelines.")
pipeline_app = typer.Typer(help="Load, eject and ready pipelines.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(driver_app, name="driver")
lab_app = typer.Typer(
    help="A lab-wide Prefect server on PostgreSQL for several tomato hosts "
    "(see docs/scale-out.md).",
    no_args_is_help=True,
)
app.add_typer(lab_app, name="lab-server")
LAB_DIR = typer.Option(..., "--dir", help="Folder of the lab server (made on first start).")

START_TIMEOUT_S = 30.0


@app.command()
def init(
    ctx: typer.Context,
    force: bool = typer.Option(False, help="Overwrite existing files."),
    source: Path | None = typer.Option(
        None,
        "--from",
        help="Take over a tomato 2.x set-up: its settings file or appdir (devices file, "
        "driver settings, repositories).",
    ),
):
    """Write a default settings file and devices file into the appdir."""
    from tomato_cli.models import (
        ConfigError,
        default_devices,
        default_settings,
        dump_devices,
        write_settings,
    )
    from tomato_cli.models.tomato2x import (
        copy_devices,
        find_tomato2x_settings,
        import_tomato2x_settings,
    )

    opts: Common = ctx.obj
    if opts.settings_path.exists() and not force:
        fail(opts, f"settings file {opts.settings_path} exists; use --force to overwrite it")
    data: dict[str, Any] = {"settings": str(opts.settings_path)}
    if source is not None:
        try:
            imported = import_tomato2x_settings(source, opts.appdir, opts.datadir, opts.logdir)
        except ConfigError as exc:
            fail(opts, str(exc))
        settings = imported.settings
        data["imported_from"] = str(imported.source)
    else:
        settings = default_settings(opts.appdir, opts.datadir, opts.logdir)
    opts.appdir.mkdir(parents=True, exist_ok=True)
    write_settings(settings, opts.settings_path)
    devices = Path(settings.devices.config)
    if source is not None and imported.devices_from is not None:
        copy_devices(imported)
    elif not devices.exists() or force:
        devices.write_text(dump_devices(default_devices()))
    data["devices"] = str(devices)
    msg = f"wrote {opts.settings_path} and {devices}"
    if source is not None:
        msg += (
            f" with the devices file, driver settings and repositories of {imported.source}"
            f" (its jobs stay where they are; new jobs go to {settings.jobs.storage})"
        )
    else:
        found = [p for p in find_tomato2x_settings() if p.parent != opts.appdir]
        if found:
            data["found_tomato2x"] = [str(p) for p in found]
            msg += (
                f"; a tomato 2.x set-up is on this machine ({found[0]}): to take over its "
                f"devices and driver settings, run `tomato init --force --from {found[0]}`"
            )
    emit(opts, Reply(True, msg, data))


@app.command()
def start(ctx: typer.Context):
    """Start the daemon in the background; returns once it answers."""
    from tomato_cli.models import ConfigError, load_settings
    from tomato_cli.models.credentials import read_auth_string

    opts: Common = ctx.obj
    try:
        settings = load_settings(opts.settings_path)
    except ConfigError as exc:
        fail(opts, f"{exc} (run `tomato init` to create default settings)")
    warn_unused(settings, opts.settings_path)
    try:
        read_auth_string(settings.prefect)  # unusable credentials are refused here, at once
    except ConfigError as exc:
        fail(opts, str(exc))
    if opts.host != settings.daemon.host:
        fail(
            opts,
            f"--host {opts.host} differs from [daemon] host = {settings.daemon.host!r} in "
            f"{opts.settings_path}; the daemon listens where its settings say",
        )
    try:
        reply = call(opts.port, "hello", timeout=2, host=opts.host)
        fail(opts, f"a tomato daemon already runs on {opts.where} (pid {reply.data['pid']})")
    except Unreachable:
        pass
    logdir = Path(settings.logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    errlog = logdir / f"daemon_{opts.port}.err"
    cmd = [
        sys.executable,
        "-P",  # a driver checkout's own drivers/ or flows/ in the current folder is not ours
        "-m",
        "tomato_cli.daemon",
        "--port",
        str(opts.port),
        "--appdir",
        str(opts.appdir),
        "--settings",
        str(opts.settings_path),
        "--logdir",
        str(logdir),
        "--verbosity",
        opts.verbosity,
    ]
    with open(errlog, "wb") as err:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    info = None
    with working(opts, f"starting the tomato daemon on {opts.where}") as progress:
        while info is None and time.monotonic() < deadline:
            progress()
            if proc.poll() is not None:
                why = errlog.read_text().strip().splitlines()
                fail(opts, f"the daemon exited at start: {why[-1] if why else proc.returncode}")
            try:
                reply = call(opts.port, "hello", timeout=1, host=opts.host)
                info = reply.data if reply.success else None
            except Unreachable:
                time.sleep(0.05)
    if info is None:
        fail(opts, f"the daemon did not answer within {START_TIMEOUT_S:.0f} s; see {errlog}")
    msg = f"tomato daemon started on {opts.where}; Prefect UI at {info['prefect']['ui_url']}"
    emit(opts, Reply(True, msg, info))


@app.command()
def stop(
    ctx: typer.Context,
    cancel_jobs: bool = typer.Option(
        False, "--cancel-jobs", help="Cancel running jobs (data kept), then stop."
    ),
    leave_running: bool = typer.Option(
        False, "--leave-running", help="Stop the daemon; running jobs go on."
    ),
):
    """Stop the daemon; refuses while jobs run unless told what to do with them."""
    opts: Common = ctx.obj
    if cancel_jobs and leave_running:
        fail(opts, "use either --cancel-jobs or --leave-running, not both")
    mode = "cancel" if cancel_jobs else "leave" if leave_running else "refuse"
    reply = ask(opts, "stop", mode=mode)
    if reply.success:
        if not _stopped(opts, cancelling=mode == "cancel"):
            fail(opts, f"the daemon on {opts.where} did not stop within 180 s")
        reply = Reply(True, f"tomato daemon on {opts.where} stopped", reply.data)
    emit(opts, reply)


def _stopped(opts: Common, cancelling: bool, timeout: float = 180.0) -> bool:
    """Wait for the daemon to go away; say how many jobs it still waits for."""
    deadline = time.monotonic() + timeout
    last_count = 0.0
    with working(opts, f"stopping the tomato daemon on port {opts.port}") as progress:
        while time.monotonic() < deadline:
            try:
                call(opts.port, "hello", timeout=1, host=opts.host)
            except Unreachable:
                return True
            if cancelling and time.monotonic() - last_count >= 1.0:
                last_count = time.monotonic()
                progress(_stop_text(opts))
            else:
                progress()
            time.sleep(0.1)
    return False


def _stop_text(opts: Common) -> str:
    try:
        running = call(opts.port, "status", timeout=2, host=opts.host).data["jobs"]["running"]
    except (Unreachable, TypeError, KeyError):
        running = []
    if running:
        return f"cancelling {len(running)} running job(s), then stopping"
    return f"stopping the tomato daemon on port {opts.port}"


@app.command()
def reload(ctx: typer.Context):
    """Re-read settings and devices file; nothing used by a running job is removed."""
    from tomato_cli.models import ConfigError, load_settings

    opts: Common = ctx.obj
    try:
        warn_unused(load_settings(opts.settings_path), opts.settings_path)
    except ConfigError:
        pass  # the daemon says what is wrong with it
    emit(opts, ask(opts, "reload", timeout=60))


def _sync_text(sync: dict[str, Any]) -> str:
    """The truth about the Prefect sync, in words."""
    if sync["state"] == "lagging":
        return f"lagging by {sync['lagging']} change(s)"
    if sync["state"] == "failing":
        return f"failing: {sync['error']}"
    return str(sync["state"])


def warn_unused(settings: Any, path: Path) -> None:
    """One warning line (stderr) naming the settings keys tomato-prefect does not use."""
    from drivers.registry import DriverNotFound, load_driver
    from tomato_cli.models.settings import unused_driver_keys

    known: dict[str, frozenset[str] | None] = {}
    for name in settings.drivers:
        try:
            known[name] = load_driver(name).settings_keys
        except DriverNotFound:
            known[name] = None  # the devices file check names a missing driver
    unused = settings.unused + unused_driver_keys(settings.drivers, known)
    if unused:
        sys.stderr.write(
            f"warning: settings file {path}: not used by tomato-prefect, ignored: "
            f"{', '.join(unused)}\n"
        )


def _by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A list of records as tomato 2.2 gives them: a mapping keyed by ``name``."""
    return {item["name"]: item for item in items}


def _pipeline_record(pip: dict[str, Any]) -> dict[str, Any]:
    """A pipeline as tomato 2.2 shows it (components by name), with our component records."""
    comps = pip.get("components") or []
    names = [c["name"] if isinstance(c, dict) else c for c in comps]
    return {**pip, "components": names}


def _tomato22_shapes(what: str, data: Any, opts: Common) -> Any:
    """``-y`` data in tomato 2.2's shapes: sections keyed by name; the whole status with
    2.2's keys (``status``, ``settings``, ``pips``, ``devs``, ``drvs``, ``cmps``) next to ours."""
    if what == "pipelines":
        return _by_name([_pipeline_record(p) for p in data])
    if what in ("devices", "components"):
        return _by_name(data)
    settings = _settings_dict(Path(data["settings"]) if what == "all" else opts.settings_path)
    drivers = settings.get("drivers", {})
    if what == "drivers":
        return _by_name([_driver_record(d, drivers) for d in data])
    return {
        **data,
        "status": "running",
        "settings_file": data["settings"],
        "settings": settings,
        "pips": _by_name([_pipeline_record(p) for p in data["pipelines"]]),
        "devs": _by_name(data["devices"]),
        "drvs": _by_name([_driver_record(d, drivers) for d in data["drivers"]]),
        "cmps": _by_name(data["components"]),
    }


def _driver_record(drv: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    return {"version": None, "settings": settings.get(drv["name"], {}), **drv}


def _settings_dict(path: Path) -> dict[str, Any]:
    from tomato_cli.models import ConfigError, load_settings

    try:
        return load_settings(path).model_dump(mode="json")
    except ConfigError:
        return {}


def _status_text(what: str, data: Any) -> str:
    if what == "pipelines":
        return table(data, ["name", "ready", "sampleid", "jobid"])
    if what == "drivers":
        columns = ["name", "origin", "version", "state", "pid", "port", "restarts", "error"]
        return table(data, columns)
    if what == "devices":
        return table(data, ["name", "driver", "address", "channels", "pollrate"])
    if what == "components":
        return table(data, ["name", "role", "device", "capabilities"])
    prefect = data["prefect"]
    host = data.get("host") or {}
    lines = [
        f"host:       {host.get('name', '-')} ({host.get('address', '127.0.0.1')})",
        f"port:       {data['port']} (pid {data['pid']})",
        f"settings:   {data['settings']}",
        f"Prefect UI: {prefect['ui_url']} ({'healthy' if prefect['healthy'] else 'starting'})",
        f"sync:       {_sync_text(prefect['sync'])}",
        f"work pool:  {prefect.get('work_pool', '-')}",
        f"jobs:       {len(data['jobs']['running'])} running, {len(data['jobs']['queued'])} queued",
        "",
        table(data["pipelines"], ["name", "ready", "sampleid", "jobid"]),
    ]
    return "\n".join(lines)


@app.command()
def status(
    ctx: typer.Context,
    what: str = typer.Argument(
        "all", help="tomato (the default: all), pipelines, drivers, devices or components"
    ),
):
    """Status of the daemon, or of its pipelines, drivers, devices or components."""
    opts: Common = ctx.obj
    what = "all" if what == "tomato" else what
    reply = ask(opts, "status", what=what)
    if reply.success and opts.as_yaml:
        reply.data = _tomato22_shapes(what, reply.data, opts)
    emit(opts, reply, lambda data: _status_text(what, data))


def _pipeline_reply(opts: Common, reply: Reply, pipeline: str) -> Reply:
    """A refused pipeline command still returns the pipeline's record, as tomato 2.2 does."""
    if reply.success:
        reply.data = _pipeline_record(reply.data)
    else:
        found = ask(opts, "status", what="pipelines")
        if found.success:
            records = _by_name([_pipeline_record(p) for p in found.data])
            reply.data = records.get(pipeline)
    return reply


@pipeline_app.command("load")
def pipeline_load(ctx: typer.Context, pipeline: str, sampleid: str):
    """Load a sample into an empty, idle pipeline."""
    reply = ask(ctx.obj, "pipeline_load", pipeline=pipeline, sampleid=sampleid)
    emit(ctx.obj, _pipeline_reply(ctx.obj, reply, pipeline))


@pipeline_app.command("eject")
def pipeline_eject(ctx: typer.Context, pipeline: str):
    """Eject the sample (marks the pipeline not ready); fails while a job runs."""
    reply = ask(ctx.obj, "pipeline_eject", pipeline=pipeline)
    emit(ctx.obj, _pipeline_reply(ctx.obj, reply, pipeline))


@pipeline_app.command("ready")
def pipeline_ready(ctx: typer.Context, pipeline: str):
    """Mark a pipeline ready."""
    reply = ask(ctx.obj, "pipeline_ready", pipeline=pipeline)
    emit(ctx.obj, _pipeline_reply(ctx.obj, reply, pipeline))


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
    from tomato_cli.orchestration.lab_server import LabServer, LabServerError

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
    from tomato_cli.orchestration.lab_server import LabServer, LabServerError

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
    from tomato_cli.orchestration.lab_server import LabServer, LabServerError

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


def main() -> None:
    run_app(app, "tomato")
