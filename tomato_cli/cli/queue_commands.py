"""``ketchup cancel --all``: choose the jobs, say which, ask, then cancel them."""

from __future__ import annotations

import sys

import typer

from tomato_cli.cli.job_filters import matching, parse_statuses
from tomato_cli.cli.output import Common, ask, fail
from tomato_cli.rpc import Reply


def cancel_all(
    opts: Common,
    statuses: str | None,
    pipeline: str | None,
    sample: str | None,
    ask_first: bool,
) -> Reply:
    """Cancel the jobs the filters choose; asks first unless told not to or -y is given."""
    try:
        wanted = parse_statuses(statuses)
    except ValueError as exc:
        fail(opts, str(exc))
    if pipeline is not None:
        found = ask(opts, "status", what="pipelines")
        if not found.success:
            return found
        if pipeline not in {p["name"] for p in found.data}:
            fail(opts, f"pipeline {pipeline!r} does not exist")
    reply = ask(opts, "job_status", jobids=None)
    if not reply.success:
        return reply
    jobs = matching(reply.data, wanted, pipeline, sample)
    if not jobs:
        return Reply(True, "no job matches: nothing cancelled", [])
    listed = ", ".join(f"{j['id']} ({j['status']})" for j in jobs)
    if ask_first and not opts.as_yaml:
        sys.stdout.write(f"will cancel {len(jobs)} job(s): {listed}\n")
        try:
            confirmed = typer.confirm("Cancel them?", default=False)
        except typer.Abort:
            confirmed = False
        if not confirmed:
            fail(opts, "not confirmed: nothing cancelled")
    ids = [int(j["id"]) for j in jobs]
    done = ask(opts, "job_cancel", jobids=ids, skip_finished=True)
    if done.success:
        done.msg = f"cancelling {len(jobs)} job(s): {listed}"
    return done
