"""Lab jobs from the terminal: ``ketchup submit --lab`` (``--wait``) and ``ketchup status --lab``.

No daemon is asked: a lab job becomes a run of ``tomato-job/lab`` on the lab server, and the
first tomato host with a ready pipeline that holds its sample takes it (see
:mod:`tomato_cli.orchestration.lab_queue`). It is followed on the lab server too, whichever
host takes it, from the state that host's daemon writes on its flow run. Prefect's client is
imported only here.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer

from tomato_cli.cli.output import Common, emit, fail, table, to_yaml
from tomato_cli.models import ConfigError, Payload
from tomato_cli.models.job import FINAL_STATUSES
from tomato_cli.rpc import Reply

POLL_S = 1.0  # one read of the run (and of its new log lines) per second
GIVE_UP_S = 120.0  # a lab server silent this long ends the follow (a restart takes ~20 s)
COLUMNS = ["jobid", "status", "host", "pipeline", "sample", "priority", "state", "flow_run_id"]


def lab_server(opts: Common, server: str | None) -> tuple[str, str | None]:
    """The lab server's API address and credentials: ``--server``, else the settings file's
    ``[prefect] url``; credentials from the settings' ``auth_file`` or the environment."""
    from tomato_cli.models import load_settings
    from tomato_cli.models.credentials import AUTH_ENV, read_auth_string
    from tomato_cli.models.settings import PrefectSettings

    cfg = PrefectSettings()
    if opts.settings_path.exists():
        try:
            cfg = load_settings(opts.settings_path).prefect
        except ConfigError as exc:
            fail(opts, str(exc))
    url = server or cfg.url
    if not url:
        fail(
            opts,
            f"no lab server: give --server URL, or set [prefect] url in {opts.settings_path}",
        )
    if not url.startswith(("http://", "https://")):
        fail(opts, f"--server must start with http:// or https://, got {url!r}")
    try:
        auth = read_auth_string(cfg)
    except ConfigError as exc:
        fail(opts, str(exc))
    return url.rstrip("/"), auth or os.environ.get(AUTH_ENV)


@contextmanager
def lab_client(opts: Common, server: str | None) -> Iterator[tuple[Any, str]]:
    """Prefect's client for the lab server, and the server's address. Prefect reads its
    settings when first imported: nothing may import it before this sets them."""
    url, auth = lab_server(opts, server)
    os.environ["PREFECT_API_URL"] = url
    if auth:
        os.environ["PREFECT_API_AUTH_STRING"] = auth
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        yield client, url


def _refusal(exc: Exception, url: str, what: str) -> str:
    """One line for a failed call to the lab server."""
    from prefect.exceptions import PrefectHTTPStatusError

    if isinstance(exc, PrefectHTTPStatusError):
        code = exc.response.status_code
        why = "the credentials were refused" if code == 401 else f"HTTP {code}"
        return f"the lab server at {url} refused {what}: {why}"
    return f"the lab server at {url} does not answer ({type(exc).__name__})"


def submit_to_lab(
    opts: Common, payload: Payload, source: str, server: str | None, pin: str | None, wait: bool
) -> NoReturn:
    """Put the job in the lab queue; with ``wait``, follow it to its end."""
    from tomato_cli.names import FLOW_NAME, LAB_DEPLOYMENT
    from tomato_cli.orchestration.lab_runs import lab_run_view

    parameters: dict[str, Any] = {"payload": payload.model_dump(mode="json", exclude_none=True)}
    if pin:
        parameters["host"] = pin
    sample = payload.sample.identifier
    with lab_client(opts, server) as (client, url):
        from prefect.exceptions import ObjectNotFound

        try:
            deployment = client.read_deployment_by_name(f"{FLOW_NAME}/{LAB_DEPLOYMENT}")
            run = client.create_flow_run_from_deployment(
                deployment.id,
                parameters=parameters,
                tags=["tomato", "lab", f"sample:{sample}"],
            )
        except ObjectNotFound:
            fail(opts, f"no tomato host has joined the lab server at {url} yet")
        except Exception as exc:
            fail(opts, _refusal(exc, url, source))
        who = f"host {pin}" if pin else "the first tomato host"
        msg = (
            f"lab job submitted as flow run {run.name} ({run.id}): {who} with a ready pipeline "
            f"that holds sample {sample!r} takes it"
        )
        if wait:
            if not opts.as_yaml:
                print(msg, flush=True)
            follow_lab_run(opts, client, url, str(run.id))
        data = lab_run_view(run) | {"server": url}
    emit(opts, Reply(True, msg, data))


