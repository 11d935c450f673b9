"""What each Prefect action on a job's flow run becomes (pure table, no processes)."""

from __future__ import annotations

import pytest

from tomato_cli.daemon.prefect_actions import EXPECTED, Reaction, reaction_to

TYPES = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING", "CANCELLED")
TYPES += ("COMPLETED", "FAILED", "CRASHED")


@pytest.mark.parametrize(
    "status, state_type, reaction",
    [
        # a waiting job: cancel or fail it there; anything that would start it is refused
        ("q", "PAUSED", Reaction.IGNORE),
        ("qw", "CANCELLING", Reaction.CANCEL),
        ("q", "CANCELLED", Reaction.CANCEL),
        ("qw", "FAILED", Reaction.FAIL),
        ("q", "CRASHED", Reaction.FAIL),
        ("qw", "RUNNING", Reaction.PUT_BACK),
        ("q", "SCHEDULED", Reaction.PUT_BACK),
        ("qw", "PENDING", Reaction.PUT_BACK),
        ("q", "COMPLETED", Reaction.PUT_BACK),
        # a running job
        ("r", "RUNNING", Reaction.IGNORE),
        ("r", "PENDING", Reaction.IGNORE),
        ("r", "PAUSED", Reaction.PAUSE),
        ("r", "CANCELLING", Reaction.CANCEL),
        ("r", "FAILED", Reaction.FAIL),
        ("r", "CRASHED", Reaction.FAIL),
        ("r", "COMPLETED", Reaction.PUT_BACK),
        ("r", "SCHEDULED", Reaction.PUT_BACK),
        # a paused job
        ("rp", "PAUSED", Reaction.IGNORE),
        ("rp", "RUNNING", Reaction.RESUME),
        ("rp", "SCHEDULED", Reaction.RESUME),  # the UI's Resume of a rescheduling pause
        ("rp", "CANCELLED", Reaction.CANCEL),
        ("rp", "FAILED", Reaction.FAIL),
        ("rp", "COMPLETED", Reaction.PUT_BACK),
    ],
)
def test_reactions(status: str, state_type: str, reaction: Reaction) -> None:
    got, why = reaction_to(status, state_type)
    assert got is reaction
    assert bool(why) == (reaction is not Reaction.IGNORE)


@pytest.mark.parametrize("state_type", TYPES)
def test_a_job_asked_to_stop_is_left_to_end(state_type: str) -> None:
    """While a job is stopping, its flow run writes its own end: nothing to react to."""
    reaction, _ = reaction_to("rd", state_type)
    assert reaction is Reaction.IGNORE


@pytest.mark.parametrize("status", ["q", "qw", "r", "rp"])
@pytest.mark.parametrize("state_type", TYPES)
def test_every_state_of_a_live_job_has_an_answer(status: str, state_type: str) -> None:
    """No state a user can set leaves a job out of step with Prefect unnoticed: each is
    expected, or turned into a tomato action, or put back."""
    reaction, _ = reaction_to(status, state_type)
    if state_type in EXPECTED[status]:
        assert reaction is Reaction.IGNORE
    else:
        assert reaction is not Reaction.IGNORE, (status, state_type)
