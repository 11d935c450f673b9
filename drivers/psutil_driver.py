"""``psutil``: this host's memory and CPU as a driver, as tomato-psutil 2.1 has them.

Techniques ``mem_info``, ``cpu_info`` and ``all_info`` record the same variables, with the
same names and units, as the tomato 2.x package, so payloads and scripts written for it
keep working.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from drivers.base import HOST_SETTINGS, Attr, AttrError, ComponentBase, DriverBase, known_attr

MEM = ("mem_total", "mem_avail", "mem_usage")
CPU = ("cpu_count", "cpu_freq", "cpu_usage")
TECHNIQUES = {"mem_info": MEM, "cpu_info": CPU, "all_info": MEM + CPU}


def _cpu_freq() -> float:
    import psutil

    freq = psutil.cpu_freq()
    return float(freq.current) if freq is not None else math.nan


def _read(name: str) -> int | float:
    import psutil

    if name == "mem_total":
        return int(psutil.virtual_memory().total)
    if name == "mem_avail":
        return int(psutil.virtual_memory().available)
    if name == "mem_usage":
        return float(psutil.virtual_memory().percent)
    if name == "cpu_count":
        return int(psutil.cpu_count() or 0)
    if name == "cpu_freq":
        return _cpu_freq()
    return float(psutil.cpu_percent(interval=None))  # cpu_usage: since the previous reading


class PsutilComponent(ComponentBase):
    """The host itself; every attribute is a live, read-only reading."""

    attr_defs: ClassVar[dict[str, Attr]] = {
        "mem_total": Attr(int, units="bytes"),
        "mem_avail": Attr(int, units="bytes"),
        "mem_usage": Attr(float, units="percent", status=True),
        "cpu_count": Attr(int),
        "cpu_freq": Attr(float, units="MHz"),
        "cpu_usage": Attr(float, units="percent", status=True),
    }
    techniques: ClassVar[frozenset[str]] = frozenset(TECHNIQUES)

    def get_attr(self, name: str) -> Any:
        """A fresh reading of ``name``."""
        known_attr(self.attrs(), name)
        return _read(name)

    def _write_attr(self, name: str, value: Any) -> None:
        raise AttrError(f"attr {name!r} is read-only")

    def measure(self, technique: str, elapsed: float) -> dict[str, Any]:
        """The readings of ``technique``'s variables."""
        if technique not in TECHNIQUES:
            raise ValueError(f"unknown technique {technique!r}")
        return {name: _read(name) for name in TECHNIQUES[technique]}

    def idle_measure(self) -> dict[str, Any]:
        """All readings (as ``all_info``)."""
        return self.measure("all_info", 0.0)


class PsutilDriver(DriverBase):
    """The ``psutil`` driver: one component per (address, channel), all read this host."""

    name: ClassVar[str] = "psutil"
    component_class: ClassVar[type[ComponentBase]] = PsutilComponent
    settings_keys: ClassVar[frozenset[str] | None] = HOST_SETTINGS
    min_sampling_interval: ClassVar[float] = 0.01
