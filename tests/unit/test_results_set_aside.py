"""A job's results or snapshot never destroy a file the job did not write.

Job ids restart at 1 (tomato 2.2 counts its own, a new datadir counts again), so
``results.1.nc`` may already be in the submit folder: such a file is kept under a free name
beside it (``results.1.old.nc``), the job's log says so, and ``results.1.nc`` is the new
job's, where scripts look for it.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import xarray as xr

from tomato_cli.models import Component, Job, parse_payload
from tomato_cli.models.context import JobContext, RoleComponent
from tomato_cli.models.submit import complete_payload, crate_path
from tomato_cli.store import JobStore
from tomato_cli.store.results import aside_name, set_aside, write_final_results, write_job_results

DATA = Path(__file__).resolve().parents[1] / "data"
TOMATO22_RESULTS = DATA / "tomato22_example_counter.nc"  # written by tomato 2.2's job 1
SUBMITTED = datetime(2026, 3, 1, 8, 0, 0, 123456, tzinfo=UTC)


def _context(
    root: Path,
    out: Path,
    jobid: int = 1,
    submitted_at: datetime = SUBMITTED,
    repositories: dict | None = None,
) -> JobContext:
    payload = parse_payload(
        {
            "sample": {"identifier": "s-1"},
            "method": [
                {
                    "component_role": "counter",
                    "technique_name": "count",
                    "max_duration": 1,
                    "sampling_interval": 0.5,
                }
            ],
        }
    )
    payload = complete_payload(payload, root, repositories or {})
    respath = out / f"results.{jobid}.nc"
    jobpath = root / "Jobs" / str(jobid)
    job = Job(
        id=jobid,
        payload=payload,
        status="r",
        submitted_at=submitted_at,
        launched_at=submitted_at,
        jobpath=str(jobpath),
        respath=str(respath),
        cratepath=crate_path(respath, payload, repositories or {}),
    )
    with JobStore(jobpath) as store:
        store.append("counter", [1.7e9, 1.7e9 + 0.5], {"val": [1, 2]}, {})
    comp = Component.make("example_counter", "dev", "addr", "1", "counter")
    return JobContext(
        jobid=jobid, daemon_port=1, job=job, components={"counter": RoleComponent(component=comp)}
    )


def _job_of(path: Path) -> dict:
    with xr.open_datatree(path) as dt:
        return json.loads(dt.attrs["tomato_Job"])


def _log(context: JobContext) -> str:
    path = Path(context.job.jobpath) / "job.log"
    return path.read_text() if path.exists() else ""


def test_a_22_results_file_of_the_same_name_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "here"
    out.mkdir()
    shutil.copy(TOMATO22_RESULTS, out / "results.1.nc")
    assert _job_of(out / "results.1.nc")["id"] == 1  # 2.2's job 1
    context = _context(tmp_path, out)
    path, problem = write_final_results(context, context.job.ended("c", None))
    assert problem is None and path == out / "results.1.nc"
    assert _job_of(path)["jobpath"] == context.job.jobpath  # ours, under the name expected
    kept = out / "results.1.old.nc"
    assert kept.read_bytes() == TOMATO22_RESULTS.read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["results.1.nc", "results.1.old.nc"]
    log = _log(context)
    assert "WARNING" in log and f"{out / 'results.1.nc'} was already there" in log
    assert "written by another job; it is kept as results.1.old.nc" in log


def test_the_jobs_own_file_is_replaced(tmp_path: Path) -> None:
    """Snapshots of one job replace each other; so do its results written again."""
    context = _context(tmp_path, tmp_path)
    snap = tmp_path / "snapshot.1.nc"
    write_job_results(context, snap)
    write_job_results(context, snap)
    ended = context.job.ended("ce", "driver died")
    write_final_results(context, context.job.ended("c", None))
    write_final_results(context, ended)  # after a crash, the daemon writes them again
    assert sorted(p.name for p in tmp_path.glob("*.nc")) == ["results.1.nc", "snapshot.1.nc"]
    assert _job_of(tmp_path / "results.1.nc")["status"] == "ce"
    assert _log(context) == ""


def test_a_job_1_of_an_earlier_datadir_is_another_job(tmp_path: Path) -> None:
    """Same id, same job folder (the datadir was wiped): its submission time tells."""
    out = tmp_path / "out"
    earlier = _context(tmp_path / "a", out, submitted_at=datetime(2026, 1, 1, tzinfo=UTC))
    write_final_results(earlier, earlier.job.ended("c", None))
    shutil.rmtree(tmp_path / "a")
    later = _context(tmp_path / "a", out)
    assert later.job.jobpath == earlier.job.jobpath and later.jobid == earlier.jobid
    write_final_results(later, later.job.ended("c", None))
    assert _job_of(out / "results.1.old.nc")["submitted_at"] == "2026-01-01 00:00:00+00:00"
    assert _job_of(out / "results.1.nc")["submitted_at"] == str(SUBMITTED)

    # a third one finds both names taken
    third = _context(tmp_path / "b", out, submitted_at=datetime(2026, 5, 1, tzinfo=UTC))
    write_final_results(third, third.job.ended("c", None))
    assert _job_of(out / "results.1.old-2.nc")["submitted_at"] == str(SUBMITTED)
    assert _job_of(out / "results.1.nc")["submitted_at"] == "2026-05-01 00:00:00+00:00"


def test_any_other_file_of_that_name_is_kept(tmp_path: Path) -> None:
    notes = tmp_path / "results.1.nc"
    notes.write_text("my notes, not a NetCDF file")
    context = _context(tmp_path, tmp_path)
    assert set_aside(notes, context.job) == tmp_path / "results.1.old.nc"
    assert (tmp_path / "results.1.old.nc").read_text() == "my notes, not a NetCDF file"
    assert not notes.exists()
    assert "written by no tomato job" in _log(context)
    assert set_aside(notes, context.job) is None  # nothing there: nothing to do


def test_a_crate_of_another_job_is_kept_too(tmp_path: Path) -> None:
    repositories = {"default": {"endpoint": "x"}}
    first = _context(tmp_path / "a", tmp_path, repositories=repositories)
    write_final_results(first, first.job.ended("c", None))
    other = _context(
        tmp_path / "b",
        tmp_path,
        submitted_at=datetime(2026, 6, 1, tzinfo=UTC),
        repositories=repositories,
    )
    write_final_results(other, other.job.ended("c", None))
    with zipfile.ZipFile(tmp_path / "results.1.old.zip") as crate:
        assert json.loads(crate.read("tomato_Job.json"))["jobpath"] == first.job.jobpath
    with zipfile.ZipFile(tmp_path / "results.1.zip") as crate:
        assert json.loads(crate.read("tomato_Job.json"))["jobpath"] == other.job.jobpath
    # the job's own crate written again replaces itself
    write_final_results(other, other.job.ended("c", None))
    assert sorted(p.name for p in tmp_path.glob("*.zip")) == ["results.1.old.zip", "results.1.zip"]


def test_aside_names(tmp_path: Path) -> None:
    path = tmp_path / "run-7.nc"
    assert aside_name(path) == tmp_path / "run-7.old.nc"
    (tmp_path / "run-7.old.nc").write_text("")
    (tmp_path / "run-7.old-2.nc").symlink_to(tmp_path / "nowhere")  # a dangling link counts
    assert aside_name(path) == tmp_path / "run-7.old-3.nc"
