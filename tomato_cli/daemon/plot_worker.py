"""Drawing plots in a child process, so that matplotlib never lives in the daemon.

Drawing imports matplotlib, pint and netCDF4 (about 50 MiB). The daemon hands each
drawing to a worker process started on the first look; the worker exits once nobody has
looked for ``IDLE_S``, or when the daemon goes away (its stdin closes), and the memory
goes with it. One JSON line per request (the job) and per answer (the SVG, base64).

    python -m tomato_cli.daemon.plot_worker --daemon-port <port>
"""

from __future__ import annotations

import argparse
import base64
import json
import select
import subprocess
import sys
import threading

from tomato_cli.models.job import Job
from tomato_cli.processes import kill

IDLE_S = 120.0
DRAW_TIMEOUT_S = 60.0


class PlotWorker:
    """The daemon's side: one worker process at a time, started when needed."""

    def __init__(self, daemon_port: int, idle_s: float = IDLE_S):
        self.daemon_port = daemon_port
        self.idle_s = idle_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()

    def _start(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", __name__, "--daemon-port", str(self.daemon_port)]
        cmd += ["--idle", str(self.idle_s)]
        return subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )

    def draw(self, job: Job) -> bytes:
        """The job's plot as SVG; raises RuntimeError with the worker's reason."""
        with self.lock:
            for _attempt in (1, 2):  # a worker that just exited for idleness is replaced
                if self.proc is None or self.proc.poll() is not None:
                    self.proc = self._start()
                assert self.proc.stdin is not None and self.proc.stdout is not None
                try:
                    self.proc.stdin.write(job.model_dump_json().encode() + b"\n")
                    self.proc.stdin.flush()
                except (BrokenPipeError, OSError):
                    self.proc.wait()
                    continue
                ready, _, _ = select.select([self.proc.stdout], [], [], DRAW_TIMEOUT_S)
                line = self.proc.stdout.readline() if ready else b""
                if line:
                    answer = json.loads(line)
                    if "error" in answer:
                        raise RuntimeError(answer["error"])
                    return base64.b64decode(answer["svg"])
                if not ready:  # hung: replace it
                    kill(self.proc.pid)
                    self.proc.wait()
                    raise RuntimeError(f"drawing took longer than {DRAW_TIMEOUT_S:.0f} s")
                self.proc.wait()
            raise RuntimeError(f"the plot worker exited (code {self.proc.returncode})")

    def stop(self) -> None:
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.stdin.close()  # type: ignore[union-attr]
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    kill(self.proc.pid)


def serve(idle_s: float = IDLE_S) -> None:
    """The worker: draw each job read from stdin until idle or stdin closes."""
    from tomato_cli.plots import job_plot

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while select.select([stdin], [], [], idle_s)[0]:
        line = stdin.readline()
        if not line:
            return
        try:
            svg = job_plot(Job.model_validate_json(line), "svg")
            answer = {"svg": base64.b64encode(svg).decode()}
        except Exception as exc:  # one bad job must not end the worker
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        stdout.write(json.dumps(answer).encode() + b"\n")
        stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemon-port", type=int, required=True)  # names it in `ps`
    parser.add_argument("--idle", type=float, default=IDLE_S)
    serve(parser.parse_args().idle)


if __name__ == "__main__":
    main()
