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
(which ``ps`` shows to every user) or logs. The superuser of the cluster has no password:
it is reached only through the cluster's own unix socket folder (mode 0700).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tomato_cli.models.credentials import read_auth_file, write_auth_file
from tomato_cli.models.errors import ConfigError

CONFIG_FILE = "lab-server.toml"
AUTH_FILE = "auth"
DB_PASSWORD_FILE = "db-password"
AUTH_USER = "tomato"
DB_NAME = "prefect"
DB_ROLE = "prefect"
PG_USER = "postgres"  # the OS user PostgreSQL runs as when we are root
DB_MODES = ("socket", "tcp")
HEALTHY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


class LabServerError(Exception):
    """A lab server cannot be set up, started or stopped; the message says why, in one line."""


@dataclass
class LabConfig:
    """How the lab server is reached. Kept in ``DIR/lab-server.toml``; holds no secret."""

    listen: str = "127.0.0.1"  # where the Prefect API listens
    api_port: int = 4200
    db: str = "socket"  # "socket": PostgreSQL on its unix socket only; "tcp": on 127.0.0.1
    db_port: int = 5433  # the TCP port, or the number in the socket's name
    allow_remote: bool = False  # listen on an address other than loopback
    tls_port: int = 0  # >0: a TLS proxy on listen:tls_port; Prefect itself on 127.0.0.1

    @property
    def prefect_host(self) -> str:
        """Where the Prefect server itself listens: behind the TLS proxy, on loopback only."""
        return "127.0.0.1" if self.tls_port else self.listen

    def check(self) -> None:
        for item in fields(self):
            wanted = type(getattr(LabConfig, item.name))
            if type(getattr(self, item.name)) is not wanted:
                raise LabServerError(f"{item.name} must be of type {wanted.__name__}")
        try:
            address = ipaddress.ip_address(self.listen)
        except ValueError:
            raise LabServerError(
                f"listen address must be an IP address, got {self.listen!r}"
            ) from None
        if not address.is_loopback and not self.allow_remote:
            raise LabServerError(
                f"{self.listen} is not a loopback address; pass --allow-remote to serve the lab "
                "there (and put TLS in front: see docs/scale-out.md)"
            )
        if self.db not in DB_MODES:
            raise LabServerError(f"db must be one of {', '.join(DB_MODES)}, got {self.db!r}")
        for name in ("api_port", "db_port", "tls_port"):
            port = getattr(self, name)
            if not 0 < port < 65536 and not (name == "tls_port" and port == 0):
                raise LabServerError(f"{name} must be between 1 and 65535, got {port}")
        if self.tls_port == self.api_port and ipaddress.ip_address(self.listen).is_loopback:
            raise LabServerError("tls_port and api_port must differ on a loopback address")

    def dump(self) -> str:
        lines = ["# tomato lab server (see docs/scale-out.md); no secrets in here"]
        for key, value in asdict(self).items():
            text = str(value).lower() if isinstance(value, bool) else json.dumps(value)
            lines.append(f"{key} = {text}")
        return "\n".join(lines) + "\n"


