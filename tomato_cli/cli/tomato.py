"""``tomato``: configure, start, stop and query the daemon; load samples into pipelines."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer

from tomato_cli.cli.driver import driver_app
from tomato_cli.cli.lab_server import lab_app
from tomato_cli.cli.output import Common, ask, emit, fail, make_app, run_app, sub_app
from tomato_cli.cli.spinner import working
from tomato_cli.cli.status_view import by_name, pipeline_record, status_text, tomato22_shapes
from tomato_cli.rpc import Reply, Unreachable, call

app = make_app("Manage the tomato daemon and its pipelines.")
pipeline_app = sub_app("Load, eject, ready and unready pipelines.")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(driver_app, name="driver")
app.add_typer(lab_app, name="lab-server")

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
        reply.data = tomato22_shapes(what, reply.data, opts)
    emit(opts, reply, lambda data: status_text(what, data))


def _pipeline_reply(opts: Common, reply: Reply, pipeline: str) -> Reply:
    """A refused pipeline command still returns the pipeline's record, as tomato 2.2 does."""
    if reply.success:
        reply.data = pipeline_record(reply.data)
    else:
        found = ask(opts, "status", what="pipelines")
        if found.success:
            records = by_name([pipeline_record(p) for p in found.data])
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


@pipeline_app.command("unready")
def pipeline_unready(ctx: typer.Context, pipeline: str):
    """Mark a ready pipeline not ready, its sample kept: a running job goes on; no new job
    starts there until `tomato pipeline ready`."""
    reply = ask(ctx.obj, "pipeline_unready", pipeline=pipeline)
    emit(ctx.obj, _pipeline_reply(ctx.obj, reply, pipeline))


@pipeline_app.command("ready")
def pipeline_ready(ctx: typer.Context, pipeline: str):
    """Mark a pipeline ready."""
    reply = ask(ctx.obj, "pipeline_ready", pipeline=pipeline)
    emit(ctx.obj, _pipeline_reply(ctx.obj, reply, pipeline))


def main() -> None:
    run_app(app, "tomato")
