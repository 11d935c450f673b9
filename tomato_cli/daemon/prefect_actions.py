"""What a Prefect user does to a tomato job's flow run, and what tomato does about it.

A state is an *action* when it is not one the job's status expects (the table
``EXPECTED``) and not the last state tomato itself set. ``REACTIONS`` then says, in order,
what each action on a job in each status becomes: the matching tomato command, or a refusal
that puts the run back and says why on it. Runs made in Prefect (a Run of the deployment, a
Retry of a finished job) and deleted runs are handled here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Reaction(StrEnum):
    CANCEL = "cancel"  # as `ketchup cancel`: ends cd with data and results
    FAIL = "fail"  # stopped like a cancel, but ends ce
    PAUSE = "pause"  # as `ketchup pause`
    RESUME = "resume"  # as `ketchup resume`
    PUT_BACK = "put back"  # refused: the run gets tomato's state again, and a log line why
    IGNORE = "ignore"


# the Prefect state types that agree with each tomato status
EXPECTED: Final[dict[str, tuple[str, ...]]] = {
    "q": ("PAUSED",),
    "qw": ("PAUSED",),
    "r": ("RUNNING", "PENDING"),  # Pending: its engine is starting it
    "rp": ("PAUSED",),
    # asked to stop: the flow run ends it as it ends (Cancelled, Failed or Completed)
    "rd": ("CANCELLING", "CANCELLED", "FAILED", "CRASHED", "COMPLETED"),
}

WAITING = ("q", "qw")
CANCELLING = ("CANCELLING", "CANCELLED")
FAILING = ("FAILED", "CRASHED")


@dataclass(frozen=True)
class Rule:
    statuses: tuple[str, ...]
    state_types: tuple[str, ...]
    reaction: Reaction
    why: str


REACTIONS: Final[tuple[Rule, ...]] = (
    Rule(WAITING + ("r", "rp"), CANCELLING, Reaction.CANCEL, "cancelled in Prefect"),
    Rule(WAITING + ("r", "rp"), FAILING, Reaction.FAIL, "Failed or Crashed set in Prefect"),
    Rule(("r",), ("PAUSED",), Reaction.PAUSE, "paused in Prefect"),
    Rule(("rp",), ("RUNNING", "SCHEDULED", "PENDING"), Reaction.RESUME, "resumed in Prefect"),
    Rule(
        WAITING,
        ("RUNNING", "SCHEDULED", "PENDING", "COMPLETED"),
        Reaction.PUT_BACK,
        "only the tomato gate starts a job, once a pipeline holding its sample is ready",
    ),
    Rule(
        ("r", "rp"),
        ("SCHEDULED", "COMPLETED"),
        Reaction.PUT_BACK,
        "a running tomato job ends when its steps end; cancel or pause it instead",
    ),
)


def reaction_to(status: str, state_type: str) -> tuple[Reaction, str]:
    """What tomato does when a job in ``status`` is put in ``state_type`` in Prefect."""
    if state_type in EXPECTED.get(status, ()):
        return Reaction.IGNORE, ""
    for rule in REACTIONS:
        if status in rule.statuses and state_type in rule.state_types:
            return rule.reaction, rule.why
    return Reaction.IGNORE, ""
