"""Upgrading payload mappings of versions 0.1, 0.2, 1.0, 2.0 and 2.1 to 2.2, step by step."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

CURRENT = "2.2"
# tomato-prefect's own version: 2.2 with conditions (``stop_when``, ``end_when``), which
# tomato 2.2 does not have; it refuses this version rather than ignore them
OURS = "tomato-prefect-1"
Step = Callable[[dict[str, Any]], dict[str, Any]]

# 0.x task keys and their 1.0 names; any other 0.x task key is a technique parameter
_TASK_0X = {
    "device": "component_tag",
    "technique": "technique_name",
    "time": "max_duration",
    "delay": "sampling_interval",
}


def _rename(obj: Any, old: str, new: str, where: str) -> Any:
    if not isinstance(obj, dict) or old not in obj:
        return obj
    if new in obj:
        raise ValueError(f"{where}: both {old!r} and {new!r} given; use only {new!r}")
    return {(new if k == old else k): v for k, v in obj.items()}


def _map_tasks(data: dict[str, Any], step: Callable[[Any, str], Any]) -> None:
    method = data.get("method")
    if isinstance(method, list):
        data["method"] = [step(task, f"method[{i}]") for i, task in enumerate(method)]


def _task_0x(task: Any, where: str) -> Any:
    if not isinstance(task, dict):
        return task
    out: dict[str, Any] = {}
    params = dict(task.get("technique_params") or {})
    for key, value in task.items():
        if key in _TASK_0X:
            out[_TASK_0X[key]] = value
        elif key == "record_every_dt" and "delay" not in task:
            out["sampling_interval"] = value  # the 0.x name in potentiostat drivers
        elif key != "technique_params":
            params[key] = value
    technique = out.get("technique_name")
    if isinstance(technique, int | float) and not isinstance(technique, bool):
        out["technique_name"] = str(technique)  # YAML reads `technique: 1` as a number
    if params:
        out["technique_params"] = params
    return out


def _from_0x(data: dict[str, Any]) -> dict[str, Any]:
    """0.1/0.2 -> 1.0: device/technique/time/delay tasks; ``tomato`` block -> ``settings``."""
    data = _rename(data, "tomato", "settings", "top level")
    _map_tasks(data, _task_0x)
    return data


def _params_10(task: Any, where: str) -> Any:
    if isinstance(task, dict) and "technique_params" in task and task["technique_params"] is None:
        task = {k: v for k, v in task.items() if k != "technique_params"}  # 1.0's "none given"
    return _rename(task, "technique_params", "task_params", where)


def _from_10(data: dict[str, Any]) -> dict[str, Any]:
    """1.0 -> 2.0: ``technique_params`` -> ``task_params``."""
    _map_tasks(data, _params_10)
    return data


def _from_20(data: dict[str, Any]) -> dict[str, Any]:
    """2.0 -> 2.1: ``component_tag`` -> ``component_role``."""
    _map_tasks(data, lambda t, w: _rename(t, "component_tag", "component_role", w))
    return data


def _from_21(data: dict[str, Any]) -> dict[str, Any]:
    """2.1 -> 2.2: ``sample.name`` -> ``sample.identifier``."""
    data["sample"] = _rename(data.get("sample"), "name", "identifier", "sample")
    if data["sample"] is None:
        del data["sample"]
    return data


UPGRADES: dict[str, tuple[str, Step]] = {
    "0.1": ("1.0", _from_0x),
    "0.2": ("1.0", _from_0x),
    "1.0": ("2.0", _from_10),
    "2.0": ("2.1", _from_20),
    "2.1": ("2.2", _from_21),
}
VERSIONS = (*UPGRADES, CURRENT, OURS)


def original_version(data: dict[str, Any]) -> str:
    """The payload's version as a string ("2.2" when absent; YAML numbers accepted)."""
    version = data.get("version", CURRENT)
    if isinstance(version, int) and not isinstance(version, bool):
        return f"{version}.0"
    return str(version)


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """The payload mapping upgraded to version 2.2 (a copy if anything changes; ours is
    left as it is); ValueError on unknown versions."""
    version = original_version(data)
    if version not in VERSIONS:
        raise ValueError(
            f"version: unknown payload version {version!r} (known: {', '.join(VERSIONS)})"
        )
    if version in (CURRENT, OURS) and data.get("version") == version:
        return data  # nothing to change (stored jobs are read often): no copy needed
    data = copy.deepcopy(data)
    while version != CURRENT:
        version, step = UPGRADES[version]
        data = step(data)
    data["version"] = CURRENT
    return data
