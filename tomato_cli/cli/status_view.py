"""How ``tomato status`` shows the daemon's answer: as text, or with ``-y`` in 2.2's shapes.

With ``-y`` each section is a mapping keyed by name, as tomato 2.2 gives it, and the whole
status carries 2.2's keys next to ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tomato_cli.cli.output import Common, table


def _sync_text(sync: dict[str, Any]) -> str:
    """The truth about the Prefect sync, in words."""
    if sync["state"] == "lagging":
        return f"lagging by {sync['lagging']} change(s)"
    if sync["state"] == "failing":
        return f"failing: {sync['error']}"
    return str(sync["state"])


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A list of records as tomato 2.2 gives them: a mapping keyed by ``name``."""
    return {item["name"]: item for item in items}


def pipeline_record(pip: dict[str, Any]) -> dict[str, Any]:
    """A pipeline as tomato 2.2 shows it (components by name), with our component records."""
    comps = pip.get("components") or []
    names = [c["name"] if isinstance(c, dict) else c for c in comps]
    return {**pip, "components": names}


def tomato22_shapes(what: str, data: Any, opts: Common) -> Any:
    """``-y`` data in tomato 2.2's shapes: sections keyed by name; the whole status with
    2.2's keys (``status``, ``settings``, ``pips``, ``devs``, ``drvs``, ``cmps``) next to ours."""
    if what == "pipelines":
        return by_name([pipeline_record(p) for p in data])
    if what in ("devices", "components"):
        return by_name(data)
    settings = _settings_dict(Path(data["settings"]) if what == "all" else opts.settings_path)
    drivers = settings.get("drivers", {})
    if what == "drivers":
        return by_name([_driver_record(d, drivers) for d in data])
    return {
        **data,
        "status": "running",
        "settings_file": data["settings"],
        "settings": settings,
        "pips": by_name([pipeline_record(p) for p in data["pipelines"]]),
        "devs": by_name(data["devices"]),
        "drvs": by_name([_driver_record(d, drivers) for d in data["drivers"]]),
        "cmps": by_name(data["components"]),
    }


def _driver_record(drv: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    return {"version": None, "settings": settings.get(drv["name"], {}), **drv}


def _settings_dict(path: Path) -> dict[str, Any]:
    from tomato_cli.models import ConfigError, load_settings

    try:
        return load_settings(path).model_dump(mode="json")
    except ConfigError:
        return {}


def status_text(what: str, data: Any) -> str:
    if what == "pipelines":
        return table(data, ["name", "ready", "sampleid", "jobid"])
    if what == "drivers":
        columns = ["name", "origin", "version", "state", "pid", "port", "restarts", "error"]
        return table(data, columns)
    if what == "devices":
        return table(data, ["name", "driver", "address", "channels", "pollrate"])
    if what == "components":
        return table(data, ["name", "role", "device", "capabilities"])
    prefect = data["prefect"]
    host = data.get("host") or {}
    lines = [
        f"host:       {host.get('name', '-')} ({host.get('address', '127.0.0.1')})",
        f"port:       {data['port']} (pid {data['pid']})",
        f"settings:   {data['settings']}",
        f"Prefect UI: {prefect['ui_url']} ({'healthy' if prefect['healthy'] else 'starting'})",
        f"sync:       {_sync_text(prefect['sync'])}",
        f"work pool:  {prefect.get('work_pool', '-')}",
        f"jobs:       {len(data['jobs']['running'])} running, {len(data['jobs']['queued'])} queued",
        "",
        table(data["pipelines"], ["name", "ready", "sampleid", "jobid"]),
    ]
    return "\n".join(lines)
