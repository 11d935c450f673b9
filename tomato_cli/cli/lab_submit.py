"""``ketchup submit --lab``: a job for the whole lab, straight into the lab server's queue.

No daemon is asked: the job becomes a run of ``tomato-job/lab`` on the lab server, and the
first tomato host with a ready pipeline that holds its sample takes it (see
:mod:`tomato_cli.orchestration.lab_queue`). Prefect's client is imported only here.
"""

from __future__ import annotations

import os
from typing import Any

from tomato_cli.cli.output import Common, fail
from tomato_cli.models import ConfigError, Payload
from tomato_cli.rpc import Reply


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


def submit_to_lab(
    opts: Common, payload: Payload, source: str, server: str | None, pin: str | None
) -> Reply:
    from tomato_cli.names import FLOW_NAME, LAB_DEPLOYMENT

    url, auth = lab_server(opts, server)
    os.environ["PREFECT_API_URL"] = url
    if auth:
        os.environ["PREFECT_API_AUTH_STRING"] = auth
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    parameters: dict[str, Any] = {"payload": payload.model_dump(mode="json", exclude_none=True)}
    if pin:
        parameters["host"] = pin
    sample = payload.sample.identifier
    try:
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(f"{FLOW_NAME}/{LAB_DEPLOYMENT}")
            run = client.create_flow_run_from_deployment(
                deployment.id,
                parameters=parameters,
                tags=["tomato", "lab", f"sample:{sample}"],
            )
    except ObjectNotFound:
        return Reply(False, f"no tomato host has joined the lab server at {url} yet")
    except PrefectHTTPStatusError as exc:
        code = exc.response.status_code
        why = "the credentials were refused" if code == 401 else f"HTTP {code}"
        return Reply(False, f"the lab server at {url} refused {source}: {why}")
    except Exception as exc:  # the server is not there
        return Reply(False, f"the lab server at {url} does not answer ({type(exc).__name__})")
    who = f"host {pin}" if pin else "the first tomato host"
    msg = (
        f"lab job submitted as flow run {run.name}: {who} with a ready pipeline that holds "
        f"sample {sample!r} takes it"
    )
    data = {"flow_run_id": str(run.id), "name": run.name, "host": pin, "server": url}
    return Reply(True, msg, data)
