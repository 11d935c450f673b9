"""The devices file: devices, their channels, and pipelines of components with roles."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tomato_cli.models.component import Component
from tomato_cli.models.errors import ConfigError
from tomato_cli.models.files import format_error, load_mapping

WILDCARD = "-*"
EACH = "each"
MAX_DEVICES_FILE_BYTES = 10 << 20


def _int_as_str(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Device(BaseModel):
    """An instrument: a driver, an address, and the channels it offers."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    driver: str = Field(min_length=1)
    address: str
    channels: list[str] = Field(min_length=1)
    pollrate: int = Field(default=1, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)  # driver-specific, e.g. instrument

    @field_validator("channels", mode="before")
    @classmethod
    def _channels_as_str(cls, value: Any) -> Any:
        return [_int_as_str(v) for v in value] if isinstance(value, list) else value

    @field_validator("address", mode="before")
    @classmethod
    def _address_as_str(cls, value: Any) -> Any:
        return _int_as_str(value)


class PipelineEntry(BaseModel):
    """One role of a pipeline: a device and its channel (``each`` in wildcard pipelines)."""

    model_config = ConfigDict(extra="forbid")
    role: str = Field(min_length=1)
    device: str
    channel: str

    @field_validator("channel", mode="before")
    @classmethod
    def _channel_as_str(cls, value: Any) -> Any:
        return _int_as_str(value)

    @field_validator("role")
    @classmethod
    def _no_slash(cls, value: str) -> str:
        if "/" in value:  # roles name NetCDF groups
            raise ValueError(f"role {value!r} must not contain '/'")
        return value


