"""The lab server's TLS proxy: its certificate and its process.

The certificate in ``DIR/tls`` is self-signed for the listen address unless one was put
there; the proxy (:mod:`tomato_cli.orchestration.tls_proxy`) serves the API over TLS on
``listen:tls_port`` while Prefect itself listens on loopback only.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from tomato_cli.orchestration.lab_config import LabConfig, LabServerError, url_host
from tomato_cli.orchestration.lab_processes import api_healthy, last_line, last_line_of, our_pid


class TlsProxy:
    """The proxy of one lab server: ``folder`` holds its certificate, key and pid file."""

    def __init__(self, folder: Path, log: Path):
        self.dir = folder
        self.cert_file = folder / "cert.pem"
        self.key_file = folder / "key.pem"
        self.pid_file = folder / "proxy.pid"
        self.log = log

    def has_certificate(self) -> bool:
        return self.cert_file.exists() and self.key_file.exists()

    def pid(self) -> int | None:
        """The pid of our running TLS proxy, if any."""
        return our_pid(self.pid_file, "tls_proxy")

    def make_certificate(self, config: LabConfig) -> None:
        """A self-signed certificate for the listen address (hosts trust it as their CA)."""
        openssl = shutil.which("openssl")
        if openssl is None:
            raise LabServerError(
                f"openssl not found: install it, or put your own cert.pem and key.pem in {self.dir}"
            )
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
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
            raise LabServerError(f"openssl failed: {last_line_of(proc.stderr)}")
        self.key_file.chmod(0o600)

    def start(self, config: LabConfig, api_url: str) -> None:
        """Start the proxy in front of the Prefect server; returns once ``api_url`` answers."""
        cmd = [
            sys.executable,
            "-m",
            "tomato_cli.orchestration.tls_proxy",
            "--listen",
            f"{url_host(config.listen)}:{config.tls_port}",
            "--to",
            f"{config.prefect_host}:{config.api_port}",
            "--cert",
            str(self.cert_file),
            "--key",
            str(self.key_file),
        ]
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise LabServerError(f"the TLS proxy exited at start: {last_line(self.log)}")
            if api_healthy(api_url, str(self.cert_file)):
                return
            time.sleep(0.1)
        raise LabServerError(f"the TLS proxy does not answer (see {self.log})")
