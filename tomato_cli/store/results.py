"""A job's NetCDF file (final results or snapshot), written from its append-only store."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from tomato_cli import __version__
from tomato_cli.models.context import JobContext
from tomato_cli.models.job import Job
from tomato_cli.store.jobstore import JobStore
from tomato_cli.store.netcdf import write_results

log = logging.getLogger(__name__)

FULL_BELOW_BYTES = 1 << 20


def write_job_results(context: JobContext, path: Path, job: Job | None = None) -> Path:
    """Write ``path`` from the store in the job folder; safe while the job still writes.

    ``job`` overrides the context's copy (the daemon passes the job as it ended).
    """
    job = job or context.job
    with JobStore(Path(job.jobpath), durable=False) as store:
        return write_results(
            path, store, job.model_dump_json(), context.component_json(), __version__
        )


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
