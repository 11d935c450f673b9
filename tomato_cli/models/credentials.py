"""Basic-auth credentials (``user:password``) for a Prefect server, from a file or the environment.

Credentials never go on a command line (``ps`` shows command lines to every user) and are
never echoed in an error: messages name the file or the variable, not the value.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from tomato_cli.models.errors import ConfigError
from tomato_cli.models.settings import PrefectSettings

AUTH_ENV = "PREFECT_API_AUTH_STRING"


def check_auth_string(value: str, where: str) -> str:
    """``value`` stripped if it is one ``user:password`` line; else a ConfigError."""
    value = value.strip()
    user, colon, password = value.partition(":")
    if not colon or not user or not password or "\n" in value or "\r" in value:
        raise ConfigError(f"{where} must hold one line user:password")
    return value


def read_auth_file(path: Path, label: str = "auth file") -> str:
    """The ``user:password`` in ``path``, which only its owner may read or write."""
    where = f"{label} {path}"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{where} is not a file")
    if mode & 0o077:
        raise ConfigError(
            f"{where} can be read or written by others (mode {stat.S_IMODE(mode):04o}); "
            f"run `chmod 600 {path}`"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where} cannot be read: {type(exc).__name__}") from None
    return check_auth_string(text, where)


def write_auth_file(path: Path, value: str) -> None:
    """Write ``user:password`` to a new file that only its owner can read (mode 0600)."""
    check_auth_string(value, "the credentials")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(value + "\n")


def read_auth_string(cfg: PrefectSettings, environ: Mapping[str, str] | None = None) -> str | None:
    """The credentials for the Prefect server of ``cfg``, or None for none.

    In order: ``auth_file``, ``auth_string`` (readable by anyone who can read the settings
    file), then ``PREFECT_API_AUTH_STRING`` in the environment.
    """
    if cfg.auth_file is not None:
        return read_auth_file(Path(cfg.auth_file), "[prefect] auth_file")
    if cfg.auth_string:
        return check_auth_string(cfg.auth_string, "[prefect] auth_string")
    value = (os.environ if environ is None else environ).get(AUTH_ENV)
    if value:
        return check_auth_string(value, f"environment variable {AUTH_ENV}")
    return None
