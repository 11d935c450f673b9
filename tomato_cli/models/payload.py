"""Payloads: the current version (2.2) and the upgrades from 0.1, 0.2, 1.0, 2.0 and 2.1."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tomato_cli.models.errors import PayloadError
from tomato_cli.models.files import first_error, load_mapping
from tomato_cli.units import to_seconds

MIN_SAMPLING_S = 1e-4
MAX_DURATION_S = 366 * 24 * 3600.0
CURRENT = "2.2"


def _seconds(value: Any) -> Any:
    if value is None:
        return None
    try:
        return to_seconds(value)
    except ValueError as exc:
        raise ValueError(str(exc)) from None


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid")
    component_role: str = Field(min_length=1)
    max_duration: float = Field(gt=0, le=MAX_DURATION_S)
    sampling_interval: float = Field(ge=MIN_SAMPLING_S, le=MAX_DURATION_S)
    polling_interval: float | None = Field(default=None, gt=0, le=3600)
    technique_name: str = Field(min_length=1)
    task_name: str | None = None
    task_params: dict[str, Any] = Field(default_factory=dict)
    start_with_task_name: str | None = None
    stop_with_task_name: str | None = None

    _durations = field_validator(
        "max_duration", "sampling_interval", "polling_interval", mode="before"
    )(_seconds)


class Sample(BaseModel):
    model_config = ConfigDict(extra="allow")
    identifier: str = Field(min_length=1)
    sample_is_parent: bool = True

    @field_validator("identifier", mode="before")
    @classmethod
    def _as_str(cls, value):
        return str(value) if isinstance(value, int | float) else value


class User(BaseModel):
    model_config = ConfigDict(extra="allow")
    identifier: str | None = None


class Output(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = None
    prefix: str | None = None
    repositories: list[str] = Field(default_factory=list)


class Snapshot(BaseModel):
    model_config = ConfigDict(extra="forbid")
    frequency: float = Field(gt=0, le=MAX_DURATION_S)
    path: str | None = None
    prefix: str | None = None

    _frequency = field_validator("frequency", mode="before")(_seconds)


class PayloadSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unlock_when_done: bool = False
    verbosity: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    output: Output = Field(default_factory=Output)
    snapshot: Snapshot | None = None

    @field_validator("verbosity", mode="before")
    @classmethod
    def _upper(cls, value):
        return value.upper() if isinstance(value, str) else value


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Literal["2.2"] = CURRENT
    settings: PayloadSettings = Field(default_factory=PayloadSettings)
    user: User | None = None
    sample: Sample
    method: list[Task] = Field(min_length=1)

    @model_validator(mode="after")
    def _triggers_exist(self) -> Payload:
        names = [t.task_name for t in self.method if t.task_name]
        if len(names) != len(set(names)):
            raise ValueError("task_name values must be unique")
        for i, task in enumerate(self.method):
            for trigger in (task.start_with_task_name, task.stop_with_task_name):
                if trigger is not None and trigger not in names:
                    raise ValueError(
                        f"method[{i}] waits for task_name {trigger!r}, which no task has"
                    )
        return self

    def techniques_by_role(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for task in self.method:
            out.setdefault(task.component_role, set()).add(task.technique_name)
        return out


# upgrades, one version step each
def _from_0x(data: dict[str, Any]) -> dict[str, Any]:
    """0.1/0.2 -> 1.0: device/technique/time/delay tasks, a `tomato` block."""
    out: dict[str, Any] = {"version": "1.0", "sample": data.get("sample")}
    method = []
    for task in data.get("method") or []:
        if not isinstance(task, dict):
            method.append(task)
            continue
        task = dict(task)
        new: dict[str, Any] = {
            "component_tag": task.pop("device", None),
            "technique_name": task.pop("technique", None),
            "max_duration": task.pop("time", None),
            "sampling_interval": task.pop("delay", None),
        }
        params = task.pop("technique_params", None) or {}
        params.update(task)  # anything else was a technique parameter in 0.x
        new["technique_params"] = params
        method.append(new)
    out["method"] = method
    out["settings"] = data.get("tomato") or {}
    return out


def _from_10(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data, version="2.0")
    out["method"] = [
        _rename(t, "technique_params", "task_params") for t in data.get("method") or []
    ]
    return out


def _from_20(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data, version="2.1")
    out["method"] = [
        _rename(t, "component_tag", "component_role") for t in data.get("method") or []
    ]
    return out


def _from_21(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data, version="2.2")
    sample = data.get("sample")
    if isinstance(sample, dict) and "name" in sample and "identifier" not in sample:
        out["sample"] = _rename(sample, "name", "identifier")
    return out


def _rename(obj: Any, old: str, new: str) -> Any:
    if isinstance(obj, dict) and old in obj:
        obj = dict(obj)
        obj[new] = obj.pop(old)
    return obj


UPGRADES = {"0.1": _from_0x, "0.2": _from_0x, "1.0": _from_10, "2.0": _from_20, "2.1": _from_21}


def upgrade(data: dict[str, Any], source: str = "payload") -> dict[str, Any]:
    """Bring a payload of any known version to the current one."""
    data = copy.deepcopy(data)
    version = str(data.get("version", CURRENT))
    while version != CURRENT:
        step = UPGRADES.get(version)
        if step is None:
            known = ", ".join([*UPGRADES, CURRENT])
            raise PayloadError(f"{source}: unknown payload version {version!r} (known: {known})")
        data = step(data)
        version = data["version"]
    return data


def parse_payload(data: dict[str, Any], source: str = "payload") -> Payload:
    if not isinstance(data, dict):
        raise PayloadError(f"{source}: must hold a mapping")
    try:
        return Payload.model_validate(upgrade(data, source))
    except ValidationError as exc:
        raise PayloadError(f"{source}: {first_error(exc)}") from None


def load_payload(path: Path) -> Payload:
    data = load_mapping(Path(path), "payload", PayloadError)
    return parse_payload(data, f"payload {path}")
