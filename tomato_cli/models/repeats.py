"""A repeat group's ``until``: a condition on a quantity computed from each repeat's data
(``last``, ``min``, ``max`` or ``integral`` of a variable), e.g.
``"integral(I, discharge) < 80 % of first"``. Read and bound as the conditions of
:mod:`tomato_cli.models.conditions` are.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tomato_cli.models.conditions import (
    _NAME,
    _NONE,
    _OPS,
    _ROLE,
    MAX_TEXT,
    UNDECLARED,
    Condition,
    UnitsOf,
    _convert,
)
from tomato_cli.units import parse

FUNCTIONS = ("last", "min", "max", "integral")
_UNTIL = re.compile(
    rf"^\s*(?P<func>{'|'.join(FUNCTIONS)})\(\s*(?:(?P<role>{_ROLE})\.)?(?P<variable>{_NAME})"
    rf"\s*(?:,\s*(?P<step>[A-Za-z0-9_][A-Za-z0-9_ .-]*?))?\s*\)\s*(?P<op>>=|<=|>|<)\s*"
    rf"(?P<rhs>[^<>=]+?)\s*$"
)
_OF_FIRST = re.compile(r"^(?P<percent>[+-]?(?:\d+\.?\d*|\.\d+))\s*%\s+of\s+first$")
UNTIL_HELP = (
    "write last|min|max|integral(variable[, step]) op a number with units, or N % of first, "
    "e.g. 'integral(I, discharge) < 80 % of first'"
)


@dataclass(frozen=True)
class Until:
    """A repeat's ``until`` as written."""

    text: str
    func: str
    role: str | None
    variable: str
    step: str | None  # the task_name of the step whose samples count (None: all of the repeat's)
    op: str
    magnitude: float
    units: str | None  # None: a bare number, or a fraction of the first repeat's value
    of_first: bool = False


def parse_until(text: Any) -> Until:
    """Read a repeat's ``until``; ValueError with a one-line reason."""
    if not isinstance(text, str):
        raise ValueError(f"until is a string, not {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise ValueError(f"until has at most {MAX_TEXT} characters, not {len(text)}")
    match = _UNTIL.match(text)
    if match is None:
        raise ValueError(f"cannot read until {text!r}: {UNTIL_HELP}")
    rhs = match["rhs"].strip()
    relative = _OF_FIRST.match(rhs)
    if relative is not None:
        magnitude, units, of_first = float(relative["percent"]) / 100.0, None, True
    else:
        try:
            quantity = parse(rhs)
        except ValueError as exc:
            raise ValueError(f"until {text!r}: {exc}") from None
        if not re.match(r"^[+-]?(\d|\.\d)", rhs):
            raise ValueError(f"until {text!r}: {rhs!r} does not start with a number")
        magnitude, of_first = float(quantity.magnitude), False
        units = None if str(quantity.units) == "dimensionless" else str(quantity.units)
    return Until(
        text.strip(),
        match["func"],
        match["role"],
        match["variable"],
        match["step"].strip() if match["step"] else None,
        match["op"],
        magnitude,
        units,
        of_first,
    )


@dataclass(frozen=True)
class BoundUntil:
    """An ``until`` with its threshold in the computed quantity's units (the variable's,
    times seconds for ``integral``), or a fraction of the first repeat's value."""

    text: str
    func: str
    role: str
    variable: str
    steps: tuple[int, ...]  # method indices whose samples count
    op: str
    threshold: float | None
    fraction: float | None
    units: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BoundUntil:
        values = {k: data[k] for k in cls.__dataclass_fields__}
        values["steps"] = tuple(values["steps"])
        return cls(**values)

    def holds(self, value: float, first: float) -> bool:
        threshold = self.threshold if self.fraction is None else self.fraction * first
        return _OPS[self.op](value, threshold)  # type: ignore[arg-type]


def bind_until(until: Until, steps: Mapping[str, tuple[int, str]], units_of: UnitsOf) -> BoundUntil:
    """``until`` of a repeat whose steps are ``steps`` (task name -> (method index, role)),
    bound to the variable's units; ValueError if the step, role or units do not fit."""
    roles = sorted({role for _, role in steps.values()})
    if until.step is not None:
        if until.step not in steps:
            raise ValueError(
                f"until {until.text!r}: the repeat has no step {until.step!r} "
                f"(its steps: {', '.join(steps)})"
            )
        index, role = steps[until.step]
        if until.role is not None and until.role != role:
            raise ValueError(f"until {until.text!r}: step {until.step!r} runs on {role!r}")
    else:
        role = until.role or (roles[0] if len(roles) == 1 else "")
        if not role:
            raise ValueError(f"until {until.text!r}: name the role, one of {', '.join(roles)}")
        if role not in roles:
            raise ValueError(f"until {until.text!r}: the repeat has no step on {role!r}")
    indices = (
        (steps[until.step][0],)
        if until.step is not None
        else tuple(i for i, r in steps.values() if r == role)
    )
    found = units_of(role, until.variable)
    if found is None:
        raise ValueError(f"until {until.text!r}: {role!r} has no variable {until.variable!r}")
    (var_units,) = found
    units = var_units
    if until.func == "integral" and var_units != UNDECLARED:
        units = "s" if var_units in _NONE else f"({var_units}) * s"
    threshold, fraction = None, None
    if until.of_first:
        fraction = until.magnitude
    elif var_units == UNDECLARED:
        threshold, units = until.magnitude, until.units
    else:
        written = Condition(
            until.text, role, until.variable, until.op, until.magnitude, until.units
        )
        threshold = _convert(written, role, units)
    return BoundUntil(
        until.text, until.func, role, until.variable, indices, until.op, threshold, fraction, units
    )


class RepeatQuantity:
    """The quantity of one repeat that an ``until`` compares: fed with the samples of the
    steps it counts, in time order."""

    def __init__(self, until: BoundUntil) -> None:
        self.until = until
        self.last: float | None = None
        self.low = math.inf
        self.high = -math.inf
        self.area = 0.0
        self._prev: tuple[float, float] | None = None
        self._prev_step: int | None = None

    def add(self, step: int, uts: Sequence[float], values: Sequence[Any]) -> None:
        if step not in self.until.steps:
            return
        if step != self._prev_step:
            self._prev, self._prev_step = None, step  # no area across the gap between steps
        for stamp, raw in zip(uts, values, strict=False):
            try:
                value = float(raw)
            except (TypeError, ValueError):
                continue
            if math.isnan(value):
                continue
            self.last = value
            self.low, self.high = min(self.low, value), max(self.high, value)
            if self._prev is not None:
                t0, v0 = self._prev
                self.area += (float(stamp) - t0) * (value + v0) / 2.0
            self._prev = (float(stamp), value)

    def value(self) -> float | None:
        """None if no sample counted."""
        if self.last is None:
            return None
        func = self.until.func
        if func == "last":
            return self.last
        if func == "min":
            return self.low
        if func == "max":
            return self.high
        return self.area
