"""Where the Prefect API is, and the embedded server's process: one per daemon, SQLite in
the datadir."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tomato_cli.prefect_internals import service_env
from tomato_cli.processes import alive, kill
from tomato_cli.rpc import LOOPBACK

log = logging.getLogger(__name__)


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


def embedded_target(datadir: Path, port: int, auth_string: str | None = None) -> PrefectTarget:
    return PrefectTarget(
        api_url=f"http://{LOOPBACK}:{port}/api",
        embedded=True,
        home=datadir / f"prefect-{port}",
        auth_string=auth_string,
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
        }
    )
    # Flow runs are started by the tomato daemon, never by a scheduler or worker; waiting
    # jobs are PAUSED without a timeout and must never expire or go Late. Without these
    # services the server needs far less CPU per job.
    env.update(service_env())
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
        "-P",  # the current folder is not on sys.path (it may hold a package of ours' name)
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


class EmbeddedServer:
    """The daemon's own Prefect server process: started, adopted after a daemon restart,
    restarted when it dies or hangs, and stopped."""

    def __init__(self, target: PrefectTarget, port: int, logfile: Path) -> None:
        assert target.embedded and target.home is not None
        self.target = target
        self.port = port
        self.logfile = logfile
        self.proc: subprocess.Popen | None = None
        self.pidfile = target.home / "server.pid"

    def ensure(self) -> str | None:
        """Make the server healthy; None when it is, else why not."""
        if is_healthy(self.target):
            return None
        if self.proc is None or self.proc.poll() is not None:
            old = _read_pid(self.pidfile)
            if old and alive(old):
                # a server of ours from before a daemon restart, still starting up
                if wait_healthy(self.target, timeout=60):
                    return None
                kill(old)
            log.info("starting embedded Prefect server on port %s", self.port)
            self.proc = start_embedded(self.target, self.port, self.logfile)
            self.pidfile.write_text(str(self.proc.pid))
        if wait_healthy(self.target, timeout=120, proc=self.proc):
            return None
        if self.proc is not None and self.proc.poll() is None:
            log.error("embedded Prefect server is running but hung; restarting it")
            kill(self.proc.pid)
            self.proc.wait()
        why = self._last_words()
        if why:
            log.error("embedded Prefect server: %s", why)
            return why
        return "embedded Prefect server did not become healthy (see prefect-server.log)"

    def _last_words(self) -> str | None:
        """What the server process said when it refused to start (``tomato: ...``)."""
        try:
            with open(self.logfile, "rb") as log_file:
                log_file.seek(max(0, log_file.seek(0, 2) - 4096))
                lines = log_file.read().decode(errors="replace").splitlines()
        except OSError:
            return None
        said = [line.removeprefix("tomato: ") for line in lines if line.startswith("tomato: ")]
        return said[-1] if said else None

    def stop(self) -> None:
        pid = self.proc.pid if self.proc is not None else _read_pid(self.pidfile)
        if pid and alive(pid):
            kill(pid, graceful=True)
        self.pidfile.unlink(missing_ok=True)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text()) if path.exists() else None
    except ValueError:
        return None
