"""A job runner's exit is bounded when its Prefect server no longer answers.

Prefect's own at-exit drain of queued logs waits without bound, and a request to a server
that is gone is retried for minutes: a runner whose daemon had stopped its server stayed
for good. Here the server is a socket that takes connections and never answers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

# the child queues one log for Prefect, notes the time, then exits as a runner does
CHILD = """
import sys, time
from pathlib import Path
from prefect.logging.handlers import APILogWorker
import flows.runner as runner

runner.FLUSH_S = {flush}
APILogWorker.instance().send({{
    "name": "test", "level": 20, "message": "last words", "timestamp": "2026-01-01T00:00:00Z",
    "flow_run_id": None, "task_run_id": None,
}})
Path(sys.argv[1]).write_text(str(time.time()))
runner.leave(7)
"""
FLUSH_S = 2.0
# Without the bound, the exit waits at least one request timeout (30 s, as the daemon sets
# it): 20 s past the flush bound tells the two apart even on a busy machine.
SLACK_S = 20.0


def test_a_runner_exits_within_its_flush_bound_when_prefect_does_not_answer(
    tmp_path: Path,
) -> None:
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)  # the kernel completes connections; nobody reads or answers
        env = {
            **os.environ,
            "PREFECT_API_URL": f"http://127.0.0.1:{hole.getsockname()[1]}/api",
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "PREFECT_API_REQUEST_TIMEOUT": "30",
            "PREFECT_CLIENT_MAX_RETRIES": "8",
        }
        mark = tmp_path / "leaving"
        proc = subprocess.run(
            [sys.executable, "-c", CHILD.format(flush=FLUSH_S), str(mark)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        ended = time.time()
    assert proc.returncode == 7, proc.stderr
    assert ended - float(mark.read_text()) < FLUSH_S + SLACK_S
