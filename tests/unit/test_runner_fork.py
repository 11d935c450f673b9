"""The job runner's fork server (flows.runner.serve) with a stand-in job: the protocol it
speaks to the daemon, one process per job, and a bad line or a crash that ends one job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tomato_cli.models import Job, parse_payload
from tomato_cli.models.context import JobContext
from tomato_cli.models.job import read_pid

# jobs 1 and 4 end normally, 2 is killed, 3 calls sys.exit(5); each prints a stray text,
# which must not reach the control channel
SERVER = """
import os, signal
import flows.runner as runner

def run_job(context):
    print(f"stray print from job {context.jobid}", end="", flush=True)
    if context.jobid == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    if context.jobid == 3:
        raise SystemExit(5)
    runner.say(f"done {context.jobid}")

runner.run_job = run_job
runner.leave = os._exit  # no Prefect to drain
runner.take_control_channel()
runner.say("ready")
runner.serve()
"""
# a job that cannot be started on a busy machine still starts in well under a second
RUN_S = 60.0


def context_line(jobid: int, root: Path) -> bytes:
    payload = parse_payload(
        {
            "sample": {"identifier": "s1"},
            "method": [
                {
                    "component_role": "counter",
                    "technique_name": "count",
                    "max_duration": 1,
                    "sampling_interval": 1,
                }
            ],
        }
    )
    job = Job(id=jobid, payload=payload, status="r", jobpath=str(root / str(jobid)))
    context = JobContext(jobid=jobid, daemon_port=1, job=job, components={})
    return (context.model_dump_json() + "\n").encode()


def test_each_job_gets_a_process_and_one_crash_ends_one_job(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    first = context_line(1, tmp_path)
    proc.stdin.write(first[:40])  # a line may come in pieces
    proc.stdin.flush()
    proc.stdin.write(first[40:] + b"this is not a job context\n")
    rest = b"".join(context_line(jobid, tmp_path) for jobid in (2, 3, 4))
    # then EOF: no more jobs, the server exits once its children have
    out, err = proc.communicate(rest, timeout=RUN_S)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0] == "ready"
    started = {int(w[1]): int(w[2]) for w in map(str.split, lines) if w[0] == "started"}
    exits = {int(w[1]): int(w[2]) for w in map(str.split, lines) if w[0] == "exit"}
    done = {int(w[1]) for w in map(str.split, lines) if w[0] == "done"}
    assert set(started) == {1, 2, 3, 4}
    assert len(set(started.values())) == 4  # a process each
    assert exits == {1: 0, 2: -9, 3: 5, 4: 0}
    assert done == {1, 4}
    assert all(line.split()[0] in ("ready", "started", "exit", "done") for line in lines)
    assert "a job context that cannot be read" in err.decode()
    for jobid in (1, 2, 3, 4):  # a job's prints go to the runners' log
        assert f"stray print from job {jobid}".encode() in err
    for jobid, pid in started.items():
        assert read_pid(tmp_path / str(jobid)) == pid
