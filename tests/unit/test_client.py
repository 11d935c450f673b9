"""The Python API (tomato_cli.client): its arguments, what it asks the daemon, its errors.

The daemon here is a stand-in answering on a real RPC server with scripted replies; the
real daemon, Prefect and the example flow are in tests/integration/test_closed_loop.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import xarray as xr
import yaml

from tomato_cli.client import (
    Daemon,
    DaemonUnreachable,
    JobHandle,
    SubmitError,
    TomatoError,
    WaitTimeout,
    connect,
    current_flow_run_id,
)
from tomato_cli.daemon.jobs import checked_flow_run_id
from tomato_cli.daemon.state import StateStore
from tomato_cli.models import Job, parse_payload
from tomato_cli.rpc import LOOPBACK, Reply, RpcError, RpcServer, free_port

BIN = Path(sys.executable).parent
GOOD = {
    "version": "2.2",
    "sample": {"identifier": "s1"},
    "method": [
        {
            "component_role": "counter",
            "technique_name": "count",
            "max_duration": 1,
            "sampling_interval": 0.1,
        }
    ],
}


class StandIn:
    """A daemon that records every command and answers from ``replies``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.replies: dict[str, Callable[[dict[str, Any]], Reply]] = {}

    def __call__(self, cmd: str, args: dict[str, Any]) -> Reply:
        self.calls.append((cmd, args))
        return self.replies.get(cmd, lambda _: Reply(False, f"unknown command {cmd!r}"))(args)


@pytest.fixture
def stand_in() -> Iterator[tuple[StandIn, Daemon]]:
    handler = StandIn()
    server = RpcServer(LOOPBACK, 0, handler)
    server.start_background()
    try:
        yield handler, Daemon(port=server.port, timeout=10)
    finally:
        server.shutdown()
        server.server_close()


def job_record(jobid: int, status: str, **fields: Any) -> dict[str, Any]:
    job = Job(id=jobid, payload=parse_payload(GOOD), status=status, **fields)  # type: ignore[arg-type]
    return job.model_dump(mode="json")


def statuses(*seq: str, **fields: Any) -> Callable[[dict[str, Any]], Reply]:
    """job_status answers: each status of ``seq`` in turn, then the last one for good."""
    left = list(seq)

    def reply(args: dict[str, Any]) -> Reply:
        status = left.pop(0) if len(left) > 1 else left[0]
        return Reply(True, "1 job(s)", [job_record(args["jobids"][0], status, **fields)])

    return reply


def test_submit_sends_the_payload_as_ketchup_does(stand_in) -> None:
    daemon_side, daemon = stand_in
    daemon_side.replies["job_submit"] = lambda args: Reply(True, "job 7 submitted", {"id": 7})
    handle = daemon.submit(GOOD, jobname="run-a", priority=3)
    assert handle == JobHandle(7, daemon)
    [(cmd, args)] = daemon_side.calls
    assert cmd == "job_submit"
    assert args["cwd"] == os.getcwd() and args["source"] == "payload"
    assert args["jobname"] == "run-a"
    assert args["payload"]["settings"]["priority"] == 3
    assert args["payload"]["method"][0]["technique_name"] == "count"
    assert "parent_flow_run_id" not in args  # not called in a flow run


def test_submit_takes_a_payload_model_and_a_file(stand_in, tmp_path: Path) -> None:
    daemon_side, daemon = stand_in
    daemon_side.replies["job_submit"] = lambda args: Reply(True, "ok", {"id": 1})
    model = parse_payload(GOOD)
    daemon.submit(model, priority=2)
    assert model.settings.priority == 0  # the caller's model is left as it was
    path = tmp_path / "p.yml"
    path.write_text(yaml.safe_dump(GOOD))
    daemon.submit(path)
    daemon.submit(str(path))
    sources = [args["source"] for _, args in daemon_side.calls]
    assert sources == ["payload", str(path), str(path)]
    assert daemon_side.calls[0][1]["payload"]["settings"]["priority"] == 2


