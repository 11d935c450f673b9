"""Statistics of repeated measurements and the rows of the benchmark table: medians with
their spread, and ratios of ours to tomato 2.2's from the same run."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


def summary(values: list[float], fmt: str = "{:.2f}") -> str:
    """``median [min–max] (n=N)``; empty -> ``n/a``."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} [{fmt.format(min(vals))}–{fmt.format(max(vals))}] (n={len(vals)})"


def median(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def ratio(ours: list[float] | float | None, theirs: list[float] | float | None) -> str:
    o = median(ours) if isinstance(ours, list) else ours
    t = median(theirs) if isinstance(theirs, list) else theirs
    if o is None or t is None or t == 0:
        return "–"
    return f"{o / t:.2f}"


@dataclass
class Row:
    scenario: str
    metric: str
    ours: str
    theirs: str = "–"
    ratio: str = "–"
    note: str = ""


def row(
    scenario: str,
    metric: str,
    ours: list[float] | None,
    theirs: list[float] | None = None,
    fmt: str = "{:.2f}",
    note: str = "",
) -> Row:
    return Row(
        scenario,
        metric,
        summary(ours, fmt) if ours is not None else "–",
        summary(theirs, fmt) if theirs is not None else "–",
        ratio(ours, theirs) if ours is not None and theirs is not None else "–",
        note,
    )
