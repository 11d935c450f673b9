"""``ketchup``: submit payloads, follow, cancel and snapshot jobs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from tomato_cli.cli.output import (
    Common,
    ask,
    emit,
    fail,
    make_app,
    run_app,
    table,
)
from tomato_cli.rpc import Reply

app = make_app("Submit and manage tomato jobs.")


@app.command()
def submit(ctx: typer.Context, payload: Path = typer.Argument(..., help="Payload file.")):
    """Submit a payload; the job waits in the queue for a matching, ready pipeline."""
    from tomato_cli.models import PayloadError, load_payload

    opts: Common = ctx.obj
    try:
        parsed = load_payload(payload)
    except PayloadError as exc:
        fail(opts, str(exc))
    reply = ask(
        opts,
        "job_submit",
        payload=parsed.model_dump(mode="json"),
        cwd=os.getcwd(),
        source=str(payload),
    )
    if reply.success:
        reply.msg = f"job {reply.data['id']} submitted"
    emit(opts, reply, lambda job: f"id: {job['id']}")


def _rows(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def short(ts: str | None) -> str | None:
        return ts[:19].replace("T", " ") if ts else None

    return [
        {
            "id": j["id"],
            "status": j["status"],
            "pipeline": j.get("pipeline"),
            "sample": j["payload"]["sample"]["identifier"],
            "submitted": short(j.get("submitted_at")),
            "started": short(j.get("launched_at")),
            "completed": short(j.get("completed_at")),
        }
        for j in jobs
    ]


@app.command()
def status(ctx: typer.Context, jobids: list[int] = typer.Argument(None, help="Job ids.")):
    """Status of jobs; without ids, of the whole queue."""
    opts: Common = ctx.obj
    reply = ask(opts, "job_status", jobids=jobids or None)
    cols = ["id", "status", "pipeline", "sample", "submitted", "started", "completed"]

    def text(jobs: list[dict[str, Any]]) -> str:
        notes = [f"job {j['id']}: {j['error']}" for j in jobs if j["status"] == "ce" and j["error"]]
        return "\n".join([table(_rows(jobs), cols), *notes])

    emit(opts, reply, text)


@app.command()
def cancel(ctx: typer.Context, jobids: list[int] = typer.Argument(..., help="Job ids.")):
    """Cancel queued or running jobs (running jobs: status rd, data kept, results written)."""
    emit(ctx.obj, ask(ctx.obj, "job_cancel", jobids=jobids))


@app.command()
def pause(ctx: typer.Context, jobids: list[int] = typer.Argument(..., help="Job ids.")):
    """Pause running jobs: the step stops on the instrument; data and pipeline are kept."""
    emit(ctx.obj, ask(ctx.obj, "job_pause", jobids=jobids))


@app.command()
def resume(ctx: typer.Context, jobids: list[int] = typer.Argument(..., help="Job ids.")):
    """Resume paused jobs: the rest of the interrupted step, then the next steps."""
    emit(ctx.obj, ask(ctx.obj, "job_resume", jobids=jobids))


@app.command()
def snapshot(ctx: typer.Context, jobid: int):
    """Write an up-to-date snapshot.<jobid>.nc into the current directory."""
    from tomato_cli.models.context import JobContext
    from tomato_cli.store.results import write_job_results

    opts: Common = ctx.obj
    reply = ask(opts, "job_context", jobid=jobid)
    if not reply.success:
        emit(opts, reply)
    context = JobContext.model_validate(reply.data)
    if context.job.status in ("q", "qw"):
        fail(opts, f"job {jobid} has not started yet (status {context.job.status})")
    path = Path.cwd() / f"snapshot.{jobid}.nc"
    try:
        write_job_results(context, path)
    except OSError as exc:
        fail(opts, f"cannot write {path}: {exc}")
    emit(opts, Reply(True, f"wrote {path}", {"path": str(path)}))


def main() -> None:
    run_app(app, "ketchup")
