"""The lab server's private PostgreSQL cluster, and Prefect's role and database in it.

The cluster lives in ``DIR/postgres`` (``data/``, ``sock/``, ``postgresql.log``) and, when we
run as root, belongs to the ``postgres`` user, as whom every tool runs. Its superuser has no
password: it is reached only through the cluster's own unix socket folder (mode 0700).
Prefect's role gets its password from the lab server's ``DIR/db-password``; a password goes
to ``psql`` on stdin only, never on a command line or into PostgreSQL's log.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

from tomato_cli.orchestration.lab_config import LabConfig, LabServerError

DB_NAME = "prefect"
DB_ROLE = "prefect"
PG_USER = "postgres"  # the OS user PostgreSQL runs as when we are root


class PostgresCluster:
    """The cluster in ``folder``: made on first use, started, stopped."""

    def __init__(self, folder: Path):
        self.dir = folder
        self.data = folder / "data"
        self.sock = folder / "sock"
        self.log = folder / "postgresql.log"

    def run(self, bindir: Path, tool: str, *args: str, stdin: str | None = None) -> str:
        """Run a PostgreSQL tool as the cluster's owner; its own error becomes ours."""
        cmd = [str(bindir / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", PG_USER, "--", *cmd]
        proc = subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            text=True,
            cwd=self.dir if self.dir.exists() else None,
            timeout=120,
        )
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
            why = lines[-1] if lines else f"exit code {proc.returncode}"
            raise LabServerError(f"{tool} failed: {why} (see {self.log})")
        return proc.stdout

    def running(self, bindir: Path) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        try:
            self.run(bindir, "pg_ctl", "-D", str(self.data), "status")
        except LabServerError:
            return False
        return True

    def ensure(self, bindir: Path) -> None:
        """Make the cluster (``initdb``) unless it exists."""
        if (self.data / "PG_VERSION").exists():
            return
        self.dir.mkdir(mode=0o700, exist_ok=True)
        if os.geteuid() == 0:
            _give_to_pg_user(self.dir)
        self.run(
            bindir,
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth-local=trust",  # only through the socket folder, which only the owner enters
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-instructions",
        )
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# tomato lab server: addresses and ports, rewritten at each start\n")
            conf.write("include_if_exists = 'tomato.conf'\n")

    def start(self, bindir: Path, config: LabConfig) -> None:
        self.sock.mkdir(mode=0o700, exist_ok=True)
        if os.geteuid() == 0:
            _give_to_pg_user(self.sock)
        listen = "" if config.db == "socket" else "127.0.0.1"
        settings = {
            "port": str(config.db_port),
            "listen_addresses": listen,
            "unix_socket_directories": str(self.sock),
            "unix_socket_permissions": "0700",
            "password_encryption": "scram-sha-256",
            # a failed statement is logged without its text: it could hold a password
            "log_min_error_statement": "panic",
        }
        text = "".join(f"{k} = {_pg_quote(v)}\n" for k, v in settings.items())
        conf = self.data / "tomato.conf"
        conf.write_text(text, encoding="utf-8")
        if os.geteuid() == 0:
            _give_to_pg_user(conf)
        self.run(
            bindir, "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "start",
        )  # fmt: skip

    def stop(self, bindir: Path) -> None:
        self.run(bindir, "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def ensure_database(self, bindir: Path, config: LabConfig, password: str) -> None:
        """The role and database of Prefect; the role's password is ``password``."""
        password = password.replace("'", "''")
        sql = f"""
SET log_min_error_statement = panic;
SELECT format('CREATE ROLE {DB_ROLE} LOGIN')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{DB_ROLE}')\\gexec
ALTER ROLE {DB_ROLE} PASSWORD '{password}';
SELECT format('CREATE DATABASE {DB_NAME} OWNER {DB_ROLE}')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DB_NAME}')\\gexec
"""
        self.run(
            bindir,
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.sock),
            "-p",
            str(config.db_port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            stdin=sql,  # on stdin: the password must not be on a command line
        )

    def database_url(self, config: LabConfig, password: str) -> str:
        """Prefect's database URL; holds the password, so it goes in environments only."""
        password = urllib.parse.quote(password, safe="")
        if config.db == "tcp":
            return f"postgresql+asyncpg://{DB_ROLE}:{password}@127.0.0.1:{config.db_port}/{DB_NAME}"
        query = urllib.parse.urlencode({"host": str(self.sock), "port": config.db_port})
        return f"postgresql+asyncpg://{DB_ROLE}:{password}@/{DB_NAME}?{query}"


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
