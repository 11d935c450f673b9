"""Running a CLI in a pseudo-terminal, as a person at a terminal would see it."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from pathlib import Path


class PtyProcess:
    """A command whose stdin, stdout and stderr are one pseudo-terminal of a given size."""

    def __init__(self, argv: list[str], cwd: Path, columns: int = 140, rows: int = 50):
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns)}
        env.pop("NO_COLOR", None)
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, close_fds=True
        )
        os.close(slave)
        self.master = master
        self.output = b""

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")

    def _read(self, wait: float) -> bool:
        """Read what is there within ``wait`` s; False once the terminal is closed."""
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the command and everything it started have closed it
            return False
        self.output += chunk
        return bool(chunk)

    def read_until(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.text:
            if time.monotonic() > deadline or not self._read(0.2):
                raise AssertionError(f"{text!r} not shown within {timeout} s:\n{self.text[-3000:]}")
        return self.text

    def wait(self, timeout: float) -> int:
        """Read until the command ends; its exit code."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"still running after {timeout} s:\n{self.text[-3000:]}")
            self._read(0.2)
        while select.select([self.master], [], [], 0.1)[0] and self._read(0):
            pass  # what it wrote before it ended
        os.close(self.master)
        return self.proc.returncode


def run_in_pty(argv: list[str], cwd: Path, timeout: float = 120) -> tuple[int, str]:
    proc = PtyProcess(argv, cwd)
    code = proc.wait(timeout)
    return code, proc.text
