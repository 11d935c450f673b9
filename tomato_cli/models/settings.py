"""The settings file (TOML): folders, devices file, driver settings, Prefect server."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import math
import re
import socket
import tomllib
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from tomato_cli.models.errors import ConfigError
from tomato_cli.models.files import format_error, one_line, read_text
from tomato_cli.paths import SETTINGS_FILE as SETTINGS_FILE  # re-exported

# keys that earlier versions of ours wrote and that are dropped without a warning
_SILENT = frozenset({"prefect.ui", "jobs.per_runner"})
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_HOST_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")


class JobsSettings(BaseModel):
    """Where job folders are kept, and the job runner that forks each job its process.

    A runner forks up to ``runner_max_jobs`` jobs before it is replaced. ``warm_runner``:
    keep one imported and waiting (about 100 MiB, a few seconds to start) always (true),
    only once a job is queued (false), or while a pipeline is ready (not set); one that
    is not wanted any more exits after 10 minutes without a job.
    ``per_runner`` of earlier versions is read and ignored: every job has its own process.
    """

    model_config = ConfigDict(extra="ignore")
    storage: Path
    runner_max_jobs: int = Field(default=1000, ge=1)
    warm_runner: bool | None = None


class DevicesSettings(BaseModel):
    """Which devices file to read."""

    model_config = ConfigDict(extra="ignore")
    config: Path


class PrefectSettings(BaseModel):
    """Which Prefect server to use: the embedded local one (no url) or an existing one.

    The basic-auth credentials (``user:password``) come from ``auth_file`` (a file only its
    owner can read), else from ``auth_string`` (kept for old settings files: anyone who can
    read the settings file learns them), else from the environment variable
    ``PREFECT_API_AUTH_STRING`` of ``tomato start``. See
    :func:`tomato_cli.models.credentials.read_auth_string`.
    """

    model_config = ConfigDict(extra="ignore")
    url: str | None = None  # None: the embedded local server
    port: int | None = Field(default=None, gt=0, lt=65536)  # embedded server; None: automatic
    api_key: str | None = None
    auth_file: Path | None = None
    auth_string: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_ui(cls, data: Any) -> Any:
        """``ui = true`` was written by the first ``tomato init`` and never did anything."""
        if isinstance(data, dict) and "ui" in data:
            data = {k: v for k, v in data.items() if k != "ui"}
        return data

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        if "@" in (urllib.parse.urlsplit(value).netloc or ""):
            # never echo the value: it holds a password
            raise ValueError("must not hold credentials (user:password@); use auth_file")
        return value


class DaemonSettings(BaseModel):
    """Where the daemon listens and the name it reports for its host.

    ``host`` must be a loopback address (127.0.0.0/8 or ::1) unless ``allow_remote`` is set:
    the daemon's API has no authentication. Several daemons on one machine can stand for
    several hosts by listening on 127.0.0.2, 127.0.0.3, ...
    """

    model_config = ConfigDict(extra="ignore")
    host: str = "127.0.0.1"
    name: str | None = None  # None: the machine's host name
    allow_remote: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _HOST_NAME.match(value):
            raise ValueError(f"must be 1-63 letters, digits, '-', '_' or '.', got {value!r}")
        return value

    @model_validator(mode="after")
    def _loopback_unless_allowed(self) -> DaemonSettings:
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            raise ValueError(f"host must be an IP address, got {self.host!r}") from None
        if not address.is_loopback and not self.allow_remote:
            raise ValueError(
                f"host {self.host} is not a loopback address; the daemon's API has no "
                "authentication (set allow_remote = true to listen there anyway)"
            )
        return self

    @property
    def host_name(self) -> str:
        return self.name or socket.gethostname()


class LegacySettings(BaseModel):
    """Where tomato 2.x driver packages live: a virtual environment of their own.

    ``venv`` defaults to ``<datadir>/legacy-drivers`` (see :meth:`Settings.legacy_venv`).
    """

    model_config = ConfigDict(extra="ignore")
    venv: Path | None = None


class Settings(BaseModel):
    """The whole settings file.

    Keys tomato-prefect does not use (such as tomato 2.2's ``jobs.dbpath``) are ignored,
    never refused: :func:`load_settings` lists them in ``unused`` for a warning.
    ``repositories`` (as in tomato 2.2) names the repositories a payload's
    ``settings.output.repositories`` may ask for; a job that asks for one gets an RO-Crate.
    """

    model_config = ConfigDict(extra="ignore")
    datadir: Path
    logdir: Path
    jobs: JobsSettings
    devices: DevicesSettings
    prefect: PrefectSettings = Field(default_factory=PrefectSettings)
    legacy: LegacySettings = Field(default_factory=LegacySettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    repositories: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # last, as tomato 2.2 writes it: keys appended to the file land in [drivers]
    drivers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    _unused: list[str] = PrivateAttr(default_factory=list)

    @property
    def unused(self) -> list[str]:
        """Keys of the settings file that tomato-prefect ignores (dotted, in file order)."""
        return list(self._unused)

    def legacy_venv(self) -> Path:
        """The virtual environment that holds tomato 2.x driver packages."""
        return self.legacy.venv or Path(self.datadir) / "legacy-drivers"


def _unknown_keys(data: Mapping[str, Any], model: type[BaseModel], prefix: str = "") -> list[str]:
    """Keys of ``data`` that ``model`` (and its nested models) do not declare."""
    out: list[str] = []
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            out.append(f"{prefix}{_key(key)}")
            continue
        sub = field.annotation
        if isinstance(value, dict) and isinstance(sub, type) and issubclass(sub, BaseModel):
            out += _unknown_keys(value, sub, f"{prefix}{_key(key)}.")
    return out


def unused_driver_keys(
    drivers: Mapping[str, Mapping[str, Any]], known: Mapping[str, frozenset[str] | None]
) -> list[str]:
    """``drivers.<name>.<key>`` for each key a driver does not read.

    ``known`` maps a driver name to the keys it reads; drivers that do not say (None, or
    absent) are not checked.
    """
    out = []
    for name, table in drivers.items():
        keys = known.get(name)
        if keys is None:
            continue
        out += [f"drivers.{_key(name)}.{_key(k)}" for k in table if k not in keys]
    return out


def default_settings(appdir: Path, datadir: Path, logdir: Path) -> Settings:
    """Settings with jobs under ``datadir/Jobs`` and the devices file ``appdir/devices.yml``."""
    return Settings(
        datadir=datadir,
        logdir=logdir,
        jobs=JobsSettings(storage=Path(datadir) / "Jobs"),
        devices=DevicesSettings(config=Path(appdir) / "devices.yml"),
    )


def _resolve(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base / path


def load_settings(path: Path) -> Settings:
    """Read a settings file; relative paths in it are taken relative to its folder."""
    path = Path(path)
    where = f"settings file {path}"
    if not path.is_file():
        raise ConfigError(f"{where}: does not exist (run `tomato init` to create one)")
    text = read_text(path, "settings file", ConfigError)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: malformed TOML: {one_line(exc)}") from None
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {format_error(exc, data)}") from None
    settings._unused = [k for k in _unknown_keys(data, Settings) if k not in _SILENT]
    base = path.parent.absolute()
    settings.datadir = _resolve(settings.datadir, base)
    settings.logdir = _resolve(settings.logdir, base)
    settings.jobs.storage = _resolve(settings.jobs.storage, base)
    settings.devices.config = _resolve(settings.devices.config, base)
    if settings.legacy.venv is not None:
        settings.legacy.venv = _resolve(settings.legacy.venv, base)
    if settings.prefect.auth_file is not None:
        settings.prefect.auth_file = _resolve(settings.prefect.auth_file, base)
    return settings


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    """One TOML value (inline tables for nested mappings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{_key(str(k))} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{" + ", ".join(items) + "}"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) to TOML")


def _table(name: str, table: dict[str, Any], out: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and v is not None}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    unset = bool(table) and all(v is None for v in table.values())  # all defaults: no table
    if name and (scalars or not tables) and not unset:
        out.append(f"\n[{name}]")
    for key, value in scalars.items():
        out.append(f"{_key(key)} = {_value(value)}")
    for key, sub in tables.items():
        _table(f"{name}.{_key(key)}" if name else _key(key), sub, out)


# What tomato 2.2's `tomato init` writes under an empty [repositories]: the line users (and
# 2.2's own test suite) uncomment to get RO-Crates for the repository "default"
REPOSITORIES_EXAMPLE = (
    "# default.endpoint = 'https://example.endpoint/'",
    "# default.api_key = 'abcd23abcd23'",
)


def dump_settings(settings: Settings) -> str:
    """The settings as TOML text."""
    out: list[str] = ["# tomato settings"]
    _table("", settings.model_dump(), out)
    if not settings.repositories:
        at = out.index("\n[repositories]") + 1
        out[at:at] = REPOSITORIES_EXAMPLE
    return "\n".join(out) + "\n"


def write_settings(settings: Settings, path: Path) -> None:
    """Write the settings file (readable by :func:`load_settings`)."""
    Path(path).write_text(dump_settings(settings), encoding="utf-8")