class PipelineSpec(BaseModel):
    """A pipeline as written in the devices file (possibly a wildcard ``name-*``)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    devices: list[PipelineEntry] = Field(min_length=1)


class DevicesConfig(BaseModel):
    """The whole devices file."""

    model_config = ConfigDict(extra="forbid")
    devices: list[Device] = Field(default_factory=list)
    pipelines: list[PipelineSpec] = Field(default_factory=list)


class PipelineDef(BaseModel):
    """A concrete pipeline (wildcards expanded) with its components."""

    name: str
    components: list[Component]


def _check_devices(cfg: DevicesConfig, known_drivers: Collection[str] | None) -> dict[str, Device]:
    devices: dict[str, Device] = {}
    owners: dict[tuple[str, str, str], str] = {}
    for dev in cfg.devices:
        what = f"device {dev.name!r}"
        if dev.name in devices:
            raise ConfigError(f"{what} is defined twice")
        if known_drivers is not None and dev.driver not in known_drivers:
            known = ", ".join(sorted(known_drivers)) or "none"
            raise ConfigError(f"{what} uses unknown driver {dev.driver!r} (known: {known})")
        twice = sorted({ch for ch in dev.channels if dev.channels.count(ch) > 1})
        if twice:
            raise ConfigError(f"{what} lists channel {twice[0]!r} twice")
        if EACH in dev.channels:
            raise ConfigError(f"{what} has a channel named {EACH!r}, which is reserved")
        for ch in dev.channels:
            other = owners.setdefault((dev.driver, dev.address, ch), dev.name)
            if other != dev.name:
                raise ConfigError(
                    f"{what} and device {other!r} both define channel {ch!r} of "
                    f"{dev.driver} at address {dev.address!r}"
                )
        devices[dev.name] = dev
    return devices


def _check_pipeline(pip: PipelineSpec, devices: dict[str, Device]) -> None:
    what = f"pipeline {pip.name!r}"
    wildcard = pip.name.endswith(WILDCARD)
    roles: set[str] = set()
    eaches = 0
    for entry in pip.devices:
        if entry.role in roles:
            raise ConfigError(f"{what} uses role {entry.role!r} twice")
        roles.add(entry.role)
        dev = devices.get(entry.device)
        if dev is None:
            raise ConfigError(f"{what} uses device {entry.device!r}, which is not defined")
        if entry.channel == EACH:
            eaches += 1
            if not wildcard:
                raise ConfigError(
                    f"{what} uses channel 'each' (role {entry.role!r}) but its name does not "
                    f"end with '{WILDCARD}'"
                )
        elif entry.channel not in dev.channels:
            raise ConfigError(
                f"{what} uses channel {entry.channel!r} of device {dev.name!r}, which has "
                f"channels {', '.join(dev.channels)}"
            )
    if wildcard and eaches != 1:
        raise ConfigError(
            f"wildcard {what} needs exactly one entry with channel 'each', not {eaches}"
        )


def check_devices(cfg: DevicesConfig, known_drivers: Collection[str] | None = None) -> None:
    """Cross-check devices and pipelines; raise ConfigError (without a file name)."""
    devices = _check_devices(cfg, known_drivers)
    for pip in cfg.pipelines:
        _check_pipeline(pip, devices)
    names: set[str] = set()
    for pdef in expand_pipelines(cfg):
        if pdef.name in names:
            raise ConfigError(f"pipeline {pdef.name!r} is defined twice")
        names.add(pdef.name)
        used: set[tuple[str, str]] = set()
        for comp in pdef.components:
            if (comp.device, comp.channel) in used:
                raise ConfigError(
                    f"pipeline {pdef.name!r} uses channel {comp.channel!r} of device "
                    f"{comp.device!r} twice"
                )
            used.add((comp.device, comp.channel))


def load_devices(path: Path, known_drivers: Collection[str] | None = None) -> DevicesConfig:
    """Read and check a devices file (YAML or JSON); any mistake raises a one-line ConfigError."""
    path = Path(path)
    where = f"devices file {path}"
    data = load_mapping(path, "devices file", ConfigError, limit=MAX_DEVICES_FILE_BYTES)
    try:
        cfg = DevicesConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {format_error(exc, data)}") from None
    try:
        check_devices(cfg, known_drivers)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return cfg


def _instances(pip: PipelineSpec, devices: dict[str, Device]) -> list[tuple[str, str | None]]:
    each = [e for e in pip.devices if e.channel == EACH]
    if not (pip.name.endswith(WILDCARD) and each):
        return [(pip.name, None)]
    prefix = pip.name[: -len("*")]
    return [(prefix + ch, ch) for ch in devices[each[0].device].channels]


def expand_pipelines(cfg: DevicesConfig) -> list[PipelineDef]:
    """Concrete pipelines: each wildcard ``name-*`` becomes ``name-<channel>`` per channel."""
    devices = {d.name: d for d in cfg.devices}
    out: list[PipelineDef] = []
    for pip in cfg.pipelines:
        for name, channel in _instances(pip, devices):
            comps = []
            for entry in pip.devices:
                dev = devices[entry.device]
                ch = channel if entry.channel == EACH and channel else entry.channel
                comps.append(
                    Component.make(dev.driver, dev.name, dev.address, ch, entry.role, dev.options)
                )
            out.append(PipelineDef(name=name, components=comps))
    return out


def default_devices() -> DevicesConfig:
    """An example devices file: one 4-channel ``example_counter`` and a wildcard pipeline."""
    return DevicesConfig(
        devices=[
            Device(
                name="dev-counter",
                driver="example_counter",
                address="example-addr",
                channels=["1", "2", "3", "4"],
                pollrate=1,
            )
        ],
        pipelines=[
            PipelineSpec(
                name="pip-counter-*",
                devices=[PipelineEntry(role="counter", device="dev-counter", channel=EACH)],
            )
        ],
    )


def dump_devices(cfg: DevicesConfig) -> str:
    """The devices file as YAML (readable by :func:`load_devices`)."""
    data = cfg.model_dump(mode="json")
    for dev in data["devices"]:
        if not dev.get("options"):
            dev.pop("options", None)
    return yaml.safe_dump(data, sort_keys=False)
