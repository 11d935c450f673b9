"""Seeing the data: ketchup plot, the live terminal view, the daemon's live plot and the
pipelines overview in Prefect, against the real daemon and Prefect server."""

from __future__ import annotations

import io
import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.integration.harness import BIN, Tomato, counter_payload
from tests.integration.terminal import PtyProcess, run_in_pty
from tests.integration.waits import stored, wait_stored
from tests.unit.test_plots import svg_texts

CURSOR_UP = "\x1b[1A"  # a live view redraws itself in place


def cli(lab: Tomato, app: str, *args: str) -> list[str]:
    return [str(BIN / app), *args, *lab.opts]


def payload_file(path: Path, sample: str, duration: float, technique: str = "count") -> Path:
    payload = counter_payload(sample, duration=duration, interval=0.2)
    payload["method"][0]["technique_name"] = technique
    path.write_text(yaml.safe_dump(payload))
    return path


def prefect_api(lab: Tomato, path: str, body: dict[str, Any]) -> Any:
    api = lab.ok("tomato", "status")["prefect"]["api_url"]
    request = urllib.request.Request(
        f"{api}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def get(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_watch_follows_a_job_until_it_ends(lab: Tomato, tmp_path: Path) -> None:
    lab.prepare("pip-counter-1", "watch-ok")
    jobid = lab.submit(counter_payload("watch-ok", duration=3, interval=0.2), cwd=tmp_path)
    code, out = run_in_pty(cli(lab, "ketchup", "status", str(jobid), "--watch"), tmp_path, 90)
    assert code == 0, out[-2000:]
    assert lab.job(jobid)["status"] == "c"
    assert CURSOR_UP in out  # redrawn in place: a live view, not a log
    assert "━" in out and "100%" in out  # a progress bar per step
    final = out.rsplit(CURSOR_UP, 1)[-1]
    assert "status c" in final and "done" in final and "latest value" in final


def test_submit_wait_ends_with_the_job_and_its_exit_code_tells_a_cancel(
    lab: Tomato, tmp_path: Path
) -> None:
    lab.prepare("pip-counter-2", "wait-cancel")
    payload = payload_file(tmp_path / "p.yml", "wait-cancel", duration=60)
    view = PtyProcess(cli(lab, "ketchup", "submit", str(payload), "--wait"), tmp_path)
    text = view.read_until("running", timeout=60)
    jobid = int(re.search(r"jobid (\d+)", text).group(1))
    lab.ok("ketchup", "cancel", str(jobid))
    assert view.wait(timeout=60) == 4
    assert lab.job(jobid)["status"] == "cd"
    assert "status cd" in view.text.rsplit(CURSOR_UP, 1)[-1]


def test_wait_with_yaml_prints_one_mapping_at_the_end(lab: Tomato, tmp_path: Path) -> None:
    lab.prepare("pip-counter-3", "wait-yaml")
    payload = payload_file(tmp_path / "p.yml", "wait-yaml", duration=2)
    res = lab.run("ketchup", "submit", str(payload), "--wait", "-y", cwd=tmp_path)
    assert res.code == 0, res.err
    doc = res.doc  # exactly one YAML document
    assert doc["success"] is True
    assert doc["data"]["status"] == "c" and doc["msg"].endswith("ended with status c")
    # the same under a terminal: still one mapping, no live view
    code, out = run_in_pty(
        cli(lab, "ketchup", "status", str(doc["data"]["id"]), "--watch", "-y"), tmp_path, 60
    )
    assert code == 0 and CURSOR_UP not in out
    assert yaml.safe_load(out.replace("\r\n", "\n"))["data"]["status"] == "c"


def test_watch_refuses_without_one_job(lab: Tomato) -> None:
    msg = lab.fails("ketchup", "status", "--watch")
    assert msg == "error: --watch follows one job: give exactly one job id"
    assert "job 99999 does not exist" in lab.fails("ketchup", "status", "99999", "--watch")


def test_ketchup_plot_of_a_running_and_a_finished_job(lab: Tomato, tmp_path: Path) -> None:
    import matplotlib.image

    lab.prepare("pip-counter-4", "plot-me")
    # 20 s: still running when `ketchup plot` (matplotlib: seconds on a busy machine) looks
    jobid = lab.submit(counter_payload("plot-me", duration=20, interval=0.2), cwd=tmp_path)
    wait_stored(lab, jobid, 5)
    data = lab.ok("ketchup", "plot", str(jobid), "-o", "running.svg", cwd=tmp_path)
    assert data == {"path": str(tmp_path / "running.svg"), "format": "svg"}
    texts = svg_texts((tmp_path / "running.svg").read_bytes())
    assert "param [s]" in texts and "[1]" in texts and "time since start [s]" in texts
    assert any(t.startswith(f"job {jobid} · sample plot-me") and "status r" in t for t in texts)
    lab.wait_job(jobid)
    lab.ok("ketchup", "plot", str(jobid), cwd=tmp_path)  # default: plot.<id>.png here
    png = (tmp_path / f"plot.{jobid}.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert matplotlib.image.imread(io.BytesIO(png), format="png").shape[1] == 900
    lab.ok("ketchup", "plot", str(jobid), "-o", "final.svg", cwd=tmp_path)
    final = svg_texts((tmp_path / "final.svg").read_bytes())
    assert "param [s]" in final and any("status c" in t for t in final)
    missing = tmp_path / "no" / "such" / "dir" / "p.png"
    msg = lab.fails("ketchup", "plot", str(jobid), "-o", str(missing), cwd=tmp_path)
    assert msg == f"error: cannot write {missing}: No such file or directory"


def test_ketchup_plot_refuses_clearly(lab: Tomato, tmp_path: Path) -> None:
    msg = lab.fails("ketchup", "plot", "1", "-o", "plot.pdf", cwd=tmp_path)
    assert msg == "error: cannot write plot.pdf: the file name must end in .png or .svg"
    assert lab.fails("ketchup", "plot", "99999") == "error: job 99999 does not exist"
    queued = lab.submit(counter_payload("never-loaded-plot"), cwd=tmp_path)
    msg = lab.fails("ketchup", "plot", str(queued), cwd=tmp_path)
    assert msg.startswith(f"error: job {queued} has not started yet (status q")
    lab.ok("ketchup", "cancel", str(queued))
    assert not list(tmp_path.glob("*.p*g"))  # nothing written


def test_the_daemon_serves_the_live_plot_on_demand(lab: Tomato, tmp_path: Path) -> None:
    lab.prepare("pip-counter-1", "live-plot")
    payload = payload_file(tmp_path / "p.yml", "live-plot", duration=30, technique="random")
    jobid = lab.submit(payload, cwd=tmp_path)
    job = lab.wait_job(jobid, ("r",))
    url = f"http://127.0.0.1:{lab.port}/plot/{jobid}.svg?run={job['flow_run_id']}"
    wait_stored(lab, jobid, 1)
    status, first, headers = get(url)
    seen = stored(job["jobpath"])
    assert status == 200
    assert headers["Content-Type"] == "image/svg+xml"
    assert headers["Cache-Control"] == "no-store"
    time.sleep(2.5)  # a job's plot is drawn at most every 2 s
    wait_stored(lab, jobid, seen + 1)  # more data than the first look can have shown
    assert get(url)[1] != first  # a later look shows more data
    status, body, _ = get(url.replace(job["flow_run_id"], "another-daemons-run"))
    assert status == 404 and b"not a job of the tomato daemon" in body
    # the job's flow run has the artifact that shows it in the Prefect UI
    key = f"tomato-job-{jobid}-plot"
    found = prefect_api(lab, "/artifacts/filter", {"artifacts": {"key": {"any_": [key]}}})
    assert [a["flow_run_id"] for a in found] == [job["flow_run_id"]]
    assert f"]({url})" in found[0]["data"] and f"]({url})" in found[0]["description"]
    lab.ok("ketchup", "cancel", str(jobid))
    lab.wait_job(jobid)


def test_pipelines_overview_is_one_artifact_kept_current(lab: Tomato, tmp_path: Path) -> None:
    key = {"artifacts": {"key": {"any_": ["tomato-pipelines"]}}}
    lab.prepare("pip-counter-3", "overview-1")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        latest = prefect_api(lab, "/artifacts/latest/filter", key)
        if latest and "| pip-counter-3 | overview-1 | yes |" in latest[0]["data"]:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"overview not updated: {latest}")
    for name in lab.pipelines():
        assert f"| {name} |" in latest[0]["data"]
    lab.ok("tomato", "pipeline", "eject", "pip-counter-3")
    deadline = time.monotonic() + 30
    while (
        "| pip-counter-3 |  | no |"
        not in prefect_api(lab, "/artifacts/latest/filter", key)[0]["data"]
    ):
        assert time.monotonic() < deadline, "the eject did not show"
        time.sleep(0.5)
    # updated in place: one artifact, however often it changed
    assert len(prefect_api(lab, "/artifacts/filter", key)) == 1


def test_progress_and_latest_values_are_one_artifact_each(lab: Tomato, tmp_path: Path) -> None:
    """Updated in place: a week-long job must not leave thousands of artifact versions."""
    lab.prepare("pip-counter-2", "latest-1")
    jobid = lab.submit(counter_payload("latest-1", duration=8, interval=0.2), cwd=tmp_path)
    job = lab.wait_job(jobid)
    assert job["status"] == "c", job
    by_run = {"flow_runs": {"id": {"any_": [job["flow_run_id"]]}}}
    found = prefect_api(lab, "/artifacts/filter", by_run)
    kinds = sorted(a["type"] for a in found)
    assert kinds == ["markdown", "progress", "table"], kinds
    progress = next(a for a in found if a["type"] == "progress")
    assert progress["data"] == 100.0
    table = next(a for a in found if a["type"] == "table")
    assert table["key"] == f"tomato-job-{jobid}-latest"
    rows = json.loads(table["data"])
    assert {r["role"] for r in rows} == {"counter"} and rows[0]["samples"] >= 30, rows
    lab.ok("tomato", "pipeline", "eject", "pip-counter-2")


def test_start_and_stop_show_progress_in_a_terminal(fresh: Tomato) -> None:
    fresh.init()
    code, out = run_in_pty(cli(fresh, "tomato", "start"), fresh.root, 60)
    assert code == 0, out
    assert "starting the tomato daemon" in out and "tomato daemon started" in out
    code, out = run_in_pty(cli(fresh, "tomato", "stop"), fresh.root, 240)
    assert code == 0, out
    assert "stopping the tomato daemon" in out and "stopped" in out
