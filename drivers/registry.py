"""Load driver classes registered in the ``tomato.drivers`` entry-point group.

A name may be qualified by its origin, ``<name>@builtin`` (ours) or ``<name>@plugin``
(another package's entry point); a plain name prefers ours. Which drivers exist across all
origins, legacy ones included, is :mod:`drivers.origins`' business.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from drivers.base import DriverBase

GROUP = "tomato.drivers"
OUR_DISTRIBUTION = "tomato-prefect"
BUILTIN = "builtin"
PLUGIN = "plugin"


class DriverNotFound(LookupError):
    """No usable driver of that name is installed."""


def is_builtin(ep: EntryPoint) -> bool:
    """True if ``ep`` is registered by tomato-prefect itself."""
    dist = getattr(ep, "dist", None)
    name = (dist.metadata["Name"] if dist is not None else "") or ""
    return name.lower().replace("_", "-") == OUR_DISTRIBUTION


def split_name(name: str) -> tuple[str, str | None]:
    """``"psutil@legacy"`` -> ``("psutil", "legacy")``; a plain name has no qualifier."""
    base, sep, qualifier = name.partition("@")
    return (base, qualifier) if sep else (name, None)


def entry_points_by_origin() -> dict[str, dict[str, EntryPoint]]:
    """Installed entry-point drivers: ``{"builtin": {...}, "plugin": {...}}`` by name."""
    found: dict[str, dict[str, EntryPoint]] = {BUILTIN: {}, PLUGIN: {}}
    for ep in entry_points(group=GROUP):
        found[BUILTIN if is_builtin(ep) else PLUGIN].setdefault(ep.name, ep)
    return found


def available_drivers() -> dict[str, EntryPoint]:
    """Installed entry-point drivers by plain name, ours first (not imported yet)."""
    found = entry_points_by_origin()
    return {**found[PLUGIN], **found[BUILTIN]}


def load_driver(name: str) -> type[DriverBase]:
    """The driver class registered as ``name``; raise :class:`DriverNotFound` otherwise."""
    base, qualifier = split_name(name)
    found = entry_points_by_origin()
    if qualifier is None:
        candidates = {**found[PLUGIN], **found[BUILTIN]}
    elif qualifier in found:
        candidates = found[qualifier]
    else:
        raise DriverNotFound(f"driver {name!r}: entry-point drivers are @builtin or @plugin")
    if base not in candidates:
        known = ", ".join(sorted(candidates)) or "none"
        raise DriverNotFound(f"unknown driver {name!r}; installed drivers: {known}")
    ep = candidates[base]
    try:
        cls = ep.load()
    except Exception as exc:
        raise DriverNotFound(
            f"driver {name!r} failed to load: {type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, DriverBase)):
        raise DriverNotFound(f"driver {name!r} ({ep.value}) is not a DriverBase subclass")
    return cls
