"""Private unit helpers for drivers: pint is imported lazily, on first use."""

from __future__ import annotations

import functools
import math
from typing import Any


@functools.cache
def _registry() -> Any:
    import pint

    return pint.UnitRegistry()


def magnitude_in(value: Any, units: str | None) -> float:
    """``value`` (a number or a pint string such as ``"1 ms"``) as a float in ``units``.

    Plain numbers, and strings without units, are taken as already in ``units``.
    Raises ``ValueError`` with a one-line reason.
    """
    if isinstance(value, bool):
        raise ValueError(f"got bool {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"got {type(value).__name__} {value!r}")
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        quantity = _registry().Quantity(text)
    except Exception:
        raise ValueError(f"cannot read {value!r} as a quantity") from None
    if not isinstance(getattr(quantity, "magnitude", None), int | float):
        raise ValueError(f"cannot read {value!r} as a quantity")
    if quantity.dimensionless and str(quantity.units) == "dimensionless":
        return float(quantity.magnitude)
    if units is None:
        raise ValueError(f"{value!r} has units")
    try:
        return float(quantity.to(units).magnitude)
    except Exception:
        raise ValueError(f"{value!r} cannot be converted to {units}") from None


def to_seconds(value: Any) -> float:
    """A duration (number of seconds or pint string like ``"10 ms"``) in seconds."""
    seconds = magnitude_in(value, "s")
    if not math.isfinite(seconds):
        raise ValueError(f"duration {value!r} is not finite")
    return seconds
