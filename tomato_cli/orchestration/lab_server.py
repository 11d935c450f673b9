"""A lab-wide Prefect server: a private PostgreSQL cluster and a stock ``prefect server``.

Everything lives in one folder of the user's choosing (see docs/scale-out.md)::

    DIR/lab-server.toml     how it was set up: addresses and ports (no secrets)
    DIR/auth                user:password of the Prefect API (0600); hosts use it as auth_file
    DIR/db-password         password of the database role ``prefect`` (0600)
    DIR/postgres/           the cluster (data/, sock/, postgresql.log); owned by ``postgres``
                            when run as root
    DIR/prefect/            PREFECT_HOME of the server, and its pid file
    DIR/tls/                cert.pem, key.pem (self-signed unless you put yours there) and
                            the TLS proxy's pid file, with --tls-port
    DIR/log/                prefect-server.log, tls-proxy.log

Secrets reach the processes only through files and environments, never command lines
(which ``ps`` shows to every user) or logs. This module sets the folder up and runs the
Prefect server; the cluster is :mod:`~tomato_cli.orchestration.lab_postgres`, the TLS proxy
:mod:`~tomato_cli.orchestration.lab_tls`, the settings
:mod:`~tomato_cli.orchestration.lab_config`.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from tomato_cli.models.credentials import read_auth_file, write_auth_file
from tomato_cli.models.errors import ConfigError
from tomato_cli.orchestration.lab_config import CONFIG_FILE, LabConfig, LabServerError, url_host
from tomato_cli.orchestration.lab_postgres import DB_ROLE, PostgresCluster, postgres_bindir
from tomato_cli.orchestration.lab_processes import api_healthy, last_line, our_pid, stop_group
from tomato_cli.orchestration.lab_tls import TlsProxy

AUTH_FILE = "auth"
DB_PASSWORD_FILE = "db-password"
AUTH_USER = "tomato"
HEALTHY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


class LabServer:
    """The lab server in one folder: set up on the first start, then started and stopped."""

    def __init__(self, folder: Path):
        self.dir = Path(folder).expanduser().absolute()
        self.postgres = PostgresCluster(self.dir / "postgres")
        self.prefect_home = self.dir / "prefect"
        self.pid_file = self.prefect_home / "server.pid"
        self.log_dir = self.dir / "log"
        self.server_log = self.log_dir / "prefect-server.log"
        self.auth_file = self.dir / AUTH_FILE
        self.db_password_file = self.dir / DB_PASSWORD_FILE
        self.config_file = self.dir / CONFIG_FILE
        self.tls = TlsProxy(self.dir / "tls", self.log_dir / "tls-proxy.log")

    # configuration
    def load_config(self) -> LabConfig | None:
        if not self.config_file.exists():
            return None
        try:
            data = tomllib.loads(self.config_file.read_text(encoding="utf-8"))
            config = LabConfig(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise LabServerError(f"{self.config_file} is unusable: {exc}") from None
        config.check()
        return config

    def config(self) -> LabConfig:
        config = self.load_config()
        if config is None:
            raise LabServerError(
                f"{self.dir} holds no lab server (no {CONFIG_FILE}); "
                "start one with `tomato lab-server start --dir DIR`"
            )
        return config

    def api_url(self, config: LabConfig) -> str:
        """The API as hosts and browsers reach it (through the TLS proxy, if any)."""
        if config.tls_port:
            return f"https://{url_host(config.listen)}:{config.tls_port}/api"
        return self.internal_url(config)

    def internal_url(self, config: LabConfig) -> str:
        """The Prefect server itself."""
        return f"http://{url_host(config.prefect_host)}:{config.api_port}/api"

    # start, stop, status
    def start(self, **changes: Any) -> dict[str, Any]:
        """Set up on first use, then start PostgreSQL and Prefect; returns :meth:`status`.

        ``changes`` (the fields of :class:`LabConfig`; None: as before) are kept for later
        starts. PostgreSQL is started only if it does not run; a running Prefect server is
        refused.
        """
        config = self.load_config() or LabConfig()
        for key, value in changes.items():
            if value is not None:
                setattr(config, key, value)
        config.check()
        pid = self._server_pid()
        if pid is not None:
            raise LabServerError(f"the lab server in {self.dir} already runs (pid {pid})")
        bindir = postgres_bindir()
        self.dir.mkdir(parents=True, exist_ok=True)
        if config.tls_port and not self.tls.has_certificate():
            self.tls.make_certificate(config)
        self.config_file.write_text(config.dump(), encoding="utf-8")
        self._ensure_secrets()
        auth = read_auth_file(self.auth_file)
        self.postgres.ensure(bindir)
        if not self.postgres.running(bindir):
            self.postgres.start(bindir, config)
        self.postgres.ensure_database(bindir, config, self._db_password())
        self._start_prefect(config, auth)
        if config.tls_port:
            self.tls.start(config, self.api_url(config))
        return self.status()

    def stop(self) -> dict[str, Any]:
        """Stop the TLS proxy, Prefect, then PostgreSQL; returns what was running."""
        self.config()
        stopped = {"tls_proxy": False, "prefect": False, "postgres": False}
        pid = self.tls.pid()
        if pid is not None:
            stop_group(pid, STOP_TIMEOUT_S)
            stopped["tls_proxy"] = True
        self.tls.pid_file.unlink(missing_ok=True)
        pid = self._server_pid()
        if pid is not None:
            stop_group(pid, STOP_TIMEOUT_S)
            stopped["prefect"] = True
        self.pid_file.unlink(missing_ok=True)
        bindir = postgres_bindir()
        if self.postgres.running(bindir):
            self.postgres.stop(bindir)
            stopped["postgres"] = True
        return stopped

    def status(self) -> dict[str, Any]:
        """Where the lab server is and what of it runs; never the credentials."""
        config = self.config()
        public_url = self.api_url(config)
        pid = self._server_pid()
        try:
            pg_running = self.postgres.running(postgres_bindir())
        except LabServerError:
            pg_running = False
        healthy = pid is not None and api_healthy(self.internal_url(config))
        data: dict[str, Any] = {
            "dir": str(self.dir),
            "api_url": public_url,
            "ui_url": public_url.removesuffix("/api"),
            "auth_file": str(self.auth_file),
            "prefect": {
                "pid": pid,
                "running": pid is not None,
                "healthy": healthy,
                "address": f"{config.prefect_host}:{config.api_port}",
                "log": str(self.server_log),
            },
            "postgres": {
                "running": pg_running,
                "db": config.db,
                "address": str(self.postgres.sock) if config.db == "socket" else "127.0.0.1",
                "port": config.db_port,
                "log": str(self.postgres.log),
            },
        }
        if config.tls_port:
            proxy = self.tls.pid()
            data["tls"] = {
                "pid": proxy,
                "running": proxy is not None,
                "healthy": proxy is not None and api_healthy(public_url, str(self.tls.cert_file)),
                "cert": str(self.tls.cert_file),
                "log": str(self.tls.log),
            }
            data["prefect"]["healthy"] = healthy and data["tls"]["healthy"]
        return data

    # secrets
    def _ensure_secrets(self) -> None:
        """Make the API credentials and the database password on first use (mode 0600)."""
        if not self.auth_file.exists():
            write_auth_file(self.auth_file, f"{AUTH_USER}:{secrets.token_urlsafe(24)}")
        if not self.db_password_file.exists():
            write_auth_file(self.db_password_file, f"{DB_ROLE}:{secrets.token_urlsafe(24)}")
        for path in (self.auth_file, self.db_password_file):
            try:
                read_auth_file(path)
            except ConfigError as exc:
                raise LabServerError(str(exc)) from None

    def _db_password(self) -> str:
        return read_auth_file(self.db_password_file).partition(":")[2]

    def database_url(self, config: LabConfig) -> str:
        """The server's database URL; holds the password, so it goes in environments only."""
        return self.postgres.database_url(config, self._db_password())

    # Prefect
    def _server_pid(self) -> int | None:
        """The pid of our running Prefect server, if any."""
        return our_pid(self.pid_file, "prefect server")

    def server_env(self, config: LabConfig, auth: str) -> dict[str, str]:
        """The server's environment: the caller's (other PREFECT_* settings pass), and ours."""
        env = dict(os.environ)
        env.update(
            {
                "PREFECT_HOME": str(self.prefect_home),
                "PREFECT_API_DATABASE_CONNECTION_URL": self.database_url(config),
                "PREFECT_SERVER_API_AUTH_STRING": auth,
                # the server's own client calls (some services use the API)
                "PREFECT_API_URL": self.internal_url(config),
                "PREFECT_API_AUTH_STRING": auth,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
            }
        )
        if config.tls_port:
            # the UI in a browser calls the API where it is reached: through the proxy
            env.setdefault("PREFECT_UI_API_URL", self.api_url(config))
        return env

    def _start_prefect(self, config: LabConfig, auth: str) -> None:
        self.prefect_home.mkdir(mode=0o700, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            config.prefect_host,
            "--port",
            str(config.api_port),
        ]
        with open(self.server_log, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                env=self.server_env(config, auth),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.prefect_home,
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + HEALTHY_TIMEOUT_S
        url = self.internal_url(config)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise LabServerError(
                    f"the Prefect server exited at start: {last_line(self.server_log)} "
                    f"(see {self.server_log})"
                )
            if api_healthy(url):
                return
            time.sleep(0.25)
        stop_group(proc.pid, STOP_TIMEOUT_S)
        self.pid_file.unlink(missing_ok=True)
        raise LabServerError(
            f"the Prefect server did not become healthy within {HEALTHY_TIMEOUT_S:.0f} s "
            f"(see {self.server_log})"
        )
