"""The devices file: devices, their channels, and pipelines of components with roles."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tomato_cli.models.component import Component
from tomato_cli.models.errors import ConfigError
from tomato_cli.models.files import first_error, load_mapping

WILDCARD = "-*"
EACH = "each"


class Device(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    driver: str = Field(min_length=1)
    address: str
    channels: list[str] = Field(min_length=1)
    pollrate: int = Field(default=1, gt=0)

    @field_validator("channels", mode="before")
    @classmethod
    def _channels_as_str(cls, value):
        return [str(v) for v in value] if isinstance(value, list) else value

    @field_validator("address", mode="before")
    @classmethod
    def _address_as_str(cls, value):
        return str(value) if isinstance(value, int | float) else value


class PipelineEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str = Field(min_length=1)
    device: str
    channel: str

    @field_validator("channel", mode="before")
    @classmethod
    def _channel_as_str(cls, value):
        return str(value) if isinstance(value, int) else value


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    devices: list[PipelineEntry] = Field(min_length=1)


class DevicesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    devices: list[Device] = Field(default_factory=list)
    pipelines: list[PipelineSpec] = Field(default_factory=list)


class PipelineDef(BaseModel):
    name: str
    components: list[Component]


def _check(cfg: DevicesConfig, where: str, known_drivers: Collection[str] | None) -> None:
    devices: dict[str, Device] = {}
    for dev in cfg.devices:
        if dev.name in devices:
            raise ConfigError(f"{where}: device {dev.name!r} is defined twice")
        if known_drivers is not None and dev.driver not in known_drivers:
            raise ConfigError(
                f"{where}: device {dev.name!r} uses unknown driver {dev.driver!r} "
                f"(known: {', '.join(sorted(known_drivers))})"
            )
        if len(set(dev.channels)) != len(dev.channels):
            raise ConfigError(f"{where}: device {dev.name!r} lists a channel twice")
        devices[dev.name] = dev
    for pip in cfg.pipelines:
        wildcard = pip.name.endswith(WILDCARD)
        roles: set[str] = set()
        used: set[tuple[str, str]] = set()
        eaches = 0
        for entry in pip.devices:
            what = f"{where}: pipeline {pip.name!r}"
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
                        f"{what} uses channel 'each' but its name does not end with '-*'"
                    )
            elif entry.channel not in dev.channels:
                raise ConfigError(
                    f"{what} uses channel {entry.channel!r} of device {dev.name!r}, which has "
                    f"channels {', '.join(dev.channels)}"
                )
            if (entry.device, entry.channel) in used:
                raise ConfigError(f"{what} uses channel {entry.channel!r} of {dev.name!r} twice")
            used.add((entry.device, entry.channel))
        if wildcard and eaches != 1:
            raise ConfigError(
                f"{where}: wildcard pipeline {pip.name!r} needs exactly one entry with channel "
                "'each'"
            )
    names: set[str] = set()
    for pdef in expand_pipelines(cfg):
        if pdef.name in names:
            raise ConfigError(f"{where}: pipeline {pdef.name!r} is defined twice")
        names.add(pdef.name)


def load_devices(path: Path, known_drivers: Collection[str] | None = None) -> DevicesConfig:
    """Read and check a devices file (YAML or JSON)."""
    where = f"devices file {path}"
    data = load_mapping(Path(path), "devices file", ConfigError, limit=10 << 20)
    try:
        cfg = DevicesConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {first_error(exc)}") from None
    _check(cfg, where, known_drivers)
    return cfg


def expand_pipelines(cfg: DevicesConfig) -> list[PipelineDef]:
    """Pipelines with wildcards (``name-*`` with channel ``each``) expanded per channel."""
    devices = {d.name: d for d in cfg.devices}
    out: list[PipelineDef] = []
    for pip in cfg.pipelines:
        each = [e for e in pip.devices if e.channel == EACH]
        if pip.name.endswith(WILDCARD) and each:
            channels = devices[each[0].device].channels
            names = [(pip.name[: -len("*")] + ch, ch) for ch in channels]
        else:
            names = [(pip.name, None)]
        for name, channel in names:
            comps = []
            for entry in pip.devices:
                dev = devices[entry.device]
                ch = channel if entry.channel == EACH else entry.channel
                comps.append(Component.make(dev.driver, dev.name, dev.address, ch, entry.role))
            out.append(PipelineDef(name=name, components=comps))
    return out


def default_devices() -> DevicesConfig:
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
    return yaml.safe_dump(cfg.model_dump(), sort_keys=False)
