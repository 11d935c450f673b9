"""Pieces of the tomato 2.2 compatibility: CLI options, job folders, final files, crates,
taking over a 2.x set-up."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import xarray as xr

from tomato_cli.cli.output import _level, hoist_common
from tomato_cli.models import Component, Job, load_settings, parse_payload
from tomato_cli.models.context import JobContext, RoleComponent
from tomato_cli.models.job import job_folder
from tomato_cli.models.submit import complete_payload, crate_path
from tomato_cli.models.tomato2x import (
    copy_devices,
    find_tomato2x_settings,
    import_tomato2x_settings,
)
from tomato_cli.store import JobStore
from tomato_cli.store.results import write_final_results

TASK = {"component_role": "counter", "technique_name": "count", "max_duration": 1}


def test_short_and_counted_options_move_to_the_front() -> None:
    argv = ["status", "pipelines", "-A", "/a", "-vv", "-q", "--timeout", "500", "-y"]
    assert hoist_common(argv) == [
        "-A",
        "/a",
        "-vv",
        "-q",
        "--timeout",
        "500",
        "-y",
        "status",
        "pipelines",
    ]
    assert hoist_common(["get", "c", "max", "--", "-v"]) == ["get", "c", "max", "--", "-v"]


@pytest.mark.parametrize(
    "base, verbose, quiet, level",
    [("INFO", 0, 0, "INFO"), ("INFO", 1, 0, "DEBUG"), ("INFO", 5, 0, "DEBUG"),
     ("INFO", 0, 2, "ERROR"), ("DEBUG", 0, 1, "INFO"), ("INFO", 0, 9, "CRITICAL")],
)  # fmt: skip
def test_verbosity_counts_as_in_tomato_22(base: str, verbose: int, quiet: int, level: str):
    assert _level(base, verbose, quiet) == level


def test_job_folder_never_reuses_a_folder_with_content(tmp_path: Path) -> None:
    assert job_folder(tmp_path, 3) == tmp_path / "3"
    (tmp_path / "3").mkdir()
    assert job_folder(tmp_path, 3) == tmp_path / "3"  # empty: ours from an earlier try
    (tmp_path / "3" / "jobdata.json").write_text("{}")  # tomato 2.2's job 3
    assert job_folder(tmp_path, 3) == tmp_path / "3.1"
    (tmp_path / "3.1").mkdir()
    (tmp_path / "3.1" / "x").write_text("")
    assert job_folder(tmp_path, 3) == tmp_path / "3.2"


def _context(tmp_path: Path, out: Path, repositories: dict | None = None) -> JobContext:
    payload = parse_payload(
        {
            "sample": {"identifier": "s-9", "sample_is_parent": False},
            "method": [{**TASK, "sampling_interval": 0.5}],
        }
    )
    payload = complete_payload(payload, tmp_path, repositories or {})
    respath = out / "results.9.nc"
    job = Job(
        id=9,
        payload=payload,
        status="r",
        jobpath=str(tmp_path / "job"),
        respath=str(respath),
        launched_at=datetime(2026, 1, 1, tzinfo=UTC),
        cratepath=crate_path(respath, payload, repositories),
    )
    comp = Component.make("example_counter", "dev", "addr", "1", "counter")
    with JobStore(tmp_path / "job") as store:
        store.append("counter", [1.7e9, 1.7e9 + 0.5], {"val": [1, 2]}, {})
    return JobContext(
        jobid=9, daemon_port=1, job=job, components={"counter": RoleComponent(component=comp)}
    )


def test_final_file_tells_how_the_job_ended(tmp_path: Path) -> None:
    context = _context(tmp_path, tmp_path)
    ended = context.job.ended("cd", "cancelled", at=datetime(2026, 1, 1, 0, 5, tzinfo=UTC))
    path, problem = write_final_results(context, ended)
    assert problem is None and path == tmp_path / "results.9.nc"
    with xr.open_datatree(path) as dt:
        meta = json.loads(dt.attrs["tomato_Job"])
    assert (meta["status"], meta["error"]) == ("cd", "cancelled")
    assert meta["completed_at"] == "2026-01-01 00:05:00+00:00"
    assert meta["cratepath"] is None and not path.with_suffix(".zip").exists()


def test_unwritable_output_the_file_in_the_job_folder_says_ce(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the output folder should be")
    context = _context(tmp_path, blocked / "sub", {"default": {}})
    path, problem = write_final_results(context, context.job.ended("c", None))
    assert path == tmp_path / "job" / "results.9.nc"
    assert problem.startswith(f"could not write {blocked / 'sub' / 'results.9.nc'}")
    with xr.open_datatree(path) as dt:
        meta = json.loads(dt.attrs["tomato_Job"])
    assert meta["status"] == "ce" and meta["error"] == problem
    assert path.with_suffix(".zip").is_file()  # the crate goes where the results went


def test_crate_holds_the_results_and_the_job(tmp_path: Path) -> None:
    context = _context(tmp_path, tmp_path, {"default": {"endpoint": "x"}, "other": {}})
    assert context.job.cratepath == str(tmp_path / "results.9.zip")
    path, problem = write_final_results(context, context.job.ended("c", None))
    assert problem is None
    with zipfile.ZipFile(tmp_path / "results.9.zip") as zf:
        meta = json.loads(zf.read("ro-crate-metadata.json"))
        job = json.loads(zf.read("tomato_Job.json"))
        assert zf.read("results.9.nc") == path.read_bytes()
    graph = {e["@id"]: e for e in meta["@graph"]}
    user = context.job.payload.user.identifier
    assert graph[user]["@type"] == "Person"
    # sample_is_parent false: the data belongs to the sample itself, no child
    assert graph["s-9"]["hasPart"] == {"@id": "./"}
    assert graph["./"]["conformsTo"]["@id"].startswith("https://github.com/MADICES/")
    assert job["status"] == "c" and job["id"] == 9


def test_no_crate_unless_a_configured_repository_is_named(tmp_path: Path) -> None:
    payload = parse_payload(
        {"sample": {"identifier": "s"}, "method": [{**TASK, "sampling_interval": 1}]}
    )
    assert payload.settings.output.repositories == ["default"]
    assert crate_path(tmp_path / "r.nc", payload, {}) is None
    assert crate_path(tmp_path / "r.nc", payload, {"default": {}}) == str(tmp_path / "r.zip")
    other = payload.model_copy(deep=True)
    other.settings.output.repositories = ["lab"]
    assert crate_path(tmp_path / "r.nc", other, {"default": {}}) is None


SETTINGS_22 = """# Default settings for tomato-2.2
datadir = '{root}/data22'
logdir = '{root}/log22'

