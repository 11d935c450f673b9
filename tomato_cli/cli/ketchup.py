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


WAIT = typer.Option(
    False, "--wait", help="Follow the job until it ends; the exit code tells how it ended."
)
RECENT_ENDED = 50  # `ketchup status` lists this many ended jobs by default
WATCH = typer.Option(
    False, "--watch", help="Follow the job until it ends; the exit code tells how it ended."
)


@app.command()
def submit(
    ctx: typer.Context,
    payload: Path = typer.Argument(..., help="Payload file."),
    jobname: str | None = typer.Option(None, "--jobname", "-j", help="A name for the job."),
    wait: bool = WAIT,
    lab: bool = typer.Option(
        False, "--lab", help="Submit to the lab server's queue ([prefect] url), for any host."
    ),
    server: str | None = typer.Option(
        None, "--server", help="Submit to the queue of this lab server (its API URL)."
    ),
    pin: str | None = typer.Option(
        None, "--pin", help="With --lab/--server: only this host may take the job."
    ),
    priority: int | None = typer.Option(
        None,
        "--priority",
        help="0 or more (default: the payload's settings: priority, else 0); among jobs "
        "that can start, the highest starts first.",
    ),
):
    """Submit a payload; the job waits in the queue for a matching, ready pipeline.

    With --lab or --server, the job goes to the lab-wide queue of a lab server instead, and
    the first host with a ready pipeline that holds its sample takes it; --wait then follows
    it on whichever host takes it.
    """
    from tomato_cli.models import PayloadError, load_payload

    opts: Common = ctx.obj
    try:
        parsed = load_payload(payload)
    except PayloadError as exc:
        fail(opts, str(exc))
    if priority is not None:
        if priority < 0:
            fail(opts, f"--priority must be 0 or more, not {priority}")
        parsed.settings.priority = priority
    if lab or server:
        if jobname:
            fail(opts, "--jobname is for a job of this host, not of the lab")
        from tomato_cli.cli.lab_jobs import submit_to_lab

        submit_to_lab(opts, parsed, str(payload), server, pin, wait)
    if pin:
        fail(opts, "--pin needs --lab or --server")
    args: dict[str, Any] = {"jobname": jobname} if jobname is not None else {}
    reply = ask(
        opts,
        "job_submit",
        payload=parsed.model_dump(mode="json"),
        cwd=os.getcwd(),
        source=str(payload),
        **args,
    )
    if reply.success:
        # tomato 2.2's words: scripts look for them
        reply.msg = f"job submitted successfully with jobid {reply.data['id']}"
        if jobname is not None:
            reply.msg += f" and jobname {jobname!r}"
    if wait and reply.success:
        from tomato_cli.cli.watch import watch_job

        if not opts.as_yaml:
            print(reply.msg, flush=True)
        watch_job(opts, int(reply.data["id"]))
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
            "priority": j.get("priority", 0),
            "held": "held" if j.get("held") else None,
        }
        for j in jobs
    ]


@app.command()
def status(
    ctx: typer.Context,
    jobids: list[int] = typer.Argument(None, help="Job ids."),
    watch: bool = WATCH,
    every: bool = typer.Option(False, "--all", help="List every job, however long ago it ended."),
    ended: int = typer.Option(
        RECENT_ENDED, "--ended", help="Without ids: how many of the jobs that ended last to list."
    ),
    lab: str | None = typer.Option(
        None,
        "--lab",
        metavar="RUN",
        help="A job on the lab server ([prefect] url), by its flow run id or its job id, "
        "on whichever host runs it.",
    ),
    server: str | None = typer.Option(
        None, "--server", help="With --lab: the lab server's API URL."
    ),
):
    """Status of jobs; without ids, the queued and running jobs and the 50 that ended last.

    -y without ids lists every job, as tomato 2.2 does (scripts read it).
    """
    opts: Common = ctx.obj
    if lab is not None:
        if jobids or every:
            fail(opts, "--lab shows one lab job: give no job ids or --all with it")
        from tomato_cli.cli.lab_jobs import lab_status

        lab_status(opts, server, lab, watch)
    if server:
        fail(opts, "--server goes with --lab")
    if watch:
        if not jobids or len(jobids) != 1:
            fail(opts, "--watch follows one job: give exactly one job id")
        from tomato_cli.cli.watch import watch_job

        watch_job(opts, jobids[0])
    if ended < 0:
        fail(opts, f"--ended must be 0 or more, not {ended}")
    short = not (jobids or every or (opts.as_yaml and ended == RECENT_ENDED))
    reply = ask(opts, "job_status", jobids=jobids or None, **({"ended": ended} if short else {}))
    cols = ["id", "status", "held", "priority", "pipeline", "sample", "submitted", "started"]
    cols.append("completed")

    def text(jobs: list[dict[str, Any]]) -> str:
        notes = [f"job {j['id']}: {j['error']}" for j in jobs if j["status"] == "ce" and j["error"]]
        return "\n".join([table(_rows(jobs), cols), *notes])

    emit(opts, reply, text)


