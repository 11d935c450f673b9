"""A job runner: a fork server that imports Prefect and the job flow once, then runs each
job it is handed in a process of its own, forked from it.

Started by the daemon ahead of time. Each line on stdin is one job context. The runner
forks a child for it; the child runs the job's existing flow run with Prefect's flow engine
(or, for a job the daemon started while Prefect was away, outside the engine) and exits.
A crash of one child (a segfault in a vendor library, the OOM killer, ``kill -9``) ends
that job alone. The children share the runner's imported pages copy-on-write, so a job
costs only the memory it writes to.

The runner itself stays single-threaded in Python (a fork copies only the thread that
forks, and a lock another thread held would stay held in the child): it reads stdin and
reaps its children, nothing else. On its stdout (the control channel to the daemon,
moved to a private descriptor so that nothing a job prints can reach it) it says
``ready`` once imported, ``started <jobid> <pid>`` after each fork and ``exit <jobid>
<code>`` when a child has exited (``code`` < 0: killed by that signal); the child says
``done <jobid>`` when its flow has returned. The job's pid is also written into its
folder (``PID_FILE``). EOF on stdin means "take no more jobs": the runner exits once its
children have. It also comes when the daemon is gone, killed or not, so that no runner
outlives it idle; children already running go on, and the daemon finds them by the pids
in their folders when it is back.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import select
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn

from flows import fault_injection
from tomato_cli.models.context import JobContext
from tomato_cli.models.job import write_pid

REAP_S = 0.5  # how often the runner looks for children that have exited
# At exit, the logs and events still queued for Prefect get this long. Prefect's own
# at-exit drain waits without bound, and with its server gone it retries each request for
# minutes (8 retries, 2**n s apart): a job's process would stay long after its daemon.
FLUSH_S = 10.0
# Modules a job's first flow run imports when they are not there yet (found by comparing
# sys.modules in a job's process at its end with the runner's): imported by the runner,
# their pages are shared by every job's process instead of built in each. Only memory
# depends on them: one that a newer library no longer has is skipped.
FIRST_RUN_IMPORTS = (
    "anyio._backends._asyncio",
    "anyio.streams.memory",
    "anyio.streams.stapled",
    "anyio.streams.tls",
    "encodings.idna",
    "prefect._internal.states",
    "prefect.concurrency._asyncio",
    "prefect.concurrency._events",
    "prefect.concurrency._sync",
    "prefect.concurrency.services",
    "prefect.task_engine",
    "prefect.utilities.visualization",
    "rich._emoji_codes",
)

_control = sys.stdout  # the channel to the daemon; see take_control_channel


def take_control_channel() -> None:
    """Keep the daemon's pipe on a descriptor of its own, and send fd 1 (what anything
    prints) to stderr, the runners' log: a stray print cannot garble the protocol."""
    global _control
    sys.stdout.flush()
    _control = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)


def say(line: str) -> None:
    """Tell the daemon; if it went away meanwhile, it will read the job folder instead."""
    try:
        _control.write(line + "\n")
        _control.flush()
    except (BrokenPipeError, OSError):
        pass


class JobLogFile(logging.FileHandler):
    """The job folder's ``job.log``: every record logged in the job's process, once.

    It hangs on the root logger and on ``prefect`` (whose records do not reach the root
    where Prefect's logging configuration stops their propagation); where they do
    propagate, the record reaches this handler twice, and the second time is dropped.
    """

    def __init__(self, path: Path):
        super().__init__(path, encoding="utf-8")
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "tomato_job_log", None) is self:
            return False
        record.tomato_job_log = self
        return True


def run_job(context: JobContext) -> None:
    """Run the job's flow run (or the job outside Prefect's engine); says ``done`` after."""
    from prefect.client.orchestration import get_client
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.context import PRELOADED
    from flows.job import run_outside_engine, tomato_job
    from tomato_cli.prefect_internals import run_existing_flow_run

    jobid = context.jobid
    jobdir = Path(context.job.jobpath)
    handler = JobLogFile(jobdir / "job.log")
    loggers = [logging.getLogger(), logging.getLogger("prefect")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        if not context.in_engine:
            run_outside_engine(context)
            return
        assert context.flow_run_id is not None
        PRELOADED[context.flow_run_id] = context  # the daemon's grant, for this run only
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(context.flow_run_id)
        workers = len(context.job.payload.method) + 1
        job_flow = tomato_job.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))
        run_existing_flow_run(job_flow, flow_run, {"jobid": jobid})
    except Exception:
        logging.getLogger(__name__).exception("job %s: its process failed", jobid)
        raise
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()
        say(f"done {jobid}")


