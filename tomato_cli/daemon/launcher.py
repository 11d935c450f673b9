"""Job runners: processes that run jobs' flow runs, started ahead of time.

Importing Prefect and the job flow takes about a second; a runner does it before it is
needed, so that it never sits between a ready pipeline and the first sample. A runner
hosts up to ``capacity`` jobs at once and serves ``max_jobs`` in all before it is retired.
It talks back on its stdout: ``ready`` once imported, ``done <jobid>`` after each job.
At stop the launcher is closed: it starts no runner any more, and waits for its runners to
exit (killing those that do not) before the daemon takes their Prefect server away.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tomato_cli.models.context import JobContext

log = logging.getLogger(__name__)

RUNNER_LOG = "job-runners.log"
IDLE_RETIRE_S = 600.0  # without keep_warm, a runner without jobs for this long exits
# At stop, a runner's last flow run reports its end and its logs reach Prefect: about a
# second; 30 s leaves room for a busy machine before the runner is killed.
RUNNER_EXIT_S = 30.0


@dataclass
class JobRunner:
    """One job runner process, as the launcher sees it."""

    proc: subprocess.Popen
    jobs: set[int] = field(default_factory=set)
    served: int = 0
    ready: threading.Event = field(default_factory=threading.Event)
    retired: bool = False
    idle_since: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None


class JobLauncher:
    def __init__(
        self,
        logdir: Path,
        env: dict[str, str],
        capacity: int = 8,
        max_jobs: int = 100,
        on_job_end: Callable[[], None] = lambda: None,
        keep_warm: bool = True,
    ):
        self.logdir = logdir
        self.on_job_end = on_job_end  # a runner said "done", or exited
        self._said_done: set[int] = set()  # jobs whose runner is through with them
        self.env = env
        self.capacity = capacity
        self.max_jobs = max_jobs
        self.lock = threading.Lock()
        self.keep_warm = keep_warm  # else runners start for queued jobs and retire when idle
        self.runners: list[JobRunner] = []
        self.error: str | None = None  # why the last runner could not start
        self.by_job: dict[int, JobRunner] = {}
        self.closed = False  # the daemon is stopping: no runner starts, no job is handed out
        self.command = [sys.executable, "-P", "-m", "flows.runner"]  # -P: not the cwd's flows/

    def _spawn(self) -> JobRunner:
        self.logdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(self.env)
        err = open(self.logdir / RUNNER_LOG, "ab")
        proc = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            start_new_session=True,
        )
        err.close()
        runner = JobRunner(proc)
        threading.Thread(target=self._listen, args=(runner,), daemon=True).start()
        self.runners.append(runner)
        return runner

    def _listen(self, runner: JobRunner) -> None:
        assert runner.proc.stdout is not None
        for raw in runner.proc.stdout:
            words = raw.decode(errors="replace").split()
            if words == ["ready"]:
                runner.ready.set()
            elif len(words) == 2 and words[0] == "done":
                with self.lock:
                    runner.jobs.discard(int(words[1]))
                    self._said_done.add(int(words[1]))
                    if not runner.jobs:
                        runner.idle_since = time.monotonic()
                    if runner.served >= self.max_jobs and not runner.jobs:
                        self._retire(runner)
                self.on_job_end()
        if not runner.ready.is_set() and (code := runner.proc.wait()) != 0:
            self.error = f"a job runner exited at start with code {code}: {self._last_words()}"
            log.error("%s", self.error)
        self.on_job_end()  # EOF: the runner is gone, and with it any job it still had

    def _last_words(self) -> str:
        """What a runner said when it refused to start (``tomato: ...`` in its log)."""
        try:
            lines = (self.logdir / RUNNER_LOG).read_text(errors="replace").splitlines()[-50:]
        except OSError:
            lines = []
        said = [line.removeprefix("tomato: ") for line in lines if line.startswith("tomato: ")]
        return said[-1] if said else f"see {self.logdir / RUNNER_LOG}"

    def _free(self, runner: JobRunner) -> bool:
        return (
            runner.alive()
            and not runner.retired
            and len(runner.jobs) < self.capacity
            and runner.served < self.max_jobs
        )

    def fill(self, wanted: bool = False) -> None:
        """Keep one runner with room for a job, imported and waiting: always when kept
        warm, else when a job is ``wanted`` (queued)."""
        with self.lock:
            self.runners = [r for r in self.runners if r.alive() or r.jobs]
            if self.closed:
                return
            if (self.keep_warm or wanted) and not any(self._free(r) for r in self.runners):
                self._spawn()

    def launch(self, context: JobContext) -> int:
        """Hand a job to the least busy runner with room (or a new one); returns its pid."""
        jobid = context.jobid
        line = (context.model_dump_json() + "\n").encode()
        while True:
            with self.lock:
                if self.closed:
                    raise RuntimeError("the daemon is stopping: no job starts")
                free = [r for r in self.runners if self._free(r)]
                runner = (
                    min(free, key=lambda r: (len(r.jobs), not r.ready.is_set()))
                    if free
                    else self._spawn()
                )
                runner.jobs.add(jobid)
                runner.served += 1
                try:
                    assert runner.proc.stdin is not None
                    runner.proc.stdin.write(line)
                    runner.proc.stdin.flush()
                except (BrokenPipeError, OSError):
                    runner.jobs.discard(jobid)
                    runner.retired = True
                    continue
                if runner.served >= self.max_jobs:
                    self._retire(runner)
                self.by_job[jobid] = runner
            threading.Thread(target=self.fill, daemon=True).start()
            return runner.pid

    def said_done(self, jobid: int) -> bool:
        """Whether the job's runner said it is through with the job (its flow returned)."""
        with self.lock:
            return jobid in self._said_done

    def forget_done(self, keep: set[int]) -> None:
        """Forget what runners said of jobs other than ``keep`` (the live ones)."""
        with self.lock:
            self._said_done &= keep

    def exit_code(self, jobid: int) -> int | None:
        runner = self.by_job.get(jobid)
        return runner.proc.poll() if runner is not None else None

    def reap(self) -> None:
        """Forget runners that have exited (their exit code is collected by poll); retire
        runners idle for ``IDLE_RETIRE_S`` unless kept warm."""
        with self.lock:
            idle_before = time.monotonic() - IDLE_RETIRE_S
            for runner in self.runners:
                runner.proc.poll()
                idle = not runner.jobs and not runner.retired and runner.idle_since < idle_before
                if idle and not self.keep_warm:
                    self._retire(runner)
            live = {id(r) for r in self.runners if r.alive()}
            self.by_job = {j: r for j, r in self.by_job.items() if id(r) in live or r.jobs}

    def _retire(self, runner: JobRunner) -> None:
        """No more jobs for this runner: it exits once its jobs have ended."""
        runner.retired = True
        try:
            if runner.proc.stdin and not runner.proc.stdin.closed:
                runner.proc.stdin.close()
        except OSError:
            pass

    def close(self, keep: set[int], timeout: float = RUNNER_EXIT_S) -> None:
        """At stop: start no runner and hand out no job any more; every runner exits once
        its jobs have ended. Wait up to ``timeout`` for the runners that host none of
        ``keep`` (the jobs left running), and kill those still there then.

        A runner that outlived its daemon's Prefect server would retry sending its last
        logs for minutes, and a stop used to leave a runner whose job had just ended (it
        had not said ``done`` yet) with nothing that would end it.
        """
        with self.lock:
            self.closed = True
            for runner in self.runners:
                self._retire(runner)
            ending = [r for r in self.runners if not r.jobs & keep]
        deadline = time.monotonic() + timeout
        for runner in ending:
            try:
                runner.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "job runner %s still there %.0f s after the stop: killed", runner.pid, timeout
                )
                runner.proc.kill()
                runner.proc.wait()
