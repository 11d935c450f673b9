"""How a lab server is set up (``DIR/lab-server.toml``: addresses and ports, no secrets),
and the error of everything about lab servers."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, fields

CONFIG_FILE = "lab-server.toml"
DB_MODES = ("socket", "tcp")


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


def url_host(address: str) -> str:
    """An address as the host part of a URL (an IPv6 address in brackets)."""
    return f"[{address}]" if ":" in address else address
