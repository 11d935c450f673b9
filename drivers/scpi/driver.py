"""The ``scpi`` driver: any SCPI instrument reached through pyvisa, configured by a description.

A device names its description in the devices file::

    - name: pstat
      driver: scpi
      address: "GPIB0::5::INSTR"          # the VISA resource
      channels: ["1", "2"]
      options: {instrument: potentiostat} # a description name or a path to one

VISA settings (backend, timeout, terminations) come from ``[drivers.scpi]`` in the
settings file; a device's ``options`` may override them for that device.
"""

from __future__ import annotations

import re
import weakref
from typing import Any, ClassVar

import numpy as np

from drivers.base import (
    Attr,
    AttrError,
    ComponentBase,
    DriverBase,
    Measured,
    TaskError,
    known_attr,
)
from drivers.scpi.connection import Connection, InstrumentError, ResourceManagers, VisaSettings
from drivers.scpi.description import AttrSpec, Description, available, load_description

_TRUE_REPLIES = {"1", "on", "true", "yes"}
_FALSE_REPLIES = {"0", "off", "false", "no"}


class ScpiComponent(ComponentBase):
    """One channel of a described SCPI instrument; nothing is sent until it is used."""

    def __init__(
        self,
        address: str,
        channel: str,
        settings: dict[str, Any],
        description: Description,
        connection: Connection,
    ):
        self.address = address
        self.channel = channel
        self.settings = dict(settings)
        self.description = description
        self.connection = connection
        self._attr_defs = description.attrs_of()
        self._values: dict[str, Any] = {}  # the last value written to each attr
        self._token = description.channels.render(channel)
        self._idn: str | None = None

    # -- what the component offers (per instance: it depends on the description) ------
    def attrs(self) -> dict[str, Attr]:  # type: ignore[override]
        return dict(self._attr_defs)

    def capabilities(self) -> set[str]:  # type: ignore[override]
        return set(self.description.techniques)

    def measured(self) -> dict[str, Measured]:  # type: ignore[override]
        return self.description.measured_of()

    def units_of(self, name: str) -> str | None:  # type: ignore[override]
        desc = self.description
        spec = desc.attrs.get(name) or desc.traces.get(name) or desc.axes.get(name)
        return spec.units if spec is not None else None

    def constants(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "address": self.address,
            "channel": self.channel,
            "instrument": self.description.name,
        }
        if self.description.identify:
            if self._idn is None:
                self._idn = self.connection.query(self.description.identify).strip()
            out["idn"] = self._idn
        return out

    # -- attrs ------------------------------------------------------------------------
    def get_attr(self, name: str) -> Any:
        known_attr(self.attrs(), name)
        spec = self.description.attrs[name]
        if spec.query is None:
            return self._values.get(name)
        command = self._render(spec.query)
        with self.connection.lock:
            self._select()
            reply = self.connection.query(command)
        return self._parse(name, spec, reply, command)

    def _write_attr(self, name: str, value: Any) -> None:
        spec = self.description.attrs[name]
        assert spec.set is not None
        command = self._render(spec.set, _format(spec, value))
        with self.connection.lock:
            self._select()
            self.connection.write(command)
            self._check_errors(command)
        self._values[name] = value

    # -- tasks ------------------------------------------------------------------------
    def prepare_task(self, technique: str, params: dict[str, Any]) -> None:
        """Set the technique's ``before`` attrs, then ``params``, then its ``after`` attrs."""
        if technique not in self.capabilities():
            known = ", ".join(sorted(self.capabilities())) or "none"
            raise TaskError(f"unknown technique {technique!r}; available: {known}")
        tech = self.description.techniques[technique]
        steps = [tech.before, params, tech.after]
        checked = [{n: self.check_attr(n, v) for n, v in step.items()} for step in steps]
        for step in checked:
            for name, value in step.items():
                self._write_attr(name, value)

    def measure(self, technique: str, elapsed: float) -> dict[str, Any]:
        """Query every attr and trace the technique samples (a trace with its axis)."""
        out: dict[str, Any] = {}
        for name in self.description.techniques[technique].sample:
            if name in self.description.traces:
                out[name] = self.read_trace(name)
                axis = self.description.traces[name].axis
                if axis not in out:
                    out[axis] = self.read_axis(axis, len(out[name]))
                elif len(out[axis]) != len(out[name]):
                    raise InstrumentError(
                        f"{self._where()}: trace {name!r} has {len(out[name])} points, "
                        f"other traces on axis {axis!r} have {len(out[axis])}"
                    )
            else:
                out[name] = self.get_attr(name)
        return out

    # -- traces -----------------------------------------------------------------------
    def read_trace(self, name: str) -> np.ndarray:
        """Query trace ``name`` and parse it (scaled as the description says)."""
        spec = self.description.traces[name]
        values = self._query_numbers(spec.query, spec.separator, f"trace {name!r}")
        scale, offset = self._number(spec.scale), self._number(spec.offset)
        return values * scale + offset if (scale, offset) != (1.0, 0.0) else values

    def read_axis(self, name: str, points: int) -> np.ndarray:
        """The values of axis ``name`` for a trace of ``points`` points."""
        spec = self.description.axes[name]
        if spec.query is not None:
            values = self._query_numbers(spec.query, spec.separator, f"axis {name!r}")
            if len(values) != points:
                raise InstrumentError(
                    f"{self._where()}: axis {name!r} has {len(values)} values for a trace "
                    f"of {points} points"
                )
            return values
        if spec.step is not None:
            start, step = self._number(spec.step.start), self._number(spec.step.step)
            return start + step * np.arange(points, dtype=np.float64)
        assert spec.linspace is not None
        lin = spec.linspace
        if lin.points is not None and int(self._number(lin.points)) != points:
            raise InstrumentError(
                f"{self._where()}: trace on axis {name!r} has {points} points, but "
                f"{lin.points!r} says {int(self._number(lin.points))}"
            )
        return np.linspace(self._number(lin.start), self._number(lin.stop), points)

    def _number(self, value: float | str) -> float:
        """A number of a description, or the current value of the attr it names."""
        return float(self.get_attr(value)) if isinstance(value, str) else float(value)

    def _query_numbers(self, template: str, separator: str, what: str) -> np.ndarray:
        command = self._render(template)
        with self.connection.lock:
            self._select()
            reply = self.connection.query(command)
        text = reply.strip()
        try:
            values = np.array([float(v) for v in text.split(separator)], dtype=np.float64)
        except ValueError:
            values = np.empty(0)
        if values.size == 0 or not np.isfinite(values).all():
            raise InstrumentError(
                f"{self._where()}: garbled reply {_shorten(text)!r} to {command!r} "
                f"(expected {what} as {separator!r}-separated numbers)"
            )
        return values

    def idle_measure(self) -> dict[str, Any]:
        """The read-only (measured) attrs."""
        specs = self.description.attrs.items()
        return {n: self.get_attr(n) for n, s in specs if s.set is None and s.query is not None}

    def reset(self) -> None:
        """Send the description's reset commands, then write every attr's default."""
        with self.connection.lock:
            for template in self.description.reset:
                command = self._render(template)
                self._select()
                self.connection.write(command)
                self._check_errors(command)
            for name, spec in self.description.attrs.items():
                if spec.default is not None:
                    self._write_attr(name, spec.attr().coerce(name, spec.default))

    # -- helpers ----------------------------------------------------------------------
    def _where(self) -> str:
        return f"{self.description.name} at {self.address} channel {self.channel}"

    def _render(self, template: str, value: str = "") -> str:
        return template.replace("{ch}", self._token).replace("{value}", value)

    def _select(self) -> None:
        if self.description.channels.select:
            self.connection.write(self._render(self.description.channels.select))

    def _check_errors(self, command: str) -> None:
        query = self.description.error_query
        if not query:
            return
        reply = self.connection.query(query).strip()
        if not re.match(r"^[+-]?\d+\s*(,|$)", reply):
            raise InstrumentError(
                f"{self._where()}: garbled reply {_shorten(reply)!r} to {query!r} "
                f"(expected an error code) after {command!r}"
            )
        if not re.match(self.description.no_error, reply):
            raise InstrumentError(f"{self._where()}: instrument refused {command!r}: {reply}")

    def _parse(self, name: str, spec: AttrSpec, reply: str, command: str) -> Any:
        text = reply.strip()
        try:
            value = _parse_value(spec, text)
        except (ValueError, AttrError):
            raise InstrumentError(
                f"{self._where()}: garbled reply {_shorten(text)!r} to {command!r} "
                f"(expected {spec.type}{' ' + spec.units if spec.units else ''})"
            ) from None
        self._values[name] = value
        return value


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _format(spec: AttrSpec, value: Any) -> str:
    """``value`` as written into a set command."""
    if spec.type == "bool":
        return spec.true if value else spec.false
    if spec.format:
        return format(value, spec.format)
    if spec.type == "float":
        return repr(float(value))
    return str(value)