class LabServer:
    """The lab server in one folder: set up on the first start, then started and stopped."""

    def __init__(self, folder: Path):
        self.dir = Path(folder).expanduser().absolute()
        self.pg_dir = self.dir / "postgres"
        self.pg_data = self.pg_dir / "data"
        self.pg_sock = self.pg_dir / "sock"
        self.pg_log = self.pg_dir / "postgresql.log"
        self.prefect_home = self.dir / "prefect"
        self.pid_file = self.prefect_home / "server.pid"
        self.log_dir = self.dir / "log"
        self.server_log = self.log_dir / "prefect-server.log"
        self.auth_file = self.dir / AUTH_FILE
        self.db_password_file = self.dir / DB_PASSWORD_FILE
        self.config_file = self.dir / CONFIG_FILE
        self.tls_dir = self.dir / "tls"
        self.cert_file = self.tls_dir / "cert.pem"
        self.key_file = self.tls_dir / "key.pem"
        self.proxy_pid_file = self.tls_dir / "proxy.pid"
        self.proxy_log = self.log_dir / "tls-proxy.log"

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
            return f"https://{_url_host(config.listen)}:{config.tls_port}/api"
        return self.internal_url(config)

    def internal_url(self, config: LabConfig) -> str:
        """The Prefect server itself."""
        return f"http://{_url_host(config.prefect_host)}:{config.api_port}/api"

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
        if config.tls_port and not (self.cert_file.exists() and self.key_file.exists()):
            self._make_certificate(config)
        self.config_file.write_text(config.dump(), encoding="utf-8")
        self._ensure_secrets()
        auth = read_auth_file(self.auth_file)
        self._ensure_cluster(bindir)
        if not self._postgres_running(bindir):
            self._start_postgres(bindir, config)
        self._ensure_database(bindir, config)
        self._start_prefect(config, auth)
        if config.tls_port:
            self._start_proxy(config)
        return self.status()

    def stop(self) -> dict[str, Any]:
        """Stop the TLS proxy, Prefect, then PostgreSQL; returns what was running."""
        self.config()
        stopped = {"tls_proxy": False, "prefect": False, "postgres": False}
        pid = _our_pid(self.proxy_pid_file, "tls_proxy")
        if pid is not None:
            _stop_group(pid, STOP_TIMEOUT_S)
            stopped["tls_proxy"] = True
        self.proxy_pid_file.unlink(missing_ok=True)
        pid = self._server_pid()
        if pid is not None:
            _stop_group(pid, STOP_TIMEOUT_S)
            stopped["prefect"] = True
        self.pid_file.unlink(missing_ok=True)
        bindir = postgres_bindir()
        if self._postgres_running(bindir):
            self._pg(bindir, "pg_ctl", "-D", str(self.pg_data), "-m", "fast", "-w", "stop")
            stopped["postgres"] = True
        return stopped

    def status(self) -> dict[str, Any]:
        """Where the lab server is and what of it runs; never the credentials."""
        config = self.config()
        public_url = self.api_url(config)
        pid = self._server_pid()
        try:
            pg_running = self._postgres_running(postgres_bindir())
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
                "address": str(self.pg_sock) if config.db == "socket" else "127.0.0.1",
                "port": config.db_port,
                "log": str(self.pg_log),
            },
        }
        if config.tls_port:
            proxy = _our_pid(self.proxy_pid_file, "tls_proxy")
            data["tls"] = {
                "pid": proxy,
                "running": proxy is not None,
                "healthy": proxy is not None and api_healthy(public_url, str(self.cert_file)),
                "cert": str(self.cert_file),
                "log": str(self.proxy_log),
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
        password = urllib.parse.quote(self._db_password(), safe="")
        if config.db == "tcp":
            return f"postgresql+asyncpg://{DB_ROLE}:{password}@127.0.0.1:{config.db_port}/{DB_NAME}"
        query = urllib.parse.urlencode({"host": str(self.pg_sock), "port": config.db_port})
        return f"postgresql+asyncpg://{DB_ROLE}:{password}@/{DB_NAME}?{query}"

    # PostgreSQL
    def _pg(self, bindir: Path, tool: str, *args: str, stdin: str | None = None) -> str:
        """Run a PostgreSQL tool as the cluster's owner; its own error becomes ours."""
        cmd = [str(bindir / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", PG_USER, "--", *cmd]
        proc = subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            text=True,
            cwd=self.pg_dir if self.pg_dir.exists() else None,
            timeout=120,
        )
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
            why = lines[-1] if lines else f"exit code {proc.returncode}"
            raise LabServerError(f"{tool} failed: {why} (see {self.pg_log})")
        return proc.stdout

    def _postgres_running(self, bindir: Path) -> bool:
        if not (self.pg_data / "PG_VERSION").exists():
            return False
        try:
            self._pg(bindir, "pg_ctl", "-D", str(self.pg_data), "status")
        except LabServerError:
            return False
        return True

    def _ensure_cluster(self, bindir: Path) -> None:
        if (self.pg_data / "PG_VERSION").exists():
            return
        self.pg_dir.mkdir(mode=0o700, exist_ok=True)
        if os.geteuid() == 0:
            _give_to_pg_user(self.pg_dir)
        self._pg(
            bindir,
            "initdb",
            "-D",
            str(self.pg_data),
            "-U",
            "postgres",
            "--auth-local=trust",  # only through the socket folder, which only the owner enters
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-instructions",
        )
        with open(self.pg_data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# tomato lab server: addresses and ports, rewritten at each start\n")
            conf.write("include_if_exists = 'tomato.conf'\n")

    def _start_postgres(self, bindir: Path, config: LabConfig) -> None:
        self.pg_sock.mkdir(mode=0o700, exist_ok=True)
        if os.geteuid() == 0:
            _give_to_pg_user(self.pg_sock)
        listen = "" if config.db == "socket" else "127.0.0.1"
        settings = {
            "port": str(config.db_port),
            "listen_addresses": listen,
            "unix_socket_directories": str(self.pg_sock),
            "unix_socket_permissions": "0700",
            "password_encryption": "scram-sha-256",
            # a failed statement is logged without its text: it could hold a password
            "log_min_error_statement": "panic",
        }
        text = "".join(f"{k} = {_pg_quote(v)}\n" for k, v in settings.items())
        conf = self.pg_data / "tomato.conf"
        conf.write_text(text, encoding="utf-8")
        if os.geteuid() == 0:
            _give_to_pg_user(conf)
        self._pg(
            bindir, "pg_ctl", "-D", str(self.pg_data), "-l", str(self.pg_log), "-w", "-t", "60",
            "start",
        )  # fmt: skip

    def _ensure_database(self, bindir: Path, config: LabConfig) -> None:
        """The role and database of Prefect; the role's password follows DIR/db-password."""
        password = self._db_password().replace("'", "''")
        sql = f"""
SET log_min_error_statement = panic;
SELECT format('CREATE ROLE {DB_ROLE} LOGIN')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{DB_ROLE}')\\gexec
ALTER ROLE {DB_ROLE} PASSWORD '{password}';
SELECT format('CREATE DATABASE {DB_NAME} OWNER {DB_ROLE}')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DB_NAME}')\\gexec
"""
        self._pg(
            bindir,
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.pg_sock),
            "-p",
            str(config.db_port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            stdin=sql,  # on stdin: the password must not be on a command line
        )

    # Prefect
    def _server_pid(self) -> int | None:
        """The pid of our running Prefect server, if any."""
        return _our_pid(self.pid_file, "prefect server")

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
                    f"the Prefect server exited at start: {_last_line(self.server_log)} "
                    f"(see {self.server_log})"
                )
            if api_healthy(url):
                return
            time.sleep(0.25)
        _stop_group(proc.pid, STOP_TIMEOUT_S)
        self.pid_file.unlink(missing_ok=True)
        raise LabServerError(
            f"the Prefect server did not become healthy within {HEALTHY_TIMEOUT_S:.0f} s "
            f"(see {self.server_log})"
        )

    # TLS
    def _make_certificate(self, config: LabConfig) -> None:
        """A self-signed certificate for the listen address (hosts trust it as their CA)."""
        openssl = shutil.which("openssl")
        if openssl is None:
            raise LabServerError(
                f"openssl not found: install it, or put your own cert.pem and key.pem in "
                f"{self.tls_dir}"
            )
        self.tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        san = f"IP:{config.listen}"
        proc = subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825",
                "-subj", "/CN=tomato lab server", "-addext",
                f"subjectAltName={san},DNS:localhost",
                "-keyout", str(self.key_file), "-out", str(self.cert_file),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        if proc.returncode != 0:
            raise LabServerError(f"openssl failed: {_last_line_of(proc.stderr)}")
        self.key_file.chmod(0o600)

    def _start_proxy(self, config: LabConfig) -> None:
        cmd = [
            sys.executable,
            "-m",
            "tomato_cli.orchestration.tls_proxy",
            "--listen",
            f"{_url_host(config.listen)}:{config.tls_port}",
            "--to",
            f"{config.prefect_host}:{config.api_port}",
            "--cert",
            str(self.cert_file),
            "--key",
            str(self.key_file),
        ]
        with open(self.proxy_log, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.proxy_pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.proxy_pid_file.unlink(missing_ok=True)
                raise LabServerError(f"the TLS proxy exited at start: {_last_line(self.proxy_log)}")
            if api_healthy(self.api_url(config), str(self.cert_file)):
                return
            time.sleep(0.1)
        raise LabServerError(f"the TLS proxy does not answer (see {self.proxy_log})")


def postgres_bindir() -> Path:
    """The folder of PostgreSQL's server tools (Debian: /usr/lib/postgresql/<version>/bin)."""
    found = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.name)] or [0],
    )
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise LabServerError(
        "PostgreSQL is not installed (no initdb found); install Debian's `postgresql` package"
    )