def lab_status(opts: Common, server: str | None, ref: str, follow: bool) -> NoReturn:
    """``ketchup status --lab REF``: the job's flow run on the lab server (``--watch``: follow)."""
    from tomato_cli.orchestration.lab_runs import LabJobNotFound, find_lab_run, lab_run_view

    with lab_client(opts, server) as (client, url):
        try:
            run = find_lab_run(client, ref)
        except LabJobNotFound as exc:
            fail(opts, f"{exc} (lab server {url})")
        except Exception as exc:
            fail(opts, _refusal(exc, url, "the query"))
        if follow:
            follow_lab_run(opts, client, url, str(run.id))
        view = lab_run_view(run) | {"server": url}
    emit(opts, Reply(True, "", [view]), lambda views: lab_text(views[0]))


def lab_text(view: dict[str, Any]) -> str:
    lines = [table([view], COLUMNS)]
    if view["host"] is None and view["status"] == "q":
        who = f"host {view['pinned']}" if view.get("pinned") else "a host"
        lines.append(f"waiting in the lab queue of {view['server']} for {who} to take it")
    if view["message"] and view["status"] in ("ce", "cd"):
        lines.append(f"{view['status']}: {view['message']}")
    return "\n".join(lines)


def _progress(view: dict[str, Any]) -> str:
    if view["host"] is None:
        return f"waiting in the lab queue ({view['state']})"
    where = f" on pipeline {view['pipeline']}" if view["pipeline"] else ""
    return f"job {view['jobid']} on host {view['host']}: {view['status']}{where}"


def follow_lab_run(opts: Common, client: Any, url: str, run_id: str) -> NoReturn:
    """Follow a lab job until it ends, whichever host takes it; exit as ``--wait`` does.

    Text output: a line for each change (queued, taken by a host as a job, its status) and
    the lines tomato writes on the run's log while it waits (why hosts cannot take it).
    ``-y``: one mapping once it has ended.
    """
    from prefect.exceptions import ObjectNotFound

    from tomato_cli.cli.watch import EXIT_CODES
    from tomato_cli.orchestration.lab_runs import lab_run_view

    shown, read_logs_to, silent_since = "", None, None
    try:
        while True:
            try:
                view = lab_run_view(client.read_flow_run(run_id)) | {"server": url}
                if not opts.as_yaml and view["host"] is None:
                    read_logs_to = _print_new_logs(client, run_id, read_logs_to)
            except ObjectNotFound:
                fail(opts, f"flow run {run_id} was deleted from the lab server at {url}")
            except Exception as exc:
                silent_since = silent_since or time.monotonic()
                if time.monotonic() - silent_since > GIVE_UP_S:
                    fail(opts, f"{_refusal(exc, url, 'the query')} for {GIVE_UP_S:.0f} s")
                time.sleep(POLL_S)
                continue
            silent_since = None
            line = _progress(view)
            if line != shown and not opts.as_yaml:
                print(line, flush=True)
            shown = line
            if view["status"] in FINAL_STATUSES:
                break
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        sys.stderr.write(f"stopped following; lab job {run_id} goes on\n")
        raise typer.Exit(130) from None
    status = view["status"]
    who = f"job {view['jobid']} on host {view['host']}" if view["host"] else f"lab job {run_id}"
    msg = f"{who} ended with status {status}"
    if status != "c" and view["message"]:
        msg += f": {view['message']}"
    if opts.as_yaml:
        sys.stdout.write(to_yaml(Reply(status == "c", msg, view).as_dict()))
    else:
        print(msg, flush=True)
    raise typer.Exit(EXIT_CODES.get(status, 1))


def _print_new_logs(client: Any, run_id: str, after: Any) -> Any:
    """Print tomato's log lines on the run newer than ``after``; the newest one's time."""
    from prefect.client.schemas.filters import (
        LogFilter,
        LogFilterFlowRunId,
        LogFilterName,
        LogFilterTimestamp,
    )
    from prefect.client.schemas.sorting import LogSort

    flt = LogFilter(
        flow_run_id=LogFilterFlowRunId(any_=[run_id]),
        name=LogFilterName(any_=["tomato"]),
        timestamp=LogFilterTimestamp(after_=after) if after is not None else None,
    )
    for entry in client.read_logs(log_filter=flt, sort=LogSort.TIMESTAMP_ASC, limit=50):
        if after is None or entry.timestamp > after:
            print(f"  {entry.message}", flush=True)
            after = entry.timestamp
    return after