def _parse_value(spec: AttrSpec, text: str) -> Any:
    """A reply as the attr's type; ``ValueError`` if it is not one."""
    if spec.type == "float":
        number = float(text)
        if number != number:
            raise ValueError("NaN")
        return number
    if spec.type == "int":
        number = float(text)
        if not number.is_integer():
            raise ValueError("not an integer")
        return int(number)
    if spec.type == "bool":
        if text.lower() in _TRUE_REPLIES:
            return True
        if text.lower() in _FALSE_REPLIES:
            return False
        raise ValueError("not a bool")
    text = text.strip("\"'")
    if spec.options is not None:
        for option in spec.options:
            if str(option).lower() == text.lower():
                return option
        raise ValueError("not an option")
    if not text.isprintable():
        raise ValueError("not printable")
    return text


class ScpiDriver(DriverBase):
    """The ``scpi`` driver type: components are channels of described VISA instruments."""

    name: ClassVar[str] = "scpi"
    component_class: ClassVar[type[ComponentBase]] = ScpiComponent
    min_sampling_interval: ClassVar[float] = 0.01

    def __init__(self, settings: dict[str, Any] | None = None):
        super().__init__(settings)
        self.visa = VisaSettings.from_mapping(self.settings)  # fail early on bad settings
        paths = self.settings.get("instruments", [])
        self.paths: list[str] = [paths] if isinstance(paths, str) else list(paths)
        self.managers = ResourceManagers()
        self.connections: dict[tuple[str, str], Connection] = {}
        self._live: weakref.WeakValueDictionary[str, ScpiComponent] = weakref.WeakValueDictionary()

    def create_component(
        self, address: str, channel: str, options: dict[str, Any] | None = None
    ) -> ComponentBase:
        address, channel = str(address), str(channel)
        self.check_address(address, channel)
        options = dict(options or {})
        instrument = options.get("instrument")
        if not isinstance(instrument, str) or not instrument:
            known = ", ".join(available(self.paths)) or "none"
            raise ValueError(
                f"scpi device at {address!r} needs options.instrument naming its "
                f"description (available: {known})"
            )
        description = load_description(instrument, self.paths)
        ids = description.channels.ids
        if ids is not None and channel not in ids:
            raise ValueError(
                f"{description.name} at {address!r} has no channel {channel!r} "
                f"(channels: {', '.join(ids)})"
            )
        visa = VisaSettings.from_mapping(self.settings, options)
        key = (visa.visa_library, address)
        if key not in self.connections:
            self.connections[key] = Connection(address, visa, self.managers)
        comp = ScpiComponent(address, channel, self.settings, description, self.connections[key])
        self._live[f"{address},{channel}"] = comp
        return comp

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()
        self.managers.close()
