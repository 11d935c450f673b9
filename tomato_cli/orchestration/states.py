"""The one mapping between tomato job statuses and Prefect states."""

from __future__ import annotations

from typing import Final

# tomato status -> (Prefect state type, Prefect state name)
PREFECT_STATE: Final[dict[str, tuple[str, str]]] = {
    "q": ("PAUSED", "Queued"),
    "qw": ("PAUSED", "Waiting"),
    "r": ("RUNNING", "Running"),
    "rp": ("PAUSED", "Paused"),
    "rd": ("CANCELLING", "Cancelling"),
    "c": ("COMPLETED", "Completed"),
    "ce": ("FAILED", "Failed"),
    "cd": ("CANCELLED", "Cancelled"),
}

# a held job waits as q or qw, under a state name of its own (a flag, not a status)
HELD_STATE: Final[tuple[str, str]] = ("PAUSED", "Held")


def prefect_state(status: str, held: bool = False) -> tuple[str, str]:
    """The Prefect state (type, name) that stands for a status (and the hold of a queued job)."""
    return HELD_STATE if held and status in ("q", "qw") else PREFECT_STATE[status]


_BY_TYPE: Final[dict[str, str]] = {
    "RUNNING": "r",
    "CANCELLING": "rd",
    "COMPLETED": "c",
    "FAILED": "ce",
    "CRASHED": "ce",
    "CANCELLED": "cd",
}


def tomato_status(state_type: str, state_name: str) -> str | None:
    """The tomato status a Prefect state stands for (None for states we never use)."""
    if state_type == "PAUSED":
        return {"Waiting": "qw", "Queued": "q", "Held": "q"}.get(state_name, "rp")
    return _BY_TYPE.get(state_type)
