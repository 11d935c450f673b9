"""Where a tomato daemon listens, as its clients (the CLIs, :mod:`tomato_cli.client`) find it:
port 1234 unless given, and the ``[daemon] host`` of the settings file in the appdir."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tomato_cli.rpc import LOOPBACK

DEFAULT_PORT = 1234


def settings_host(settings_path: Path) -> str:
    """The ``[daemon] host`` of a settings file, read cheaply; 127.0.0.1 if it has none.

    A broken settings file is reported by the commands that load it, not here.
    """
    try:
        host = tomllib.loads(settings_path.read_text(encoding="utf-8"))["daemon"]["host"]
    except (OSError, ValueError, KeyError, TypeError):
        return LOOPBACK
    return host if isinstance(host, str) else LOOPBACK