@app.command()
def cancel(
    ctx: typer.Context,
    jobids: list[int] = typer.Argument(None, help="Job ids."),
    every: bool = typer.Option(
        False, "--all", help="Every job not ended yet (q, qw, r, rp), or those the filters choose."
    ),
    statuses: str | None = typer.Option(
        None, "--status", help="With --all: only jobs in these statuses, e.g. q,qw."
    ),
    pipeline: str | None = typer.Option(
        None, "--pipeline", help="With --all: only jobs running on this pipeline."
    ),
    sample: str | None = typer.Option(
        None, "--sample", help="With --all: only jobs of this sample."
    ),
    yes: bool = typer.Option(False, "--yes", help="With --all: do not ask first."),
):
    """Cancel queued or running jobs (running jobs: status rd, data kept, results written).

    With --all, says which jobs it will cancel and asks first (unless --yes or -y).
    """
    opts: Common = ctx.obj
    if not every:
        if statuses or pipeline or sample or yes:
            fail(opts, "--status, --pipeline, --sample and --yes go with --all")
        if not jobids:
            fail(opts, "give the ids of the jobs to cancel, or --all")
        emit(opts, ask(opts, "job_cancel", jobids=jobids))
    if jobids:
        fail(opts, "give job ids or --all, not both")
    from tomato_cli.cli.queue_commands import cancel_all

    emit(opts, cancel_all(opts, statuses, pipeline, sample, ask_first=not yes))


@app.command("priority", context_settings={"ignore_unknown_options": True})
def set_priority(
    ctx: typer.Context,
    jobid: int = typer.Argument(..., help="Job id."),
    priority: str = typer.Argument(..., help="0 or more; higher starts first."),
):
    """Give a queued job a new priority: among jobs that can start, the highest starts first."""
    try:
        value: Any = int(priority)
    except ValueError:
        fail(ctx.obj, f"priority must be a whole number, 0 or more, not {priority!r}")
    emit(ctx.obj, ask(ctx.obj, "job_priority", jobid=jobid, priority=value))


@app.command()
def hold(ctx: typer.Context, jobids: list[int] = typer.Argument(..., help="Job ids.")):
    """Keep queued jobs from starting (they stay q/qw, shown as held) until released."""
    emit(ctx.obj, ask(ctx.obj, "job_hold", jobids=jobids))


@app.command()
def release(ctx: typer.Context, jobids: list[int] = typer.Argument(..., help="Job ids.")):
    """Let held jobs start again, in their place in the queue."""
    emit(ctx.obj, ask(ctx.obj, "job_release", jobids=jobids))


@app.command()
def pause(ctx: typer.Context, jobids: list[int] = typer.Argument(..., help="Job ids.")):
    """Pause running jobs: the step stops on the instrument; data and pipeline are kept."""
    emit(ctx.obj, ask(ctx.obj, "job_pause", jobids=jobids))


@app.command()
def resume(ctx: typer.Context, jobids: list[int] = typer.Argument(..., help="Job ids.")):
    """Resume paused jobs: the rest of the interrupted step, then the next steps."""
    emit(ctx.obj, ask(ctx.obj, "job_resume", jobids=jobids))


