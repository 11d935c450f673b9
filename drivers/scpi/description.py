"""Instrument descriptions: what a SCPI instrument offers, written as YAML instead of code.

A description names, per attribute, the SCPI query and set command, type, units, bounds
or options; per channel, how the channel enters the commands (``{ch}``); and per
technique, which attributes are set at its start and which are sampled at each step.
Commands are plain text with two placeholders: ``{ch}`` (the channel token) and
``{value}`` (the formatted value of a set command).

Traces: a ``traces`` entry is a query whose reply is a whole trace (a network
analyser's sweep, an oscilloscope's waveform) as separated numbers, optionally scaled;
its ``axis`` names an ``axes`` entry that says where the abscissa comes from: evenly
spaced from ``start`` to ``stop`` (``linspace``), from ``start`` in steps of ``step``
(``step``), or a query of its own (``query``). Numbers in these may be attr names, which
are queried at each sample. A technique samples a trace like an attr; the trace is
stored as ``name(uts, axis)`` beside the coordinate ``axis``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from drivers.base import Attr, AttrError, Measured
from tomato_cli.models.files import format_error, load_mapping

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "instruments"
_TYPES: dict[str, type] = {"float": float, "int": int, "str": str, "bool": bool}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DescriptionError(ValueError):
    """An instrument description cannot be found or is not valid."""


class SimRule(BaseModel):
    """How the loopback simulator computes a read-only attr (ignored by the driver).

    ``value = gain * <follows> + offset`` (+ Gaussian noise), approached with a
    first-order lag of ``tau`` seconds; the first rule whose ``when`` matches applies.
    """

    model_config = ConfigDict(extra="forbid")
    follows: str | None = None
    gain: float = 1.0
    offset: float = 0.0
    noise: float = Field(default=0.0, ge=0)
    tau: float = Field(default=0.0, ge=0)
    when: dict[str, Any] = Field(default_factory=dict)


class AttrSpec(BaseModel):
    """One attribute: its commands, type, units and bounds."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["float", "int", "str", "bool"] = "float"
    units: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    options: list[str | int | float] | None = None
    query: str | None = None
    set: str | None = None
    format: str | None = None  # format spec of {value}, e.g. ".3f"; default: exact
    true: str = "1"
    false: str = "0"
    default: Any = None  # written by reset
    status: bool = False
    sim: list[SimRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> AttrSpec:
        if self.query is None and self.set is None:
            raise ValueError("needs a query, a set command, or both")
        if self.set is not None and "{value}" not in self.set:
            raise ValueError(f"set command {self.set!r} has no {{value}}")
        if self.default is not None:
            if self.set is None:
                raise ValueError("a default needs a set command")
            try:
                self.attr().coerce("default", self.default)
            except AttrError as exc:
                raise ValueError(str(exc)) from None
        return self

    def attr(self) -> Attr:
        """The driver-interface :class:`~drivers.base.Attr` of this attribute."""
        return Attr(
            type=_TYPES[self.type],
            units=self.units,
            minimum=self.minimum,
            maximum=self.maximum,
            options=tuple(self.options) if self.options is not None else None,
            rw=self.set is not None,
            status=self.status,
        )


class ChannelSpec(BaseModel):
    """How a channel enters the commands."""

    model_config = ConfigDict(extra="forbid")
    ids: list[str] | None = None  # the channels the instrument has (None: any)
    token: str = "{channel}"  # what ``{ch}`` becomes, e.g. "(@{channel})"
    select: str | None = None  # a command sent before each channel's commands

    def render(self, channel: str) -> str:
        return self.token.replace("{channel}", channel)


Number = float | str  # a number, or the name of an attr to query for it


class LinspaceSpec(BaseModel):
    """An axis of evenly spaced values from ``start`` to ``stop`` (both included)."""

    model_config = ConfigDict(extra="forbid")
    start: Number
    stop: Number
    points: Number | None = None  # if given: the trace must have this many points


class StepSpec(BaseModel):
    """An axis ``start + i * step`` for the points of the trace."""

    model_config = ConfigDict(extra="forbid")
    start: Number = 0.0
    step: Number


class AxisSpec(BaseModel):
    """Where the abscissa of a trace comes from: exactly one of linspace, step or query."""

    model_config = ConfigDict(extra="forbid")
    units: str | None = None
    linspace: LinspaceSpec | None = None
    step: StepSpec | None = None
    query: str | None = None  # replies with the values, like a trace
    separator: str = ","

    @model_validator(mode="after")
    def _check(self) -> AxisSpec:
        given = [k for k in ("linspace", "step", "query") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("needs exactly one of linspace, step or query")
        return self

    def refs(self) -> list[str]:
        """The attr names the axis reads."""
        parts = [self.linspace, self.step]
        values = [v for p in parts if p is not None for v in p.model_dump().values()]
        return [v for v in values if isinstance(v, str)]


class TraceSpec(BaseModel):
    """A query answered with a whole trace: separated numbers, ``scale * n + offset``."""

    model_config = ConfigDict(extra="forbid")
    query: str
    axis: str
    units: str | None = None
    separator: str = ","
    scale: Number = 1.0
    offset: Number = 0.0

    def refs(self) -> list[str]:
        return [v for v in (self.scale, self.offset) if isinstance(v, str)]


class TechniqueSpec(BaseModel):
    """A technique: attrs set at its start (around the task params) and attrs sampled."""

    model_config = ConfigDict(extra="forbid")
    description: str = ""
    before: dict[str, Any] = Field(default_factory=dict)  # set before the task params
    after: dict[str, Any] = Field(default_factory=dict)  # set after them (e.g. output on)
    sample: list[str] = Field(min_length=1)


class Description(BaseModel):
    """A whole instrument description."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    description: str = ""
    identify: str | None = "*IDN?"
    error_query: str | None = None  # e.g. "SYST:ERR?", asked after every set command
    no_error: str = r"^\s*\+?0\s*(,|$)"  # a reply to error_query meaning "no error"
    reset: list[str] = Field(default_factory=list)  # commands written first on reset
    channels: ChannelSpec = Field(default_factory=ChannelSpec)
    attrs: dict[str, AttrSpec] = Field(min_length=1)
    axes: dict[str, AxisSpec] = Field(default_factory=dict)
    traces: dict[str, TraceSpec] = Field(default_factory=dict)
    techniques: dict[str, TechniqueSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Description:
        self._check_traces()
        for name, spec in self.attrs.items():
            if not _NAME.match(name):
                raise ValueError(f"attr name {name!r} is not an identifier")
            for rule in spec.sim:
                for ref in [rule.follows, *rule.when]:
                    if ref is not None and ref not in self.attrs:
                        raise ValueError(f"attrs.{name}.sim refers to unknown attr {ref!r}")
        for tname, tech in self.techniques.items():
            for name in tech.sample:
                if name in self.traces:
                    continue
                if name not in self.attrs or self.attrs[name].query is None:
                    raise ValueError(f"technique {tname!r} samples {name!r}, which has no query")
            for name, value in {**tech.before, **tech.after}.items():
                spec = self.attrs.get(name)
                if spec is None or spec.set is None:
                    raise ValueError(f"technique {tname!r} sets {name!r}, which is not settable")
                try:
                    spec.attr().coerce(name, value)
                except AttrError as exc:
                    raise ValueError(f"technique {tname!r}: {exc}") from None
        try:
            re.compile(self.no_error)
        except re.error as exc:
            raise ValueError(f"no_error is not a regular expression: {exc}") from None
        return self

    def _check_traces(self) -> None:
        for name in [*self.axes, *self.traces]:
            if not _NAME.match(name) or name == "uts":
                raise ValueError(f"trace or axis name {name!r} is not an identifier")
        clash = (set(self.axes) | set(self.traces)) & set(self.attrs)
        clash |= set(self.axes) & set(self.traces)
        if clash:
            raise ValueError(f"names used twice among attrs, axes and traces: {sorted(clash)}")
        for kind, specs in (("axes", self.axes), ("traces", self.traces)):
            for name, spec in specs.items():
                for ref in spec.refs():
                    if ref not in self.attrs or self.attrs[ref].query is None:
                        raise ValueError(
                            f"{kind}.{name} reads {ref!r}, which is not an attr with a query"
                        )
        for name, trace in self.traces.items():
            if trace.axis not in self.axes:
                known = ", ".join(sorted(self.axes)) or "none"
                raise ValueError(f"trace {name!r} has unknown axis {trace.axis!r}; axes: {known}")

    def attrs_of(self) -> dict[str, Attr]:
        return {name: spec.attr() for name, spec in self.attrs.items()}

    def measured_of(self) -> dict[str, Measured]:
        """The traces and their axes as driver-interface declarations."""
        out = {name: Measured(axis.units, dims=(name,)) for name, axis in self.axes.items()}
        for name, trace in self.traces.items():
            out[name] = Measured(trace.units, dims=(trace.axis,))
        return out


def search_dirs(extra: list[str | Path] | None = None) -> list[Path]:
    """Where descriptions are looked up: the settings' folders first, then the built-ins."""
    return [Path(p).expanduser() for p in extra or []] + [BUILTIN_DIR]


def available(extra: list[str | Path] | None = None) -> list[str]:
    """The names of the descriptions found in :func:`search_dirs`."""
    names = {p.stem for d in search_dirs(extra) if d.is_dir() for p in d.glob("*.y*ml")}
    return sorted(names)


def find_description(name: str, extra: list[str | Path] | None = None) -> Path:
    """The file of description ``name`` (a name in the search folders, or a path)."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        path = Path(name).expanduser()
        if path.is_file():
            return path
        raise DescriptionError(f"instrument description file {path} does not exist")
    for folder in search_dirs(extra):
        for suffix in (".yaml", ".yml"):
            if (folder / f"{name}{suffix}").is_file():
                return folder / f"{name}{suffix}"
    known = ", ".join(available(extra)) or "none"
    raise DescriptionError(f"unknown instrument description {name!r}; available: {known}")


def load_description(name: str, extra: list[str | Path] | None = None) -> Description:
    """Find, read and check a description; every mistake is a one-line DescriptionError."""
    path = find_description(name, extra)
    data = load_mapping(path, "instrument description", DescriptionError)
    try:
        return Description.model_validate(data)
    except ValidationError as exc:
        raise DescriptionError(
            f"instrument description {path}: {format_error(exc, data)}"
        ) from None
