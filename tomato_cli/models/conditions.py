"""Conditions on measured values: a step's ``stop_when`` and a job's ``end_when``.

One condition per string::

    [role.]variable  >|>=|<|<=  number [units]  [for duration]

for example ``"Ewe > 4.2 V"``, ``"I < 10 mA for 30 s"`` or ``"thermo.T >= 300 degC"``. The
variable is one of the step's own component (or, with ``role.``, of another role of the
job); ``for`` asks that the comparison holds on every sample for that long. A string is
matched by one regular expression and its quantities by :mod:`tomato_cli.units` (bounded
cost); nothing is ever evaluated as code.

A condition is *bound* once the variable's units are known (at submit, from the driver's
declarations): its threshold is then a plain number in those units, and a
:class:`ConditionWatch` checks samples against it one by one, in the driver host's
sampler (to stop on the sample that crosses) and in the job's flow (to say so).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from tomato_cli.units import parse, to_seconds

MAX_TEXT = 120  # characters of one condition
UNDECLARED = "?"  # the units of a variable that its driver does not declare (2.x drivers)
MAX_CONDITIONS = 8  # conditions of one step, or of one job

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_ROLE = r"[A-Za-z_][A-Za-z0-9_-]*"
_SYNTAX = re.compile(
    rf"^\s*(?:(?P<role>{_ROLE})\.)?(?P<variable>{_NAME})\s*(?P<op>>=|<=|>|<)\s*"
    rf"(?P<quantity>[^<>=]+?)(?:\s+for\s+(?P<hold>[^<>=]+?))?\s*$"
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda x, t: x > t,
    ">=": lambda x, t: x >= t,
    "<": lambda x, t: x < t,
    "<=": lambda x, t: x <= t,
}
SYNTAX_HELP = "write [role.]variable > < >= or <= a number with units, e.g. 'Ewe > 4.2 V for 30 s'"


@dataclass(frozen=True)
class Condition:
    """A condition as written: its variable, comparison and threshold quantity."""

    text: str
    role: str | None
    variable: str
    op: str
    magnitude: float
    units: str | None  # None: a bare number
    hold_s: float = 0.0


@dataclass(frozen=True)
class Bound:
    """A condition on ``role``'s ``variable``, its threshold in the variable's units."""

    text: str
    role: str
    variable: str
    op: str
    threshold: float
    units: str | None
    hold_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Bound:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    def holds(self, value: float) -> bool:
        return _OPS[self.op](value, self.threshold)

    def in_units(self, units: str | None) -> Bound:
        """Bound to the units the data came in (a variable its driver did not declare);
        ValueError if the condition's units do not fit them."""
        if self.units == UNDECLARED:  # a bare number: taken in the data's units
            return replace(self, units=units)
        if self.units == units or (self.units in _NONE and units in _NONE):
            return self
        written = Condition(
            self.text, self.role, self.variable, self.op, self.threshold, self.units
        )
        return replace(self, threshold=_convert(written, self.role, units), units=units)