@app.command()
def snapshot(ctx: typer.Context, jobids: list[int] = typer.Argument(..., help="Job ids.")):
    """Write an up-to-date snapshot.<jobid>.nc of each job into the current directory."""
    from tomato_cli.models.context import JobContext
    from tomato_cli.store.results import set_aside, write_job_results

    opts: Common = ctx.obj
    contexts = []
    for jobid in jobids:  # every job is checked before any file is written
        reply = ask(opts, "job_context", jobid=jobid)
        if not reply.success:
            emit(opts, reply)
        context = JobContext.model_validate(reply.data)
        if context.job.status in ("q", "qw"):
            fail(opts, f"job {jobid} has not started yet (status {context.job.status})")
        contexts.append(context)
    paths, kept = [], []
    for context in contexts:
        path = Path.cwd() / f"snapshot.{context.jobid}.nc"
        try:
            aside = set_aside(path, context.job)  # a file of another job is kept
            write_job_results(context, path)
        except OSError as exc:
            fail(opts, f"cannot write {path}: {exc}")
        paths.append(str(path))
        if aside is not None:
            kept.append(str(aside))
    data: dict[str, Any] = {"path": paths[0]} if len(paths) == 1 else {}
    data["paths"] = paths
    msg = f"wrote {', '.join(paths)}"
    if kept:
        data["kept"] = kept
        msg += f"; what was there before, not written by the job, is kept as {', '.join(kept)}"
    emit(opts, Reply(True, msg, data))


@app.command()
def search(
    ctx: typer.Context,
    jobname: str = typer.Argument(..., help="A part of the job name to look for."),
    complete: bool = typer.Option(
        False, "--complete", "-c", help="Look in finished jobs (c, ce, cd) too."
    ),
):
    """Jobs whose name contains JOBNAME (queued and running ones; -c: finished ones too)."""
    opts: Common = ctx.obj
    reply = ask(opts, "job_status", jobids=None)
    if not reply.success:
        emit(opts, reply)
    found = [
        job
        for job in reply.data
        if jobname in (job.get("jobname") or "")
        and (complete or job["status"] not in ("c", "ce", "cd"))
    ]
    if not found:
        fail(opts, f"no job matching {jobname!r} found")
    ids = ", ".join(str(job["id"]) for job in found)
    cols = ["id", "status", "jobname", "pipeline", "sample", "submitted"]
    rows = [
        {**row, "jobname": job.get("jobname")} for row, job in zip(_rows(found), found, strict=True)
    ]
    emit(
        opts,
        Reply(True, f"jobs matching {jobname!r}: {ids}", found),
        lambda _: table(rows, cols),
    )


@app.command()
def plot(
    ctx: typer.Context,
    jobid: int,
    output: Path = typer.Option(
        None, "--output", "-o", help="PNG or SVG file, by suffix (default: plot.<jobid>.png)."
    ),
):
    """Plot a job's data as it is now: the same plot as in the Prefect UI."""
    from tomato_cli.models import Job

    opts: Common = ctx.obj
    path = (output or Path(f"plot.{jobid}.png")).expanduser().absolute()
    fmt = path.suffix.lower().removeprefix(".")
    if fmt not in ("png", "svg"):
        fail(opts, f"cannot write {path.name}: the file name must end in .png or .svg")
    reply = ask(opts, "job_status", jobids=[jobid])
    if not reply.success:
        emit(opts, reply)
    job = Job.model_validate(reply.data[0])
    if job.status in ("q", "qw"):
        fail(opts, f"job {jobid} has not started yet (status {job.status})")
    from tomato_cli.plots import job_plot

    image = job_plot(job, fmt)
    try:
        path.write_bytes(image)
    except OSError as exc:
        fail(opts, f"cannot write {path}: {exc.strerror or exc}")
    emit(opts, Reply(True, f"wrote {path}", {"path": str(path), "format": fmt}))


def main() -> None:
    run_app(app, "ketchup")