def test_a_given_parent_flow_run_is_passed_on(stand_in) -> None:
    daemon_side, daemon = stand_in
    daemon_side.replies["job_submit"] = lambda args: Reply(True, "ok", {"id": 1})
    parent = str(uuid.uuid4())
    daemon.submit(GOOD, parent_flow_run_id=parent)
    assert daemon_side.calls[0][1]["parent_flow_run_id"] == parent


def test_outside_a_flow_run_there_is_no_parent() -> None:
    assert current_flow_run_id() is None
    import prefect  # noqa: F401  (imported, but no flow run)

    assert current_flow_run_id() is None


def test_a_bad_payload_file_gives_ketchups_message_and_asks_nothing(
    stand_in, tmp_path: Path
) -> None:
    daemon_side, daemon = stand_in
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({**GOOD, "method": [{"component_role": "counter"}]}))
    with pytest.raises(SubmitError) as err:
        daemon.submit(bad)
    ketchup = subprocess.run(
        [str(BIN / "ketchup"), "submit", str(bad), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ketchup.returncode == 1
    assert ketchup.stderr.strip() == f"error: {err.value}"
    assert "\n" not in str(err.value)
    assert daemon_side.calls == []


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"sample": {"identifier": "s1"}}, "payload: "),
        ({**GOOD, "method": "count"}, "payload: "),
        (42, "a payload is a mapping, a Payload or a file name, not a int"),
        ("no-such-file.yml", "no-such-file.yml"),
    ],
)
def test_bad_payloads_are_refused_before_the_daemon_is_asked(stand_in, payload, words) -> None:
    daemon_side, daemon = stand_in
    with pytest.raises(SubmitError, match=words):
        daemon.submit(payload)
    assert daemon_side.calls == []


@pytest.mark.parametrize("priority", [-1, 1.5, True])
def test_a_bad_priority_is_refused(stand_in, priority) -> None:
    daemon_side, daemon = stand_in
    with pytest.raises(SubmitError, match="priority must be 0 or more"):
        daemon.submit(GOOD, priority=priority)
    assert daemon_side.calls == []


def test_the_daemons_refusal_is_a_submit_error_with_its_message(stand_in) -> None:
    daemon_side, daemon = stand_in
    why = "payload: method[0]: no pipeline has a component with role 'counter'"
    daemon_side.replies["job_submit"] = lambda args: Reply(False, why)
    with pytest.raises(SubmitError) as err:
        daemon.submit(GOOD)
    assert str(err.value) == why


def test_no_daemon_is_said_as_the_cli_says_it() -> None:
    daemon = Daemon(port=free_port(), timeout=5)
    with pytest.raises(DaemonUnreachable) as err:
        daemon.submit(GOOD)
    assert str(err.value) == (
        f"no tomato daemon answers on port {daemon.port}; start it with `tomato start`"
    )
    assert Daemon(port=9, host="127.0.0.3").where == "127.0.0.3:9"


