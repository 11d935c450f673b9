"""Starts job runners: processes that run exactly one job's flow run each.

Runners are started ahead of time ("warm"), so that importing Prefect and the job flow never
sits between a ready pipeline and the first sample. A warm runner waits for one line on its
stdin: the job context. If the daemon goes away before that, the runner sees EOF and exits.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class JobLauncher:
    def __init__(self, logdir: Path, env: dict[str, str], warm: int = 1):
        self.logdir = logdir
        self.env = env
        self.warm = warm
        self.lock = threading.Lock()
        self.idle: list[subprocess.Popen] = []
        self.started: dict[int, subprocess.Popen] = {}  # jobid -> runner we started

    def set_env(self, env: dict[str, str]) -> None:
        """Runners started from now on use ``env`` (idle ones are replaced)."""
        with self.lock:
            self.env = env
            stale, self.idle = self.idle, []
        for proc in stale:
            self._retire(proc)
        self.fill()

    def _spawn(self) -> subprocess.Popen:
        self.logdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(self.env)
        out = open(self.logdir / "job-runners.log", "ab")
        return subprocess.Popen(
            [sys.executable, "-m", "flows.runner"],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def fill(self) -> None:
        """Top up the pool of warm runners."""
        with self.lock:
            self.idle = [p for p in self.idle if p.poll() is None]
            while len(self.idle) < self.warm:
                self.idle.append(self._spawn())

    def launch(self, context: dict[str, Any]) -> int:
        """Hand a job to a warm runner (or a new one); returns the runner's pid."""
        line = (json.dumps(context) + "\n").encode()
        while True:
            with self.lock:
                proc = self.idle.pop(0) if self.idle else self._spawn()
            if proc.poll() is not None:
                continue
            try:
                assert proc.stdin is not None
                proc.stdin.write(line)
                proc.stdin.flush()
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                continue
            self.started[int(context["jobid"])] = proc
            threading.Thread(target=self.fill, daemon=True).start()
            return proc.pid

    def reap(self) -> None:
        """Collect exit codes of finished runners, so no zombies are left."""
        for jobid, proc in list(self.started.items()):
            if proc.poll() is not None:
                self.started.pop(jobid, None)

    def exit_code(self, jobid: int) -> int | None:
        proc = self.started.get(jobid)
        return proc.poll() if proc is not None else None

    def _retire(self, proc: subprocess.Popen) -> None:
        try:
            if proc.stdin:
                proc.stdin.close()
            proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()

    def stop_idle(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for proc in idle:
            self._retire(proc)
