"""A lab server (PostgreSQL + Prefect) and tomato hosts on their own loopback addresses."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.harness import BIN, Tomato, kill_leftovers
from tests.skips import skip_system
from tomato_cli.models import load_settings, write_settings
from tomato_cli.models.credentials import read_auth_file, write_auth_file
from tomato_cli.orchestration.lab_config import LabServerError
from tomato_cli.orchestration.lab_postgres import postgres_bindir
from tomato_cli.rpc import free_port


def postgres_or_skip() -> None:
    """Skip where PostgreSQL is missing; in CI it must be there (.ci/install installs it)."""
    try:
        postgres_bindir()
    except LabServerError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc}: .ci/install should have installed it")
        skip_system(f"{exc}; it cannot be installed here (needs root and apt-get)")


def lab_root() -> Path:
    """A folder that the ``postgres`` user can enter (pytest's own tmp folders are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="tomato-lab-test-"))
    root.chmod(0o755)
    return root


@contextmanager
def running_lab() -> Iterator[LabWorld]:
    """A lab server on PostgreSQL over loopback TCP, on free ports, in a folder of its own."""
    postgres_or_skip()
    world = LabWorld(lab_root())
    try:
        world.start(db="tcp")
        yield world
    finally:
        world.close()


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "tomato"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


@dataclass
class LabWorld:
    """One lab server in ``root / "lab"``, driven through ``tomato lab-server``."""

    root: Path
    api_port: int = field(default_factory=free_port)
    db_port: int = field(default_factory=free_port)
    outputs: list[str] = field(default_factory=list)  # every CLI output, for leak checks

    @property
    def dir(self) -> Path:
        return self.root / "lab"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api"

    @property
    def auth(self) -> str:
        return read_auth_file(self.dir / "auth")

    @property
    def secrets(self) -> list[str]:
        """What must never be seen: the API password, its Basic token, the DB password."""
        db = read_auth_file(self.dir / "db-password").partition(":")[2]
        return [self.auth.partition(":")[2], base64.b64encode(self.auth.encode()).decode(), db]

    def lab(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        proc = cli("lab-server", *args, "--dir", str(self.dir), timeout=timeout)
        self.outputs.append(proc.stdout + proc.stderr)
        return proc

    def ok(self, *args: str) -> Any:
        proc = self.lab(*args, "-y")
        doc = yaml.safe_load(proc.stdout)
        assert proc.returncode == 0 and doc["success"], proc.stdout + proc.stderr
        return doc["data"]

    def start(self, db: str = "tcp", tls_port: int = 0) -> dict[str, Any]:
        ports = ["--api-port", str(self.api_port), "--db-port", str(self.db_port)]
        return self.ok("start", *ports, "--db", db, "--tls-port", str(tls_port))

    def close(self) -> None:
        try:
            self.lab("stop", timeout=60)
        finally:
            kill_leftovers(self.root)
            shutil.rmtree(self.root, ignore_errors=True)


def configure_host(
    host: Tomato, lab: LabWorld, address: str, name: str, devices: Path | None = None
) -> Path:
    """``tomato init`` a host whose daemon listens on ``address`` and uses the lab server.

    The credentials go into a private copy in the host's appdir; returns its path.
    """
    host.init(devices)
    path = host.root / "app" / "settings.toml"
    settings = load_settings(path)
    auth_file = host.root / "app" / "lab-auth"
    write_auth_file(auth_file, lab.auth)
    settings.daemon.host = address
    settings.daemon.name = name
    settings.prefect.url = lab.api_url
    settings.prefect.auth_file = auth_file
    write_settings(settings, path)
    return auth_file
