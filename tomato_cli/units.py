"""Units: the one place where quantities typed by users are parsed (with pint).

Every parse has a bounded cost. pint evaluates unit expressions as arithmetic, so a string
such as ``"1 s**9**9**9"`` or ``"1 km**(9**(9**9))"`` would keep a process busy for ever.
Before pint sees a string, it must be at most ``MAX_LENGTH`` characters of the form
``<number> <units>``, where the units are names joined by ``*``, ``/``, spaces or
parentheses, each name with at most one small exponent (``m**2``, ``s^-1``). Exponents on
parenthesised groups are refused (``(m/s)**2``: write ``m**2/s**2``), so exponents never
multiply.

pint is imported only when first needed, so importing this module stays cheap.
"""

from __future__ import annotations

import functools
import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pint

__all__ = ["MAX_LENGTH", "cf_units", "get_ureg", "magnitude_in", "to_seconds"]

MAX_LENGTH = 100
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_QUANTITY = re.compile(rf"^\s*({_NUMBER})?\s*(.*?)\s*$", re.DOTALL)
_NAME = r"(?:(?:[^\W\d]|°)[\w°]*|%)"
_EXPONENT = r"(?:\*\*|\^)\s*[-+]?\d{1,2}(?:\.\d{1,3})?"
_UNIT_TOKEN = re.compile(rf"\s*(?:{_NAME}(?:\s*{_EXPONENT})?|[*/·()])")

_CF_NAMES = {
    "degree_Celsius": "degC",
    "degree_Fahrenheit": "degF",
    "percent": "percent",
    "count": "1",
    "degree": "degree",
}


@functools.cache
def get_ureg() -> pint.UnitRegistry:
    """Return the shared pint UnitRegistry (created on first use, about 0.5 s)."""
    import pint

    return pint.UnitRegistry()


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _check_units(units: str, text: str) -> None:
    """Refuse unit expressions whose evaluation cost is not bounded (see the module doc)."""
    pos, depth = 0, 0
    while pos < len(units):
        match = _UNIT_TOKEN.match(units, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"{text!r} is not a valid quantity")
        token = match.group().strip()
        depth += token == "("
        depth -= token == ")"
        if depth < 0:
            raise ValueError(f"{text!r} is not a valid quantity (unbalanced parentheses)")
        pos = match.end()
    if depth:
        raise ValueError(f"{text!r} is not a valid quantity (unbalanced parentheses)")


def parse(text: str) -> pint.Quantity:
    """``"<number> <units>"`` (either part may be left out) as a pint Quantity.

    Raises ValueError with a one-line reason; the cost is bounded for any input.
    """
    if len(text) > MAX_LENGTH:
        raise ValueError(f"string too long ({len(text)} > {MAX_LENGTH} characters)")
    match = _QUANTITY.match(text)
    assert match is not None  # the pattern matches any string
    number, units = match[1], match[2]
    if number is None and not units:
        raise ValueError("empty string is not a quantity")
    magnitude = float(number) if number is not None else 1.0
    if not math.isfinite(magnitude):
        raise ValueError(f"{text!r} is not a finite number")
    _check_units(units, text)
    try:
        return get_ureg().Quantity(magnitude, units or "dimensionless")
    except Exception as exc:  # pint raises many different exception types
        raise ValueError(f"cannot parse {text!r} as a quantity ({_one_line(exc)})") from None


def _finite(value: float, text: object) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def to_seconds(value: Any) -> float:
    """A duration in seconds: numbers are seconds, strings such as ``"2 h"`` use pint."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a number or a string with units, got {value!r}")
    if not isinstance(value, str):
        return _finite(float(value), value)
    qty = parse(value)
    if qty.dimensionless:
        return _finite(float(qty.to("dimensionless").magnitude), value)
    if qty.dimensionality != get_ureg().second.dimensionality:
        raise ValueError(f"{value!r} is not a time (dimension {qty.dimensionality})")
    return _finite(float(qty.to("s").magnitude), value)


def magnitude_in(value: Any, units: str | None) -> float:
    """``value`` (a number or a string such as ``"1 ms"``) as a float in ``units``.

    Plain numbers, and strings without units, are taken as already in ``units`` (and may
    be NaN or infinite: callers check). Raises ValueError with a one-line reason.
    """
    if isinstance(value, bool):
        raise ValueError(f"got bool {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"got {type(value).__name__} {value!r}")
    text = value.strip()
    if len(text) <= MAX_LENGTH:
        try:
            return float(text)
        except ValueError:
            pass
    try:
        quantity = parse(text)
    except ValueError as exc:
        if "too long" in str(exc):
            raise
        raise ValueError(f"cannot read {value!r} as a quantity") from None
    if quantity.unitless:
        return float(quantity.magnitude)
    if units is None:
        raise ValueError(f"{value!r} has units")
    try:
        return float(quantity.to(units).magnitude)
    except Exception:
        raise ValueError(f"{value!r} cannot be converted to {units}") from None


def _cf_symbol(name: str) -> str:
    if name in _CF_NAMES:
        return _CF_NAMES[name]
    symbol = get_ureg().get_symbol(name).replace("µ", "u").replace("μ", "u")
    return symbol if symbol.isascii() else name


def cf_units(units: str | None) -> str:
    """Map a pint unit string to a CF/UDUNITS-compatible one ("second" -> "s", None -> "1").

    Strings that are not valid units are returned unchanged (stripped).
    """
    if units is None or not units.strip():
        return "1"
    try:
        _check_units(units.strip(), units)
        unit = get_ureg().Unit(units.strip())
    except Exception:
        return units.strip()
    parts = []
    for name, exp in unit._units.items():
        symbol = _cf_symbol(name)
        if symbol == "1":
            continue
        parts.append(symbol if exp == 1 else f"{symbol}{exp:g}")
    return " ".join(parts) or "1"
