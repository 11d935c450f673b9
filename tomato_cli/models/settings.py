"""The settings file (TOML): folders, devices file, driver settings, Prefect server."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tomato_cli.models.errors import ConfigError
from tomato_cli.models.files import first_error, read_text

SETTINGS_FILE = "settings.toml"


class JobsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    storage: Path


class DevicesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: Path


class PrefectSettings(BaseModel):
    """Which Prefect server to use: the embedded local one (no url) or an existing one."""

    model_config = ConfigDict(extra="forbid")
    url: str | None = None
    port: int | None = Field(default=None, gt=0, lt=65536)
    api_key: str | None = None
    auth_string: str | None = None
    ui: bool = True


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    datadir: Path
    logdir: Path
    jobs: JobsSettings
    devices: DevicesSettings
    drivers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    prefect: PrefectSettings = Field(default_factory=PrefectSettings)


def default_settings(appdir: Path, datadir: Path, logdir: Path) -> Settings:
    return Settings(
        datadir=datadir,
        logdir=logdir,
        jobs=JobsSettings(storage=datadir / "Jobs"),
        devices=DevicesSettings(config=appdir / "devices.yml"),
    )


def load_settings(path: Path) -> Settings:
    where = f"settings file {path}"
    if not Path(path).exists():
        raise ConfigError(f"{where}: does not exist")
    text = read_text(Path(path), "settings file", ConfigError)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: malformed TOML: {exc}") from None
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {first_error(exc)}") from None
    base = Path(path).parent
    devices = settings.devices.config
    if not devices.is_absolute():
        settings.devices.config = base / devices
    return settings


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def _toml_table(name: str, table: dict[str, Any], out: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and v is not None}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if name and (scalars or not tables):
        out.append(f"\n[{name}]")
    for key, value in scalars.items():
        out.append(f"{json.dumps(key)} = {_toml_value(value)}")
    for key, sub in tables.items():
        _toml_table(f"{name}.{json.dumps(key)}" if name else json.dumps(key), sub, out)


def write_settings(settings: Settings, path: Path) -> None:
    out: list[str] = ["# tomato settings"]
    _toml_table("", settings.model_dump(mode="json"), out)
    Path(path).write_text("\n".join(out) + "\n")