def parse_condition(text: Any) -> Condition:
    """Read one condition; ValueError with a one-line reason."""
    if not isinstance(text, str):
        raise ValueError(f"a condition is a string, not {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise ValueError(f"a condition has at most {MAX_TEXT} characters, not {len(text)}")
    match = _SYNTAX.match(text)
    if match is None:
        raise ValueError(f"cannot read condition {text!r}: {SYNTAX_HELP}")
    quantity_text = match["quantity"]
    try:
        quantity = parse(quantity_text)
    except ValueError as exc:
        raise ValueError(f"condition {text!r}: {exc}") from None
    if not re.match(r"^\s*[+-]?(\d|\.\d)", quantity_text):
        raise ValueError(f"condition {text!r}: {quantity_text!r} does not start with a number")
    hold = 0.0
    if match["hold"] is not None:
        try:
            hold = to_seconds(match["hold"])
        except ValueError as exc:
            raise ValueError(f"condition {text!r}: for {match['hold']!r}: {exc}") from None
        if not 0 < hold <= 366 * 86400:
            raise ValueError(f"condition {text!r}: 'for' must be more than 0 s and at most a year")
    units = None if str(quantity.units) == "dimensionless" else str(quantity.units)
    return Condition(
        text=text.strip(),
        role=match["role"],
        variable=match["variable"],
        op=match["op"],
        magnitude=float(quantity.magnitude),
        units=units,
        hold_s=hold,
    )


def parse_conditions(value: Any) -> list[Condition]:
    """A condition, or a list of them (at most :data:`MAX_CONDITIONS`)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError(f"give a condition or a list of them, not a {type(value).__name__}")
    if len(items) > MAX_CONDITIONS:
        raise ValueError(f"at most {MAX_CONDITIONS} conditions, not {len(items)}")
    return [parse_condition(item) for item in items]


# what a component says of a variable: None if it has no such variable, else (its units,)
UnitsOf = Callable[[str, str], tuple[str | None] | None]


def bind(condition: Condition, own_role: str | None, units_of: UnitsOf) -> Bound:
    """The condition with its threshold in the variable's units; ValueError if the
    variable is unknown or its units do not fit."""
    role = condition.role or own_role
    if role is None:
        raise ValueError(
            f"condition {condition.text!r}: name the variable's role, e.g. 'counter.val > 3'"
        )
    found = units_of(role, condition.variable)
    if found is None:
        raise ValueError(
            f"condition {condition.text!r}: {role!r} has no variable {condition.variable!r}"
        )
    (var_units,) = found
    if var_units == UNDECLARED:  # checked against the units of the first samples
        return Bound(
            condition.text,
            role,
            condition.variable,
            condition.op,
            condition.magnitude,
            condition.units if condition.units is not None else UNDECLARED,
            condition.hold_s,
        )
    threshold = _convert(condition, role, var_units)
    return Bound(
        condition.text,
        role,
        condition.variable,
        condition.op,
        threshold,
        var_units,
        condition.hold_s,
    )


_NONE = (None, "", "1", "dimensionless")


def _convert(condition: Condition, role: str, var_units: str | None) -> float:
    shown = f"{role}.{condition.variable}"
    if condition.units is None:
        if var_units not in _NONE:
            raise ValueError(f"condition {condition.text!r}: give units: {shown} is in {var_units}")
        return condition.magnitude
    from tomato_cli.units import get_ureg

    quantity = get_ureg().Quantity(condition.magnitude, condition.units)
    try:
        target = var_units if var_units not in _NONE else "dimensionless"
        return float(quantity.to(target).magnitude)
    except Exception:
        has = f"is in {var_units}" if var_units not in _NONE else "has no units"
        raise ValueError(
            f"condition {condition.text!r}: {condition.units} cannot be compared with "
            f"{shown}, which {has}"
        ) from None


@dataclass(frozen=True)
class Met:
    """A condition that was met: on which sample, with which value."""

    text: str
    role: str
    variable: str
    value: float
    units: str | None
    uts: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        units = f" {self.units}" if self.units not in (*_NONE, UNDECLARED) else ""
        return f"condition {self.text!r} met: {self.role}.{self.variable} = {self.value:g}{units}"


class ConditionWatch:
    """Checks samples, in time order, against bound conditions of one role.

    A condition with a hold is met on the first sample at which it has held on every
    sample for ``hold_s`` seconds; a sample on which it does not hold (or a missing or NaN
    value) starts the count again.
    """

    def __init__(self, conditions: Sequence[Bound]) -> None:
        self.conditions = list(conditions)
        self._since: list[float | None] = [None] * len(self.conditions)

    def __bool__(self) -> bool:
        return bool(self.conditions)

    def in_units(self, units: Mapping[str, str | None]) -> None:
        """Thresholds converted to the units the data came in (``units`` by variable; see
        :meth:`Bound.in_units`); ValueError if one does not fit."""
        self.conditions = [
            c.in_units(units[c.variable]) if c.variable in units else c for c in self.conditions
        ]

    def check(self, uts: float, values: Mapping[str, Any]) -> Met | None:
        """One sample: the first condition met on it, or None."""
        for i, cond in enumerate(self.conditions):
            value = values.get(cond.variable)
            try:
                number = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                number = math.nan
            if math.isnan(number) or not cond.holds(number):
                self._since[i] = None
                continue
            since = self._since[i]
            if since is None:
                since = self._since[i] = uts
            if uts - since >= cond.hold_s - 1e-9:
                return Met(cond.text, cond.role, cond.variable, number, cond.units, uts)
        return None

    def check_block(self, uts: Sequence[float], columns: Mapping[str, Sequence[Any]]) -> Met | None:
        """Samples given as columns: the first condition met, on the earliest sample."""
        wanted = {c.variable for c in self.conditions if c.variable in columns}
        for i, stamp in enumerate(uts):
            met = self.check(float(stamp), {name: columns[name][i] for name in wanted})
            if met is not None:
                return met
        return None
