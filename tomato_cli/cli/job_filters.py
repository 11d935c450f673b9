"""Choosing jobs by status, pipeline and sample (``ketchup cancel --all``): pure functions."""

from __future__ import annotations

from typing import Any, Final

STATUSES: Final = ("q", "qw", "r", "rp", "rd", "c", "ce", "cd")
CANCELLABLE: Final = ("q", "qw", "r", "rp")  # rd is being cancelled already


def parse_statuses(text: str | None, allowed: tuple[str, ...] = CANCELLABLE) -> tuple[str, ...]:
    """``"q,qw"`` as statuses (all ``allowed`` ones for None); ValueError with the reason."""
    if text is None:
        return allowed
    wanted = tuple(s.strip() for s in text.split(",") if s.strip())
    if not wanted:
        raise ValueError("--status needs one or more statuses, such as q,qw")
    unknown = [s for s in wanted if s not in STATUSES]
    if unknown:
        raise ValueError(
            f"unknown status(es) {', '.join(unknown)}: the statuses are {', '.join(STATUSES)}"
        )
    refused = [s for s in wanted if s not in allowed]
    if refused:
        raise ValueError(
            f"status(es) {', '.join(refused)} cannot be chosen here: only {', '.join(allowed)}"
        )
    return wanted


def matching(
    jobs: list[dict[str, Any]],
    statuses: tuple[str, ...],
    pipeline: str | None = None,
    sample: str | None = None,
) -> list[dict[str, Any]]:
    """The jobs (as ``ketchup status -y`` lists them) in one of ``statuses``, on ``pipeline``
    (a job runs on one, so queued jobs match no pipeline) and of ``sample``, if given."""
    return [
        job
        for job in jobs
        if job["status"] in statuses
        and (pipeline is None or job.get("pipeline") == pipeline)
        and (sample is None or job["payload"]["sample"]["identifier"] == sample)
    ]
