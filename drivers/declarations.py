"""The declarations of the driver interface: attributes, measured quantities, component specs.

A component declares what it offers (:class:`Attr`, :class:`Measured`); the daemon and the
driver host check users' tasks and values against it (:class:`ComponentSpec`,
:func:`check_task`, :func:`check_settable`) before any reaches a driver. Drivers import all
of this from :mod:`drivers.base`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tomato_cli.models.conditions import UNDECLARED
from tomato_cli.units import magnitude_in, to_seconds

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_TYPES: dict[str, type] = {
    "float": float,
    "int": int,
    "str": str,
    "bool": bool,
    "list": list,
    "dict": dict,
}


class AttrError(ValueError):
    """A value does not fit a declared attribute (or the attribute is unknown/read-only)."""


class TaskError(ValueError):
    """A task (technique, parameters, sampling interval) cannot run on a driver."""


@dataclass(frozen=True)
class Attr:
    """A declared attribute of a component: typed, optionally unit-aware and bounded."""

    type: type
    units: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    options: tuple | None = None
    rw: bool = False
    status: bool = False

    def coerce(self, name: str, value: Any) -> Any:
        """``value`` converted to this attribute's type and units; raise :class:`AttrError`."""
        if self.type is bool:
            result: Any = self._to_bool(name, value)
        elif self.type in (int, float):
            result = self._to_number(name, value)
        elif self.type in (list, dict):
            if not isinstance(value, self.type):
                tname = self.type.__name__
                raise AttrError(
                    f"attr {name!r}: expected {tname}, got {type(value).__name__} {value!r}"
                )
            result = value
        elif self.type is str:
            if not isinstance(value, str):
                raise AttrError(
                    f"attr {name!r}: expected str, got {type(value).__name__} {value!r}"
                )
            result = value
        else:
            try:
                result = self.type(value)
            except Exception as exc:
                raise AttrError(f"attr {name!r}: cannot convert {value!r}: {exc}") from None
        if self.options is not None and result not in self.options:
            allowed = ", ".join(repr(o) for o in self.options)
            raise AttrError(f"attr {name!r}: {value!r} is not one of {allowed}")
        return result

    def _to_bool(self, name: str, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise AttrError(f"attr {name!r}: expected bool, got {type(value).__name__} {value!r}")

    def _to_number(self, name: str, value: Any) -> int | float:
        tname = self.type.__name__
        try:
            number = magnitude_in(value, self.units)
        except ValueError as exc:
            raise AttrError(f"attr {name!r}: expected {tname}{self._in_units()}, {exc}") from None
        if math.isnan(number):
            raise AttrError(f"attr {name!r}: {value!r} is not a number")
        suffix = f" {self.units}" if self.units else ""
        if self.minimum is not None and number < magnitude_in(self.minimum, self.units):
            raise AttrError(f"attr {name!r}: {value!r} is below the minimum {self.minimum}{suffix}")
        if self.maximum is not None and number > magnitude_in(self.maximum, self.units):
            raise AttrError(f"attr {name!r}: {value!r} is above the maximum {self.maximum}{suffix}")
        if self.type is int:
            if not number.is_integer():
                raise AttrError(f"attr {name!r}: expected int{self._in_units()}, got {value!r}")
            return int(number)
        return number

    def _in_units(self) -> str:
        return f" in {self.units}" if self.units else ""

    def describe(self) -> dict[str, Any]:
        """A JSON-able description of this attribute."""
        return {
            "type": self.type.__name__,
            "units": self.units,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "options": list(self.options) if self.options is not None else None,
            "rw": self.rw,
            "status": self.status,
        }

    @classmethod
    def from_description(cls, desc: dict[str, Any]) -> Attr:
        """The attribute :meth:`describe` described (unknown types are taken as str)."""
        options = desc.get("options")
        return cls(
            type=_TYPES.get(str(desc.get("type")), str),
            units=desc.get("units"),
            minimum=desc.get("minimum"),
            maximum=desc.get("maximum"),
            options=tuple(options) if options is not None else None,
            rw=bool(desc.get("rw")),
            status=bool(desc.get("status")),
        )


@dataclass(frozen=True)
class ComponentSpec:
    """What a component offers: techniques, attributes and its shortest sampling interval.

    The driver host sends it when a component is registered, so that the daemon checks
    users' tasks and attribute values itself: a bad value never reaches a driver host that
    serves other jobs.
    """

    driver: str
    techniques: frozenset[str]
    attrs: dict[str, Attr]
    min_sampling_interval: float
    # the scalar measured quantities and their units; None: the driver does not declare
    # them (tomato 2.x drivers), so their names and units are known only from the data
    measured: dict[str, str | None] | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "driver": self.driver,
            "techniques": sorted(self.techniques),
            "attrs": {name: attr.describe() for name, attr in self.attrs.items()},
            "min_sampling_interval": self.min_sampling_interval,
            "measured": self.measured,
        }

    @classmethod
    def from_description(cls, desc: dict[str, Any]) -> ComponentSpec:
        measured = desc.get("measured")
        return cls(
            driver=str(desc["driver"]),
            techniques=frozenset(desc["techniques"]),
            attrs={n: Attr.from_description(a) for n, a in desc["attrs"].items()},
            min_sampling_interval=float(desc["min_sampling_interval"]),
            measured=dict(measured) if isinstance(measured, dict) else None,
        )

    def units_of(self, variable: str) -> tuple[str | None] | None:
        """``(units,)`` of a variable a condition may name (a scalar measured quantity or a
        numeric attribute), None if there is no such variable. Of a driver that does not
        declare its quantities, any name is taken, with no units known yet (``("?",)``)."""
        attr = self.attrs.get(variable)
        if attr is not None:
            return (attr.units,) if attr.type in (int, float) else None
        if self.measured is None:
            return (UNDECLARED,)
        return (self.measured[variable],) if variable in self.measured else None

    def check_task(self, technique: str, params: dict[str, Any] | None, interval: Any) -> None:
        """Raise :class:`TaskError` (one line) unless this component can run the task."""
        check_task(
            self.driver,
            set(self.techniques),
            self.attrs,
            technique,
            params,
            interval,
            self.min_sampling_interval,
        )

    def check_attr(self, name: str, value: Any) -> Any:
        """``value`` coerced for settable attribute ``name``; raise :class:`AttrError`."""
        return check_settable(self.attrs, name, value)


