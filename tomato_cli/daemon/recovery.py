"""Recovery: live jobs whose flow-run process is gone are ended, and their data kept.

A job's process leaves its final word in the job folder (``final.json``) before it
reports its end. The monitor looks at live jobs whenever a job's process says it is done
or exits, and every ``MONITOR_INTERVAL_S`` (a daemon restarted after a crash has no pipe to
runners it did not start): a job with a final word ends as it says; a job whose process
died without one ends ``ce``, its tasks are stopped on the hardware, what the drivers
still buffer is stored, and its results are written from the job's store. So does a job
whose process said it was done but left no final word (it failed before the job's flow
could end it): it would otherwise stay live for ever.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from tomato_cli.daemon.driver_supervisor import DriverSupervisor
from tomato_cli.daemon.launcher import RUNNER_LOG, JobLauncher
from tomato_cli.daemon.lifecycle import Cause, JobLifecycle
from tomato_cli.daemon.state import StateStore
from tomato_cli.models import FINAL_STATUSES, LIVE_STATUSES, Job
from tomato_cli.models.context import JobContext
from tomato_cli.models.job import FINAL_FILE, read_final, read_pid
from tomato_cli.processes import alive
from tomato_cli.rpc import Unreachable

log = logging.getLogger(__name__)

MONITOR_INTERVAL_S = 2.0


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


def note_in_job_log(jobpath: Path, why: str) -> None:
    """The job's own log says why it ended: its process, which wrote the log, is gone."""
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
    try:
        with open(jobpath / "job.log", "a", encoding="utf-8") as f:
            f.write(f"{stamp} ERROR {__name__}: {why}; the job ends ce, its data kept\n")
    except OSError as exc:
        log.warning("could not write to %s: %s", jobpath / "job.log", exc)


class Recovery:
    def __init__(
        self,
        store: StateStore,
        lifecycle: JobLifecycle,
        lock: threading.RLock,
        launcher: JobLauncher,
        supervisor: DriverSupervisor,
        context_of: Callable[[Job], JobContext],
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.lock = lock  # the daemon's decision lock
        self.launcher = launcher
        self.supervisor = supervisor
        self.context_of = context_of
        self.job_ended = threading.Event()  # a runner said "done", or exited

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.job_ended.wait(MONITOR_INTERVAL_S)
            self.job_ended.clear()
            if stop.is_set():
                return
            try:
                self.check_live_jobs()
            except Exception:
                log.exception("job monitor failed; retrying")

    def check_live_jobs(self) -> None:
        """Live jobs whose process is gone are ended: by their own last word, or as ce."""
        self.launcher.reap()
        refs = self.store.job_refs(LIVE_STATUSES)
        self.launcher.forget_ended({ref.id for ref in refs})
        for ref in refs:
            # its process may be gone before the runner reaped it: its final word counts too
            ended = ref.jobpath is not None and (Path(ref.jobpath) / FINAL_FILE).exists()
            pid = self._pid(ref.jobpath, ref.pid)
            gone = (
                bool(pid and not alive(pid))
                or self.launcher.said_done(ref.id)
                or self.launcher.exited(ref.id)
            )
            if gone or ended:
                job = self.store.job(ref.id)
                if job is not None:
                    self._recover(job)

    @staticmethod
    def _pid(jobpath: str | None, stored: int | None) -> int | None:
        """The job's own process, from its folder (a daemon restarted before the runner
        told it the pid finds it there); else the stored one (its runner's, until then)."""
        return (read_pid(Path(jobpath)) if jobpath else None) or stored

    def _recover(self, job: Job) -> None:
        final = read_final(Path(job.jobpath))
        if final is None:
            # stop its tasks on the hardware before its pipeline is released
            self._salvage(job, self.context_of(job))
        code = self.launcher.exit_code(job.id)
        with self.lock:
            fresh = self.store.job(job.id)
            if fresh is None or fresh.status in FINAL_STATUSES:
                return
            if final is not None:
                # its own last word: its results are written already. This is how every
                # job ends, and how one that ended while the daemon was away is noticed.
                error = final.get("error")
                self.lifecycle.move(fresh, final["status"], Cause.RECOVERY, error=error)
                return
            pid = self._pid(job.jobpath, job.pid)
            if unforked := self.launcher.unforked(job.id):
                why = unforked
            elif self.launcher.said_done(job.id) and code is None:
                why = (
                    f"the job's process (pid {pid}) ended the job without its final word;"
                    f" see {RUNNER_LOG} in the logdir"
                )
            else:
                why = f"the job's process (pid {pid}) died"
                if code is not None and code < 0:
                    why += f", killed by signal {-code} ({signal_name(-code)})"
                elif code is not None:
                    why += f" with exit code {code}"
            log.error("job %s: %s; writing its results from the stored data", job.id, why)
            note_in_job_log(Path(job.jobpath), why)
            self.lifecycle.move(fresh, "ce", Cause.RECOVERY, error=why)
        threading.Thread(target=self._write_results, args=(fresh,), daemon=True).start()

    def _salvage(self, job: Job, context: JobContext) -> None:
        """Stop the dead job's tasks on the hardware; store what the drivers still buffer."""
        from functools import partial

        from drivers.samples import collect_task_data
        from tomato_cli.store import JobStore

        with JobStore(Path(job.jobpath)) as store:
            for role, entry in context.components.items():
                comp = entry.component
                try:
                    self.supervisor.call(comp.driver, "task_stop", key=comp.key)
                    fetch = partial(self.supervisor.call, comp.driver, "task_data", key=comp.key)
                    collect_task_data(lambda: fetch().data or {}, store, role)  # noqa: B023
                    self.supervisor.call(comp.driver, "reset", key=comp.key)
                except (Unreachable, OSError, ValueError) as exc:
                    log.warning("job %s: could not salvage %s: %s", job.id, comp.name, exc)

    def _write_results(self, job: Job) -> None:
        from tomato_cli.store.results import write_final_results

        try:
            path, problem = write_final_results(self.context_of(job))
            log.info("job %s: recovered results written to %s", job.id, path)
            if problem:
                with self.lock:
                    fresh = self.store.job(job.id)
                    if fresh is not None:
                        fresh.error = f"{fresh.error}; {problem}"
                        self.store.save_job(fresh)
        except Exception:
            log.exception("job %s: could not write results after its process died", job.id)