[jobs]
storage = '{root}/data22/Jobs'
dbpath = '{root}/data22/Jobs/dbpath.sqlite'

[devices]
config = '{root}/cfg/2.2/devices.yml'

[repositories]
default.endpoint = 'https://example.endpoint/'

[drivers]
example_counter.idle_measurement_interval = 1
"""


def test_taking_over_a_22_setup(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    (cfg / "2.2").mkdir(parents=True)
    (cfg / "2.1").mkdir()
    (cfg / "notaversion").mkdir()
    (cfg / "2.2" / "settings.toml").write_text(SETTINGS_22.format(root=tmp_path))
    (cfg / "2.1" / "settings.toml").write_text(SETTINGS_22.format(root=tmp_path))
    (cfg / "2.2" / "devices.yml").write_text("devices: []\npipelines: []\n")
    found = find_tomato2x_settings(cfg)
    assert found == [cfg / "2.2" / "settings.toml", cfg / "2.1" / "settings.toml"]
    assert find_tomato2x_settings(tmp_path / "nothing") == []
    app = tmp_path / "app"
    imported = import_tomato2x_settings(cfg / "2.2", app, tmp_path / "data", tmp_path / "log")
    new = imported.settings
    assert new.jobs.storage == tmp_path / "data" / "Jobs"  # never 2.2's job folder
    assert new.devices.config == app / "devices.yml"
    assert new.drivers == {"example_counter": {"idle_measurement_interval": 1}}
    assert new.repositories == {"default": {"endpoint": "https://example.endpoint/"}}
    copy_devices(imported)
    assert (app / "devices.yml").read_text() == "devices: []\npipelines: []\n"
    with pytest.raises(ValueError, match="its job folder .* would be shared"):
        import_tomato2x_settings(found[0], app, tmp_path / "data22", tmp_path / "log")
    assert load_settings(found[0]).unused == ["jobs.dbpath"]