def test_connect_reads_the_host_from_the_settings_file(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text('[daemon]\nhost = "127.0.0.5"\n')
    assert connect(appdir=tmp_path) == Daemon(port=1234, host="127.0.0.5")
    assert connect(port=4321, appdir=tmp_path, host="127.0.0.6").host == "127.0.0.6"
    assert connect(port=4321, appdir=tmp_path / "none").host == "127.0.0.1"


def test_wait_returns_the_final_status(stand_in) -> None:
    daemon_side, daemon = stand_in
    daemon_side.replies["job_status"] = statuses("q", "qw", "r", "rd", "cd")
    assert JobHandle(4, daemon).wait(timeout=60, poll=0.01) == "cd"
    assert len(daemon_side.calls) == 5


def test_wait_gives_up_after_its_timeout(stand_in) -> None:
    daemon_side, daemon = stand_in
    daemon_side.replies["job_status"] = statuses("r")
    with pytest.raises(WaitTimeout, match=r"job 4 had not ended after 0.2 s \(r\)"):
        JobHandle(4, daemon).wait(timeout=0.2, poll=0.05)
    with pytest.raises(TimeoutError):
        JobHandle(4, daemon).wait(timeout=0)
    with pytest.raises(ValueError, match="poll"):
        JobHandle(4, daemon).wait(poll=0)


def test_an_unknown_job_and_a_refused_cancel_are_tomato_errors(stand_in) -> None:
    daemon_side, daemon = stand_in
    daemon_side.replies["job_status"] = lambda args: Reply(False, "no job with id 99")
    with pytest.raises(TomatoError, match="no job with id 99"):
        daemon.job(99)
    daemon_side.replies["job_cancel"] = lambda args: Reply(
        False, "cannot cancel finished job(s): 3 (c)"
    )
    with pytest.raises(TomatoError, match=r"cannot cancel finished job\(s\): 3 \(c\)"):
        JobHandle(3, daemon).cancel()
    assert daemon_side.calls[-1] == ("job_cancel", {"jobids": [3]})


def write_tree(path: Path) -> None:
    counter = xr.Dataset({"val": ("uts", np.array([0, 1, 2]))}, coords={"uts": [1.0, 2.0, 3.0]})
    xr.DataTree.from_dict(
        {"/": xr.Dataset(attrs={"tomato_Job": "{}"}), "counter": counter}
    ).to_netcdf(path)


def test_results_are_read_into_memory_and_the_file_closed(stand_in, tmp_path: Path) -> None:
    daemon_side, daemon = stand_in
    path = tmp_path / "results.5.nc"
    write_tree(path)
    daemon_side.replies["job_status"] = statuses("c", respath=str(path), jobpath=str(tmp_path))
    tree = JobHandle(5, daemon).results()
    assert int(tree["counter"]["val"].max()) == 2
    open_files = {Path(f.path) for f in psutil.Process().open_files()}
    assert path not in open_files
    path.unlink()
    assert list(tree["counter"]["val"].values) == [0, 1, 2]  # in memory


def test_results_in_the_job_folder_when_the_output_path_failed(stand_in, tmp_path: Path) -> None:
    daemon_side, daemon = stand_in
    jobdir = tmp_path / "jobs" / "5"
    jobdir.mkdir(parents=True)
    write_tree(jobdir / "results.5.nc")
    respath = tmp_path / "read-only" / "results.5.nc"
    daemon_side.replies["job_status"] = statuses("ce", respath=str(respath), jobpath=str(jobdir))
    assert "counter" in JobHandle(5, daemon).results().children


def test_results_of_a_live_or_fileless_job_are_refused(stand_in, tmp_path: Path) -> None:
    daemon_side, daemon = stand_in
    daemon_side.replies["job_status"] = statuses("r", respath=str(tmp_path / "r.nc"))
    with pytest.raises(TomatoError, match=r"job 5 has not ended \(status r\); wait\(\) for it"):
        JobHandle(5, daemon).results()
    daemon_side.replies["job_status"] = statuses(
        "cd", respath=str(tmp_path / "r.nc"), jobpath=str(tmp_path / "j")
    )
    with pytest.raises(TomatoError, match="job 5 ended cd without a results file"):
        JobHandle(5, daemon).results()


def test_the_daemon_takes_only_a_flow_run_id_as_parent() -> None:
    frid = uuid.uuid4()
    assert checked_flow_run_id(None) is None
    assert checked_flow_run_id(str(frid).upper()) == str(frid)
    with pytest.raises(RpcError, match="parent_flow_run_id must be a flow run id"):
        checked_flow_run_id("job-3")


def test_the_parent_is_kept_with_the_job_and_old_records_have_none(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "t.db")
    parent = str(uuid.uuid4())
    with store.transaction() as db:
        jobid = store.new_job_id(db)
        job = Job(id=jobid, payload=parse_payload(GOOD), status="q", parent_flow_run_id=parent)
        store.save_job(job, db)
    assert StateStore(tmp_path / "t.db").job(jobid).parent_flow_run_id == parent
    old = job.model_dump(mode="json")
    del old["parent_flow_run_id"]  # a record written before the field existed
    assert Job.model_validate(old).parent_flow_run_id is None
