"""A job's NetCDF file (final results or snapshot), written from its append-only store."""

from __future__ import annotations

import json
import logging
import os
import shutil
import zipfile
from datetime import datetime
from pathlib import Path

from tomato_cli import __version__
from tomato_cli.models.context import JobContext
from tomato_cli.models.job import CONDITIONS_FILE, Job
from tomato_cli.store.jobstore import JobStore
from tomato_cli.store.netcdf import read_job_attr, write_results

log = logging.getLogger(__name__)

FULL_BELOW_BYTES = 1 << 20


# what tells one job from another in a results file's tomato_Job: ids restart at 1 with a
# new datadir, and tomato 2.2 counts its own; the job folder is never reused while the
# datadir is kept, and the submission time tells a new datadir's job 1 from an old one's
_IDENTITY = ("id", "jobpath", "submitted_at")


def _identity(job_json: str) -> tuple[object, ...] | None:
    try:
        data = json.loads(job_json)
    except ValueError:
        return None
    return tuple(data.get(key) for key in _IDENTITY) if isinstance(data, dict) else None


def _job_json_in(path: Path) -> str | None:
    """The ``tomato_Job`` a results file (NetCDF, or RO-Crate zip) was written with."""
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as crate:
                return crate.read("tomato_Job.json").decode("utf-8")
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return None
    return read_job_attr(path)


def aside_name(path: Path) -> Path:
    """A free name beside ``path``: ``results.1.old.nc``, then ``results.1.old-2.nc``, ..."""
    n = 1
    while True:
        tag = "old" if n == 1 else f"old-{n}"
        candidate = path.with_name(f"{path.stem}.{tag}{path.suffix}")
        if not os.path.lexists(candidate):
            return candidate
        n += 1


def set_aside(path: Path, job: Job) -> Path | None:
    """Move a file at ``path`` that ``job`` did not write to a free name beside it.

    A file of the same job (an earlier snapshot, results rewritten after a crash) is left
    to be replaced; any other file, such as tomato 2.2's ``results.1.nc`` or that of a job
    1 of an earlier datadir, is renamed (see :func:`aside_name`) and the job's log says
    where it went. Returns the new name, or None if nothing was moved.
    """
    path = Path(path)
    if not os.path.lexists(path):
        return None
    mine = _identity(job.model_dump_json())
    found = _job_json_in(path)
    if found is not None and _identity(found) == mine:
        return None
    target = aside_name(path)
    os.rename(path, target)
    whose = "no tomato job" if found is None else "another job"
    _job_log(
        job,
        f"{path} was already there, written by {whose}; it is kept as {target.name} and "
        f"{path.name} is this job's",
    )
    return target


def _job_log(job: Job, message: str) -> None:
    """A warning in the job's own log (job.log in its folder), whoever writes the file
    (the job's runner, the daemon or `ketchup snapshot`). Logged at debug level only: in
    the runner, every record at INFO and above goes to job.log too, and would be there twice."""
    log.debug("job %s: %s", job.id, message)
    if job.jobpath is None:
        return
    stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
    try:
        with open(Path(job.jobpath) / "job.log", "a", encoding="utf-8") as out:
            out.write(f"{stamp} WARNING {__name__}: job {job.id}: {message}\n")
    except OSError:
        pass


def write_job_results(context: JobContext, path: Path, job: Job | None = None) -> Path:
    """Write ``path`` from the store in the job folder; safe while the job still writes.

    ``job`` overrides the context's copy (the daemon passes the job as it ended). A file
    at ``path`` that this job did not write is kept under another name (:func:`set_aside`).
    """
    job = job or context.job
    set_aside(Path(path), job)
    with JobStore(Path(job.jobpath), durable=False) as store:
        return write_results(
            path,
            store,
            job.model_dump_json(),
            context.component_json(),
            __version__,
            _conditions_attr(Path(job.jobpath)),
        )


def _conditions_attr(jobdir: Path) -> dict[str, str]:
    """``tomato_conditions``: the conditions met (JSON list: step, condition, role,
    variable, value, units, uts), for a job that has conditions and met one."""
    try:
        text = (jobdir / CONDITIONS_FILE).read_text(encoding="utf-8")
        json.loads(text)
    except (OSError, ValueError):
        return {}
    return {"tomato_conditions": text}


def write_final_results(context: JobContext, job: Job | None = None) -> tuple[Path, str | None]:
    """The final NetCDF at the job's result path, or in the job folder if that fails, and
    the job's RO-Crate next to it if it has a ``cratepath``.

    ``job`` is the job as it ends (see :meth:`Job.ended`), so that the file's
    ``tomato_Job`` tells its final status and completion time; if the result path cannot
    be used, the file written in the job folder says ``ce`` and why.
    Returns where the NetCDF was written and, if anything could not be written, why.
    """
    job = job or context.job
    problems: list[str] = []
    try:
        path = write_job_results(context, Path(job.respath), job)
    except OSError as exc:
        fallback = Path(job.jobpath) / Path(job.respath).name
        cause = _why_not_written(Path(job.respath), exc)
        why = f"could not write {job.respath} ({cause}); results are in {fallback}"
        log.error("job %s: %s", job.id, why)
        error = f"{job.error}; {why}" if job.error else why
        job = job.model_copy(update={"status": "ce", "error": error})
        path = write_job_results(context, fallback, job)
        problems.append(why)
    if job.cratepath:
        from tomato_cli.store.crate import write_crate  # rocrate: only for jobs that ask

        crate = Path(job.cratepath) if path == Path(job.respath) else path.with_suffix(".zip")
        try:
            set_aside(crate, job)
            write_crate(crate, path, job)
        except (OSError, ValueError) as exc:
            problems.append(f"could not write the RO-Crate {crate}: {exc}")
            log.error("job %s: %s", job.id, problems[-1])
    return path, "; ".join(problems) or None


def _why_not_written(path: Path, exc: OSError) -> str:
    """HDF5 reports most failures as 'Permission denied'; say when the disk is full."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        if shutil.disk_usage(folder).free < FULL_BELOW_BYTES:
            return f"no space left on the device of {folder}"
    except OSError:
        pass
    return exc.strerror or str(exc)