def api_healthy(api_url: str, cafile: str | None = None, timeout: float = 2.0) -> bool:
    """True if ``/health`` answers 200 (it needs no credentials); ``cafile``: CA to trust."""
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(
            f"{api_url}/health", timeout=timeout, context=context
        ) as response:
            return response.status == 200
    except OSError:
        return False


def api_status(
    api_url: str, auth: str | None, cafile: str | None = None, timeout: float = 5.0
) -> int:
    """The HTTP status of an authenticated API call (``/admin/version``), with ``auth`` or none."""
    request = urllib.request.Request(f"{api_url}/admin/version")
    if auth is not None:
        token = base64.b64encode(auth.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _give_to_pg_user(path: Path) -> None:
    """As root: hand ``path`` to the ``postgres`` user, who must be able to reach it."""
    import pwd

    try:
        entry = pwd.getpwnam(PG_USER)
    except KeyError:
        raise LabServerError(
            f"as root, PostgreSQL must run as the `{PG_USER}` user, which does not exist "
            "(install Debian's `postgresql` package)"
        ) from None
    os.chown(path, entry.pw_uid, entry.pw_gid)
    probe = subprocess.run(["runuser", "-u", PG_USER, "--", "test", "-w", str(path)])
    if probe.returncode != 0:
        raise LabServerError(
            f"the `{PG_USER}` user cannot reach {path}: a folder above it is closed to other "
            "users (as root, PostgreSQL runs as that user); choose a folder it can enter"
        )


def _pg_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _stop_group(pid: int, timeout: float) -> None:
    """SIGTERM the process group led by ``pid``; SIGKILL what is left after ``timeout``."""
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        for proc in procs:
            try:
                proc.terminate()
            except psutil.Error:
                pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


def _our_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` if that process runs and its command line has ``marker``."""
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return None
    try:
        import psutil

        cmdline = " ".join(psutil.Process(pid).cmdline())
    except Exception:  # noqa: BLE001 - gone, or not ours to see
        return None
    return pid if marker in cmdline else None


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _last_line_of(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "no output"
