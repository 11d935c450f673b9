"""Units: pint for parsing durations and quantities, UDUNITS strings for NetCDF."""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def get_ureg() -> Any:
    import pint

    return pint.UnitRegistry()


def parse_quantity(value: Any, units: str | None) -> float:
    """Magnitude of ``value`` in ``units``; numbers are taken as already in ``units``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a quantity")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a number or a quantity string")
    ureg = get_ureg()
    try:
        qty = ureg.Quantity(value.strip())
    except Exception:
        raise ValueError(f"cannot read {value!r} as a quantity") from None
    if units is None:
        if not qty.dimensionless:
            raise ValueError(f"{value!r} has units, but a plain number is expected")
        return float(qty.magnitude)
    try:
        return float(qty.to(units).magnitude)
    except Exception:
        raise ValueError(f"{value!r} cannot be converted to {units}") from None


def to_seconds(value: Any) -> float:
    """A duration in seconds: numbers are seconds, strings like "10 s" or "2 h" are parsed."""
    return parse_quantity(value, "s")


_CF = {"second": "s", "seconds": "s", "percent": "percent", "degC": "degC", "B": "B"}


def cf_units(units: str | None) -> str:
    """A UDUNITS-compatible unit string for a pint unit string (None means dimensionless)."""
    if units is None or units.strip() in ("", "dimensionless"):
        return "1"
    units = units.strip()
    if units in _CF:
        return _CF[units]
    try:
        unit = get_ureg().Unit(units)
        return f"{unit:~}".replace("**", "^").replace(" ", "") or "1"
    except Exception:
        return units.replace("**", "^")