def main() -> int:
    # No collection while importing: memory freed by one would leave holes in the
    # runner's pages, which each job's process would fill and so copy (Python's advice
    # for forking servers: disable early, freeze before forking, enable in the child).
    gc.disable()
    take_control_channel()

    import prefect.flow_engine  # noqa: F401 - import once, before the first job

    import flows.job  # noqa: F401

    for name in FIRST_RUN_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    from tomato_cli.prefect_internals import (
        PrefectInternalsChanged,
        share_client_tls_context,
        skip_suspension_observer,
    )
    from tomato_cli.units import get_ureg

    get_ureg()  # the unit registry takes ~0.5 s to build: not on a job's path
    try:
        skip_suspension_observer()  # pauses and cancels reach the job through the daemon
        share_client_tls_context()
    except PrefectInternalsChanged as exc:
        print(f"tomato: {exc}", file=sys.stderr, flush=True)
        return 3
    logging.getLogger().setLevel(logging.INFO)
    # one line per Prefect API call would drown each job.log (and cost CPU at scale)
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Python threads only: native ones (OpenBLAS's pool) reset themselves in a child
    if threading.active_count() != 1:
        names = [t.name for t in threading.enumerate()]
        print(f"tomato: the job runner has threads before forking: {names}", file=sys.stderr)
        return 3
    gc.freeze()  # the collector leaves the runner's objects (and their pages) alone
    say("ready")
    serve()
    return 0


def serve() -> None:
    """Fork a child for each job context read from stdin; reap children; after EOF, wait
    for the last child. A line that cannot be started is refused alone."""
    children: dict[int, int] = {}  # pid -> jobid
    pending = b""
    reading = True
    while reading or children:
        if reading:
            readable, _, _ = select.select([0], [], [], REAP_S)
            if readable:
                chunk = os.read(0, 1 << 16)
                reading = bool(chunk)
                *lines, pending = (pending + chunk).split(b"\n")
                for line in filter(bytes.strip, lines):
                    start(line, children)
        else:
            time.sleep(REAP_S)
        reap(children)


def start(line: bytes, children: dict[int, int]) -> None:
    try:
        context = JobContext.model_validate_json(line)
    except ValueError as exc:
        print(f"tomato: a job context that cannot be read: {exc}", file=sys.stderr, flush=True)
        return
    try:
        pid = os.fork()
    except OSError as exc:  # EAGAIN, ENOMEM: this job cannot start, the others go on
        print(f"tomato: job {context.jobid}: no process: {exc}", file=sys.stderr, flush=True)
        say(f"exit {context.jobid} 1")
        return
    if pid == 0:
        run_child(context)
    note_pid(Path(context.job.jobpath), pid)
    children[pid] = context.jobid
    say(f"started {context.jobid} {pid}")


def run_child(context: JobContext) -> NoReturn:
    """The job's process: runs this one job, then leaves with its code."""
    code = 1
    gc.enable()
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # the job list is the runner's, not the job's
        os.close(devnull)
        note_pid(Path(context.job.jobpath), os.getpid())
        os.environ["TOMATO_DAEMON_PORT"] = str(context.daemon_port)
        os.environ["TOMATO_DAEMON_HOST"] = context.daemon_host
        fault_injection.arm()
        run_job(context)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        leave(code)


def note_pid(jobdir: Path, pid: int) -> None:
    """The job's pid in its folder, by the runner and by the child, whichever is first."""
    try:
        jobdir.mkdir(parents=True, exist_ok=True)
        write_pid(jobdir, pid)
    except OSError as exc:
        print(f"tomato: {jobdir}: cannot note pid {pid}: {exc}", file=sys.stderr, flush=True)


def reap(children: dict[int, int]) -> None:
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        say(f"exit {children.pop(pid)} {os.waitstatus_to_exitcode(status)}")


def leave(code: int) -> NoReturn:
    """Exit with ``code`` once what is queued for Prefect is sent, or ``FLUSH_S`` passed."""
    from tomato_cli.prefect_internals import drain_prefect_services

    try:
        drain_prefect_services(FLUSH_S)
    finally:
        for stream in (_control, sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (BrokenPipeError, OSError):
                pass
        os._exit(code)  # past Prefect's at-exit drains: done above, within a bound


if __name__ == "__main__":
    leave(main())
