"""The driver interface: components and driver types, and the declarations they use.

A driver imports everything it needs from here (see docs/drivers.md); the declarations
themselves live in :mod:`drivers.declarations`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from drivers.declarations import (
    Attr,
    AttrError,
    ComponentSpec,
    Measured,
    TaskError,
    check_measured,
    check_settable,
    check_task,
    known_attr,
)

__all__ = [
    "HOST_SETTINGS",
    "Attr",
    "AttrError",
    "ComponentBase",
    "ComponentSpec",
    "DriverBase",
    "Measured",
    "TaskError",
    "check_measured",
    "check_settable",
    "check_task",
    "known_attr",
]


class ComponentBase:
    """One addressable channel of a device.

    Subclasses declare ``attr_defs`` (name -> :class:`Attr`), ``defaults`` (initial attr
    values), ``techniques`` (capabilities) and ``measured_defs`` (name -> :class:`Measured`:
    units and, for traces, the dimensions of measured quantities that are not attrs), and
    implement :meth:`measure`.
    """

    attr_defs: ClassVar[dict[str, Attr]] = {}
    defaults: ClassVar[dict[str, Any]] = {}
    techniques: ClassVar[frozenset[str]] = frozenset()
    measured_defs: ClassVar[dict[str, Measured]] = {}
    # False for components whose quantities are known only from their data (2.x drivers)
    declares_measured: ClassVar[bool] = True

    def __init__(self, address: str, channel: str, settings: dict[str, Any]):
        self.address = address
        self.channel = channel
        self.settings = dict(settings)
        self._values: dict[str, Any] = {}
        self.reset()

    @classmethod
    def attrs(cls) -> dict[str, Attr]:
        """The declared attributes."""
        return dict(cls.attr_defs)

    @classmethod
    def capabilities(cls) -> set[str]:
        """The technique names this component can run."""
        return set(cls.techniques)

    @classmethod
    def measured(cls) -> dict[str, Measured]:
        """The declared measured quantities."""
        return dict(cls.measured_defs)

    @classmethod
    def units_of(cls, name: str) -> str | None:
        """The units of a measured quantity or attribute, or None."""
        decl = cls.measured_defs.get(name)
        if decl is not None:
            return decl.units
        attr = cls.attr_defs.get(name)
        return attr.units if attr is not None else None

    def constants(self) -> dict[str, Any]:
        """Fixed facts about this component."""
        return {"address": self.address, "channel": self.channel}

    def get_attr(self, name: str) -> Any:
        """The current value of attribute ``name``."""
        known_attr(self.attrs(), name)
        return self._values.get(name)

    def check_attr(self, name: str, value: Any) -> Any:
        """``value`` validated for settable attribute ``name``; nothing changes."""
        return check_settable(self.attrs(), name, value)

    def set_attr(self, name: str, value: Any) -> Any:
        """Validate and set attribute ``name``; return the stored value."""
        coerced = self.check_attr(name, value)
        self._write_attr(name, coerced)
        return self._values.get(name, coerced)

    def _write_attr(self, name: str, value: Any) -> None:
        """Store a validated value (subclasses talking to hardware override this)."""
        self._values[name] = value

    def prepare_task(self, technique: str, params: dict[str, Any]) -> None:
        """Called at task start: check the technique, then apply ``params`` as attrs.

        All params are validated before any is applied, so on error nothing changes.
        """
        if technique not in self.capabilities():
            known = ", ".join(sorted(self.capabilities())) or "none"
            raise TaskError(f"unknown technique {technique!r}; available: {known}")
        checked = {name: self.check_attr(name, value) for name, value in params.items()}
        for name, value in checked.items():
            self._write_attr(name, value)

    def measure(self, technique: str, elapsed: float) -> dict[str, Any]:
        """One sample of a running task, ``elapsed`` seconds after its start.

        A mapping of quantity name to value: a scalar, or for a quantity declared with
        ``dims`` an array (numpy array or nested list) of that many dimensions, together
        with the coordinate array of each of its dimensions. An optional ``"uts"`` entry
        (Unix seconds, float) is the sample's own timestamp, kept as it is; without it
        the sampler stamps the sample when ``measure`` returns.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot measure {technique!r}")

    def idle_measure(self) -> dict[str, Any]:
        """A reading while no task runs (default: nothing)."""
        return {}

    def reset(self) -> None:
        """Restore every attr to its default."""
        self._values = {
            name: self.attr_defs[name].coerce(name, value)
            for name, value in self.defaults.items()
            if name in self.attr_defs
        }


# settings keys the driver host reads for every driver
HOST_SETTINGS = frozenset({"idle_measurement_interval", "buffer_limit"})


class DriverBase:
    """One driver type: creates components and validates tasks."""

    name: ClassVar[str] = ""
    component_class: ClassVar[type[ComponentBase]] = ComponentBase
    min_sampling_interval: ClassVar[float] = 0.001
    # the ``[drivers.<name>]`` keys this driver reads (others are warned about at
    # `tomato start`); None: the driver does not say, nothing is warned about
    settings_keys: ClassVar[frozenset[str] | None] = None

    def __init__(self, settings: dict[str, Any] | None = None):
        self.settings: dict[str, Any] = dict(settings or {})

    def check_address(self, address: str, channel: str) -> None:
        """Raise ``ValueError`` if ``(address, channel)`` cannot be used (default: non-empty)."""
        if not str(address).strip():
            raise ValueError(f"driver {self.name!r}: empty address")
        if not str(channel).strip():
            raise ValueError(f"driver {self.name!r}: empty channel for address {address!r}")

    def create_component(
        self, address: str, channel: str, options: dict[str, Any] | None = None
    ) -> ComponentBase:
        """A new component for ``(address, channel)``; raise ``ValueError`` if unusable.

        ``options`` are the device's ``options`` from the devices file (ignored here).
        """
        address, channel = str(address), str(channel)
        self.check_address(address, channel)
        return self.component_class(address, channel, self.settings)

    def close(self) -> None:
        """Release instrument connections when the driver host stops (default: nothing)."""

    def spec_of(self, component: ComponentBase) -> ComponentSpec:
        """What ``component`` offers (see :class:`ComponentSpec`)."""
        measured = component.measured()
        return ComponentSpec(
            self.name,
            frozenset(component.capabilities()),
            component.attrs(),
            self.min_sampling_interval,
            {n: d.units for n, d in measured.items() if not d.dims}
            if component.declares_measured
            else None,
        )
