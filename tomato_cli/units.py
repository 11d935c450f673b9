"""Unit helpers: a lazily created pint registry, durations, quantities, CF unit strings.

pint is imported only when first needed, so importing this module stays cheap.
"""

from __future__ import annotations

import functools
import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pint

__all__ = ["get_ureg", "to_seconds", "parse_quantity", "cf_units"]

_MAX_LEN = 100
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_QUANTITY_RE = re.compile(rf"^\s*({_NUMBER})\s*(.*?)\s*$")
# guards against pathological expressions such as "s**9**9**9" (pint would hang)
_CHAINED_POWER_RE = re.compile(r"(\*\*|\^)\s*[-+]?[\w.]+\s*(\*\*|\^)")
_LONG_DIGITS_RE = re.compile(r"\d{4,}")

_CF_NAMES = {
    "degree_Celsius": "degC",
    "degree_Fahrenheit": "degF",
    "percent": "percent",
    "count": "1",
    "degree": "degree",
}


@functools.cache
def get_ureg() -> pint.UnitRegistry:
    """Return the shared pint UnitRegistry (created on first use)."""
    import pint

    return pint.UnitRegistry()


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _check_number(value: float | int, what: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a number or a string with units, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{what}: {value!r} is not a finite number")
    return out


def _parse(text: str, what: str) -> pint.Quantity:
    """Parse ``"<number> <units>"`` (or bare units/number) into a pint Quantity."""
    if len(text) > _MAX_LEN:
        raise ValueError(f"{what}: string too long ({len(text)} > {_MAX_LEN} characters)")
    ureg = get_ureg()
    match = _QUANTITY_RE.match(text)
    magnitude, unit = (float(match[1]), match[2]) if match else (1.0, text.strip())
    if not unit and not match:
        raise ValueError(f"{what}: empty string is not a quantity")
    if _CHAINED_POWER_RE.search(unit) or _LONG_DIGITS_RE.search(unit):
        raise ValueError(f"{what}: {text!r} is not a valid quantity")
    if not math.isfinite(magnitude):
        raise ValueError(f"{what}: {text!r} is not a finite number")
    try:
        return ureg.Quantity(magnitude, unit or "dimensionless")
    except Exception as exc:  # pint raises many different exception types
        raise ValueError(
            f"{what}: cannot parse {text!r} as a quantity ({_one_line(exc)})"
        ) from None


def to_seconds(value: float | int | str) -> float:
    """Convert a duration to seconds: numbers are seconds, strings like "2 h" use pint."""
    if not isinstance(value, str):
        if not isinstance(value, int | float):
            raise ValueError(f"duration: expected a number or a string, got {value!r}")
        return _check_number(value, "duration")
    qty = _parse(value, "duration")
    if qty.dimensionless:
        return _check_number(float(qty.to("dimensionless").magnitude), "duration")
    if qty.dimensionality != get_ureg().second.dimensionality:
        raise ValueError(f"duration: {value!r} is not a time (dimension {qty.dimensionality})")
    return _check_number(float(qty.to("s").magnitude), "duration")


def parse_quantity(value: Any, units: str | None) -> float:
    """Return the magnitude of ``value`` in ``units``; plain numbers are taken as in ``units``."""
    what = f"quantity in {units!r}" if units else "dimensionless quantity"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _check_number(value, what)
    if isinstance(value, str):
        qty = _parse(value, what)
        if qty.dimensionless and units:
            return _check_number(float(qty.to("dimensionless").magnitude), what)
    elif hasattr(value, "to") and hasattr(value, "magnitude"):
        qty = value
    else:
        raise ValueError(f"{what}: expected a number or a string with units, got {value!r}")
    try:
        out = qty.to(units or "dimensionless").magnitude
    except Exception as exc:
        raise ValueError(f"{what}: cannot convert {value!r} ({_one_line(exc)})") from None
    return _check_number(float(out), what)


def _cf_symbol(name: str) -> str:
    if name in _CF_NAMES:
        return _CF_NAMES[name]
    symbol = get_ureg().get_symbol(name).replace("µ", "u").replace("μ", "u")
    return symbol if symbol.isascii() else name


def cf_units(units: str | None) -> str:
    """Map a pint unit string to a CF/UDUNITS-compatible one ("second" -> "s", None -> "1").

    Strings pint cannot parse are returned unchanged (stripped).
    """
    if units is None or not units.strip():
        return "1"
    try:
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