@dataclass(frozen=True)
class Measured:
    """A declared measured quantity (one that is not an attribute): its units and shape.

    ``dims`` names the extra dimensions of a trace or spectrum: a quantity with
    ``dims=("frequency",)`` is a 1-D array per sample, stored as ``name(uts, frequency)``.
    The coordinate of each such dimension is a quantity of its own, declared with its
    own name as its only dim (``"frequency": Measured("Hz", dims=("frequency",))``), and
    returned by :meth:`~drivers.base.ComponentBase.measure` with every sample that has a
    trace on it. ``dims=()`` (the default) is a scalar.
    """

    units: str | None = None
    dims: tuple[str, ...] = ()

    @property
    def is_trace(self) -> bool:
        return bool(self.dims)

    def is_coordinate_of(self, name: str) -> bool:
        """True if this declaration, under ``name``, is the coordinate of dimension ``name``."""
        return self.dims == (name,)


def check_measured(measured: dict[str, Measured], owner: str = "") -> None:
    """Raise ``ValueError`` unless every trace dimension has a declared coordinate."""
    where = f" of {owner}" if owner else ""
    for name, decl in measured.items():
        if name == "uts" or "/" in name:
            raise ValueError(f"measured quantity {name!r}{where}: reserved or invalid name")
        for dim in decl.dims:
            coord = measured.get(dim)
            if coord is None or not coord.is_coordinate_of(dim):
                raise ValueError(
                    f"measured quantity {name!r}{where} has dimension {dim!r} but no coordinate "
                    f"{dim!r} declared as Measured(units, dims=({dim!r},))"
                )
        if len(set(decl.dims)) != len(decl.dims):
            raise ValueError(f"measured quantity {name!r}{where} repeats a dimension")


def known_attr(attrs: dict[str, Attr], name: str) -> Attr:
    """The declared attribute ``name``; :class:`AttrError` naming the known ones if absent."""
    if name not in attrs:
        known = ", ".join(sorted(attrs)) or "none"
        raise AttrError(f"unknown attr {name!r}; known: {known}")
    return attrs[name]


def check_settable(attrs: dict[str, Attr], name: str, value: Any) -> Any:
    """``value`` coerced for settable attribute ``name``; raise :class:`AttrError`."""
    attr = known_attr(attrs, name)
    if not attr.rw:
        raise AttrError(f"attr {name!r} is read-only")
    return attr.coerce(name, value)


def task_timing(max_duration: Any, sampling_interval: Any) -> tuple[float, float]:
    """A task's sampling interval and max duration in seconds; a negative duration is
    refused."""
    interval, duration = to_seconds(sampling_interval), to_seconds(max_duration)
    if duration < 0:
        raise TaskError(f"max_duration must not be negative, got {max_duration!r}")
    return interval, duration


def check_task(
    driver: str,
    techniques: set[str],
    attrs: dict[str, Attr],
    technique: str,
    params: dict[str, Any] | None,
    sampling_interval: Any,
    min_sampling_interval: float,
) -> None:
    """Raise :class:`TaskError` unless ``technique`` with ``params`` fits ``attrs``."""
    if technique not in techniques:
        known = ", ".join(sorted(techniques)) or "none"
        raise TaskError(
            f"unknown technique {technique!r} for driver {driver!r}; available: {known}"
        )
    if params is not None and not isinstance(params, dict):
        raise TaskError(f"task_params must be a mapping, got {type(params).__name__}")
    for name, value in (params or {}).items():
        if name not in attrs:
            known = ", ".join(sorted(n for n, a in attrs.items() if a.rw)) or "none"
            raise TaskError(
                f"unknown task parameter {name!r} for driver {driver!r}; known: {known}"
            )
        if not attrs[name].rw:
            raise TaskError(f"task parameter {name!r} is read-only")
        try:
            attrs[name].coerce(name, value)
        except AttrError as exc:
            raise TaskError(f"invalid task parameter: {exc}") from None
    try:
        interval = to_seconds(sampling_interval)
    except ValueError as exc:
        raise TaskError(f"invalid sampling_interval: {exc}") from None
    if interval < min_sampling_interval:
        raise TaskError(
            f"sampling_interval {interval:g} s is below the minimum "
            f"{min_sampling_interval:g} s of driver {driver!r}"
        )
