"""Many submissions at once from several processes: unique ids, each job runs once."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.integration.harness import Tomato, counter_payload

pytestmark = pytest.mark.slow

SUBMITTERS = 4
PER_SUBMITTER = 50

SUBMITTER = """
import subprocess, sys
ketchup, payload, n, opts = sys.argv[1], sys.argv[4], int(sys.argv[5]), sys.argv[6:]
for _ in range(n):
    out = subprocess.run([ketchup, "submit", payload, "-y", *opts], capture_output=True, text=True)
    if out.returncode == 0:
        print(out.stdout.split("id: ")[1].split()[0], flush=True)
    else:
        print("FAIL", (out.stdout + out.stderr).replace(chr(10), " "), flush=True)
"""


# 200 submissions and 200 jobs: 5 min on an idle 2-core machine today (each submit waits
# for the CPU the running jobs take); the suite's 300 s hang guard is too short for it
@pytest.mark.timeout(1200)
def test_200_parallel_submissions(lab: Tomato, tmp_path: Path) -> None:
    sample = "flood"
    pipelines = [f"pip-counter-{i}" for i in range(1, 5)]
    for pip in pipelines:
        lab.prepare(pip, sample)
    server_log = lab.root / "log" / "prefect-server.log"
    log_start = server_log.stat().st_size
    payload = tmp_path / "flood.yml"
    payload.write_text(yaml.safe_dump(counter_payload(sample, 0.2, 0.05, unlock_when_done=True)))
    ketchup = str(Path(sys.executable).parent / "ketchup")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                SUBMITTER,
                ketchup,
                "-",
                "-",
                str(payload),
                str(PER_SUBMITTER),
                *lab.opts,
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for _ in range(SUBMITTERS)
    ]
    lines = [line.strip() for p in procs for line in p.communicate(timeout=600)[0].splitlines()]
    failed = [line for line in lines if line.startswith("FAIL")]
    assert not failed, failed[:3]
    ids = [int(line) for line in lines]
    assert len(ids) == SUBMITTERS * PER_SUBMITTER
    assert len(set(ids)) == len(ids), "duplicate job ids"
    jobs = [lab.wait_job(jobid, timeout=900) for jobid in ids]
    assert [j["id"] for j in jobs if j["status"] != "c"] == []
    spans: dict[str, list[tuple[datetime, datetime]]] = {}
    for job in jobs:
        assert job["pipeline"] in pipelines
        spans.setdefault(job["pipeline"], []).append(
            (
                datetime.fromisoformat(job["launched_at"]),
                datetime.fromisoformat(job["completed_at"]),
            )
        )
    for pip, runs in spans.items():
        runs.sort()
        for (_, end), (start, _) in zip(runs, runs[1:], strict=False):
            assert start >= end, f"two jobs overlapped on {pip}"
    # one flow run per job, each Completed, and the server never hit a locked database
    import httpx

    with open(server_log, "rb") as log:
        log.seek(log_start)
        assert b"database is locked" not in log.read()

    api = lab.ok("tomato", "status")["prefect"]["api_url"]
    flow_ids = [j["flow_run_id"] for j in jobs]
    assert len(set(flow_ids)) == len(flow_ids)
    runs = httpx.post(
        f"{api}/flow_runs/filter", json={"flow_runs": {"id": {"any_": flow_ids}}, "limit": 200}
    ).json()
    runs += httpx.post(
        f"{api}/flow_runs/filter",
        json={"flow_runs": {"id": {"any_": flow_ids}}, "limit": 200, "offset": 200},
    ).json()
    assert len(runs) == len(flow_ids)
    assert {r["state"]["type"] for r in runs} == {"COMPLETED"}
    for pip in pipelines:
        lab.ok("tomato", "pipeline", "eject", pip)
