"""Job runners: fork servers for jobs' processes, started ahead of time.

Importing Prefect and the job flow takes a few seconds; a runner does it before it is
needed, so that it never sits between a ready pipeline and the first sample, and forks
each job a process of its own (see :mod:`flows.runner`). A runner forks ``max_jobs`` jobs
in all before it is retired. One is kept ready while ``warm()`` says so (by default, while
a pipeline is ready), else one starts when a job is queued.
At stop the launcher is closed: it starts no runner any more, and waits for its runners to
exit (killing those that do not) before the daemon takes their Prefect server away.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tomato_cli.models.context import JobContext
from tomato_cli.models.job import PID_FILE, read_pid

log = logging.getLogger(__name__)

RUNNER_LOG = "job-runners.log"
IDLE_RETIRE_S = 600.0  # while not warm(), a runner without jobs for this long exits
# At stop, a runner's last flow run reports its end and its logs reach Prefect: about a
# second; 30 s leaves room for a busy machine before the runner is killed.
RUNNER_EXIT_S = 30.0


@dataclass
class JobRunner:
    """One job runner process, as the launcher sees it."""

    proc: subprocess.Popen
    jobs: dict[int, Path] = field(default_factory=dict)  # handed to it, not exited: folders
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
        max_jobs: int = 100,
        on_job_end: Callable[[], None] = lambda: None,
        warm: Callable[[], bool] = lambda: True,
        on_job_pid: Callable[[int, int], None] = lambda jobid, pid: None,
    ):
        self.logdir = logdir
        self.on_job_end = on_job_end  # a job's process said "done", or exited
        self.on_job_pid = on_job_pid  # a job's process was forked: (jobid, pid)
        self._said_done: set[int] = set()  # jobs whose process is through with them
        self._pids: dict[int, int] = {}  # jobs' own processes, as their runner forked them
        self._exits: dict[int, int] = {}  # jobs' processes that exited, and their codes
        self._unforked: dict[int, str] = {}  # jobs whose runner died first: why
        self.env = env
        self.max_jobs = max_jobs
        self.lock = threading.Lock()
        self.warm = warm  # else runners start for queued jobs and retire when idle
        self.runners: list[JobRunner] = []
        self.error: str | None = None  # why the last runner could not start
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
            line = raw.decode(errors="replace").strip()
            try:
                self._heard(runner, line.split())
            except ValueError:
                log.warning("job runner %s said what is not understood: %r", runner.pid, line)
        code = runner.proc.wait()
        if not runner.ready.is_set() and code != 0:
            self.error = f"a job runner exited at start with code {code}: {self._last_words()}"
            log.error("%s", self.error)
        with self.lock:
            self._unforked_end(runner)
        self.on_job_end()  # EOF: the runner is gone, and every job's process it forked

    def _heard(self, runner: JobRunner, words: list[str]) -> None:
        match words:
            case ["ready"]:
                runner.ready.set()
            case ["started", jobid, pid]:
                with self.lock:
                    self._pids[int(jobid)] = int(pid)
                self.on_job_pid(int(jobid), int(pid))
            case ["done", jobid]:
                with self.lock:
                    self._said_done.add(int(jobid))
                self.on_job_end()
            case ["exit", jobid, code]:
                with self.lock:
                    runner.jobs.pop(int(jobid), None)
                    self._exits[int(jobid)] = int(code)
                    if not runner.jobs:
                        runner.idle_since = time.monotonic()
                self.on_job_end()
            case _:
                raise ValueError(words)

    def _unforked_end(self, runner: JobRunner) -> None:
        """The jobs a dead runner did not fork end with it; those it forked are followed
        by their pids (and leave ``jobs`` once they have ended: ``forget_ended``). Its pipe
        stays open while the processes it forked run on, so this is also looked at in
        every ``reap``."""
        code = runner.proc.poll()
        if code is None:
            return
        for jobid, jobdir in list(runner.jobs.items()):
            if jobid in self._pids or read_pid(jobdir) is not None:
                continue  # forked: its process, alive or not, tells
            del runner.jobs[jobid]
            self._exits[jobid] = code or 1
            why = f"its job runner (pid {runner.pid}) exited with code {code} before starting it"
            self._unforked[jobid] = f"{why}: {self.error}" if self.error else why

    def _last_words(self) -> str:
        """What a runner said when it refused to start (``tomato: ...`` in its log)."""
        try:
            lines = (self.logdir / RUNNER_LOG).read_text(errors="replace").splitlines()[-50:]
        except OSError:
            lines = []
        said = [line.removeprefix("tomato: ") for line in lines if line.startswith("tomato: ")]
        return said[-1] if said else f"see {self.logdir / RUNNER_LOG}"

    def _free(self, runner: JobRunner) -> bool:
        return runner.alive() and not runner.retired and runner.served < self.max_jobs

    def fill(self, wanted: bool = False) -> None:
        """Keep one runner imported and waiting: while ``warm()``, or when a job is
        ``wanted`` (queued)."""
        warm = wanted or self.warm()  # outside the lock: it may read the daemon's store
        with self.lock:
            self.runners = [r for r in self.runners if r.alive() or r.jobs]
            if self.closed:
                return
            if warm and not any(self._free(r) for r in self.runners):
                self._spawn()

    def launch(self, context: JobContext) -> int:
        """Hand a job to a runner (a new one if none is free); returns the runner's pid,
        which stands for the job's until the runner has forked it (``on_job_pid``)."""
        jobid = context.jobid
        line = (context.model_dump_json() + "\n").encode()
        try:  # a pid left from an earlier start of the job is not this start's
            (Path(context.job.jobpath) / PID_FILE).unlink(missing_ok=True)
        except OSError:
            pass
        while True:
            with self.lock:
                if self.closed:
                    raise RuntimeError("the daemon is stopping: no job starts")
                free = [r for r in self.runners if self._free(r)]
                runner = min(free, key=lambda r: not r.ready.is_set()) if free else self._spawn()
                runner.jobs[jobid] = Path(context.job.jobpath)
                runner.served += 1
                try:
                    assert runner.proc.stdin is not None
                    runner.proc.stdin.write(line)
                    runner.proc.stdin.flush()
                except (BrokenPipeError, OSError):
                    runner.jobs.pop(jobid, None)
                    runner.retired = True
                    continue
                if runner.served >= self.max_jobs:
                    self._retire(runner)
            threading.Thread(target=self.fill, daemon=True).start()
            return runner.pid

    def said_done(self, jobid: int) -> bool:
        """Whether the job's process said it is through with the job (its flow returned)."""
        with self.lock:
            return jobid in self._said_done

    def forget_ended(self, live: set[int]) -> None:
        """Forget what is known of jobs other than the ``live`` ones."""
        with self.lock:
            self._said_done &= live
            self._pids = {j: p for j, p in self._pids.items() if j in live}
            self._exits = {j: c for j, c in self._exits.items() if j in live}
            self._unforked = {j: w for j, w in self._unforked.items() if j in live}
            for runner in self.runners:
                if not runner.alive():  # no "exit" comes for what it forked
                    runner.jobs = {j: d for j, d in runner.jobs.items() if j in live}

    def exited(self, jobid: int) -> bool:
        """Whether the job's process has exited (or its runner died before forking it)."""
        with self.lock:
            return jobid in self._exits

    def unforked(self, jobid: int) -> str | None:
        """Why the job never had a process of its own, if its runner died first."""
        with self.lock:
            return self._unforked.get(jobid)

    def exit_code(self, jobid: int) -> int | None:
        """The code the job's process exited with, if not 0 (< 0: killed by that signal)."""
        with self.lock:
            code = self._exits.get(jobid)
        return code or None

    def reap(self) -> None:
        """End the jobs of runners that died before forking them; retire runners idle for
        ``IDLE_RETIRE_S`` unless ``warm()``."""
        warm = self.warm()
        with self.lock:
            idle_before = time.monotonic() - IDLE_RETIRE_S
            for runner in self.runners:
                self._unforked_end(runner)
                idle = not runner.jobs and not runner.retired and runner.idle_since < idle_before
                if idle and not warm:
                    self._retire(runner)

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
            ending = [r for r in self.runners if not r.jobs.keys() & keep]
        deadline = time.monotonic() + timeout
        for runner in ending:
            try:
                runner.proc.wait(max(0.0, deadline - time.monotonic()))
                if runner.proc.returncode == 0:
                    continue  # it exited after its jobs' processes, as it should
                # it died: the processes it forked may be left; wait for them as well
                while _group_alive(runner.pid) and time.monotonic() < deadline:
                    time.sleep(0.2)
                if not _group_alive(runner.pid):
                    continue
            except subprocess.TimeoutExpired:
                pass
            log.warning(
                "job runner %s or its jobs' processes still there %.0f s after the stop: killed",
                runner.pid,
                timeout,
            )
            try:
                os.killpg(runner.pid, signal.SIGKILL)  # its own session: it and its jobs'
            except ProcessLookupError:
                pass
            runner.proc.wait()


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group is left (a runner's group is its session: the
    runner and the processes it forked; Linux reuses no pid still in use as a group id)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
