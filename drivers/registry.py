"""Find drivers through the ``tomato.drivers`` entry-point group."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from drivers.base import DriverBase

GROUP = "tomato.drivers"


class DriverNotFound(LookupError):
    """No usable driver of that name is installed."""


def available_drivers() -> dict[str, EntryPoint]:
    """Installed drivers by name (not imported yet)."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_driver(name: str) -> type[DriverBase]:
    """The driver class registered as ``name``; raise :class:`DriverNotFound` otherwise."""
    found = available_drivers()
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise DriverNotFound(f"unknown driver {name!r}; installed drivers: {known}")
    try:
        cls = found[name].load()
    except Exception as exc:
        raise DriverNotFound(
            f"driver {name!r} failed to load: {type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, DriverBase)):
        raise DriverNotFound(f"driver {name!r} ({found[name].value}) is not a DriverBase subclass")
    return cls
