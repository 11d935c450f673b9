"""Lifecycle of the embedded Prefect server: one per daemon, SQLite in the datadir."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tomato_cli.rpc import LOOPBACK


@dataclass(frozen=True)
class PrefectTarget:
    """Where the Prefect API lives and how to reach it."""

    api_url: str
    embedded: bool
    home: Path | None = None
    api_key: str | None = None
    auth_string: str | None = None

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")

    def client_env(self) -> dict[str, str]:
        """Environment for any process (daemon, job runner) that talks to this server."""
        env = {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
            "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "1",
            "PREFECT_CLIENT_MAX_RETRIES": "8",
            "PREFECT_API_REQUEST_TIMEOUT": "30",
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        }
        if self.home is not None:
            env["PREFECT_HOME"] = str(self.home)
        if self.api_key:
            env["PREFECT_API_KEY"] = self.api_key
        if self.auth_string:
            env["PREFECT_API_AUTH_STRING"] = self.auth_string
        return env


def embedded_target(datadir: Path, port: int) -> PrefectTarget:
    return PrefectTarget(
        api_url=f"http://{LOOPBACK}:{port}/api", embedded=True, home=datadir / f"prefect-{port}"
    )


def server_env(target: PrefectTarget, port: int) -> dict[str, str]:
    assert target.home is not None
    env = dict(os.environ)
    env.update(target.client_env())
    env.update(
        {
            "PREFECT_SERVER_API_HOST": LOOPBACK,
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_API_DATABASE_CONNECTION_URL": (
                f"sqlite+aiosqlite:///{target.home / 'prefect.db'}"
            ),
            "PREFECT_API_DATABASE_TIMEOUT": "60",
            # a busy SQLite becomes a 503 that clients retry; log it, so it can be seen
            "PREFECT_API_LOG_RETRYABLE_ERRORS": "true",
            # Flow runs are started by the tomato daemon, never by a scheduler or worker;
            # waiting jobs are PAUSED without a timeout and must never expire or go Late;
            # cancels are handled by the daemon. Without these services (and without
            # automations and the event feed) the server needs far less CPU per job.
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
        }
    )
    if target.auth_string:
        env["PREFECT_SERVER_API_AUTH_STRING"] = target.auth_string
    return env


def start_embedded(target: PrefectTarget, port: int, logfile: Path) -> subprocess.Popen:
    """Start the server (prefect_server.py) in its own session; returns at once."""
    assert target.home is not None
    target.home.mkdir(parents=True, exist_ok=True)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "tomato_cli.orchestration.prefect_server",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
    ]
    with open(logfile, "ab") as log:
        return subprocess.Popen(
            cmd,
            env=server_env(target, port),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def is_healthy(target: PrefectTarget, timeout: float = 2.0) -> bool:
    request = urllib.request.Request(f"{target.api_url}/health")
    if target.auth_string:
        import base64

        token = base64.b64encode(target.auth_string.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def wait_healthy(target: PrefectTarget, timeout: float = 120.0, proc=None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_healthy(target):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.25)
    return False
