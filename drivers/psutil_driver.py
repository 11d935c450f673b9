"""``psutil``: host metrics (CPU, memory, disk, network) as a driver."""

from __future__ import annotations

from typing import Any, ClassVar

from drivers.base import HOST_SETTINGS, Attr, ComponentBase, DriverBase


class PsutilComponent(ComponentBase):
    """The host itself; ``all_info`` samples CPU, memory, disk and network counters."""

    attr_defs: ClassVar[dict[str, Attr]] = {
        "disk_path": Attr(str, status=True),
    }
    techniques: ClassVar[frozenset[str]] = frozenset({"all_info"})
    measured_units: ClassVar[dict[str, str | None]] = {
        "cpu_percent": "percent",
        "mem_used": "B",
        "mem_available": "B",
        "mem_percent": "percent",
        "disk_percent": "percent",
        "net_bytes_sent": "B",
        "net_bytes_recv": "B",
    }

    def reset(self) -> None:
        """Restore defaults; the disk path comes from the ``disk_path`` setting or ``/``."""
        super().reset()
        self._values["disk_path"] = str(self.settings.get("disk_path", "/"))

    def constants(self) -> dict[str, Any]:
        """Address, channel, CPU count and total memory."""
        import psutil

        return {
            **super().constants(),
            "cpu_count": psutil.cpu_count(),
            "mem_total": psutil.virtual_memory().total,
        }

    def measure(self, technique: str, elapsed: float) -> dict[str, Any]:
        """One reading of all host metrics (cpu_percent is since the previous reading)."""
        if technique != "all_info":
            raise ValueError(f"unknown technique {technique!r}")
        return self._read()

    def idle_measure(self) -> dict[str, Any]:
        """The same reading as ``all_info``."""
        return self._read()

    def _read(self) -> dict[str, Any]:
        import psutil

        mem = psutil.virtual_memory()
        net = psutil.net_io_counters()
        return {
            "cpu_percent": float(psutil.cpu_percent(interval=None)),
            "mem_used": int(mem.used),
            "mem_available": int(mem.available),
            "mem_percent": float(mem.percent),
            "disk_percent": float(psutil.disk_usage(self._values["disk_path"]).percent),
            "net_bytes_sent": int(net.bytes_sent) if net else 0,
            "net_bytes_recv": int(net.bytes_recv) if net else 0,
        }


class PsutilDriver(DriverBase):
    """The ``psutil`` driver: one component per (address, channel), all read this host."""

    name: ClassVar[str] = "psutil"
    component_class: ClassVar[type[ComponentBase]] = PsutilComponent
    settings_keys: ClassVar[frozenset[str] | None] = HOST_SETTINGS
    min_sampling_interval: ClassVar[float] = 0.01
