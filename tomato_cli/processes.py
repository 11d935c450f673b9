"""Checking and ending the daemon's child processes (drivers, Prefect server, runners)."""

from __future__ import annotations

import psutil


def alive(pid: int | None) -> bool:
    """The process exists and is not a zombie."""
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill(pid: int | None, graceful: bool = False) -> None:
    """End a process and its children (SIGTERM first if graceful), waiting for them."""
    if not pid:
        return
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        for p in procs:
            (p.terminate if graceful else p.kill)()
        _, left = psutil.wait_procs(procs, timeout=10)
        for p in left:
            p.kill()
    except psutil.Error:
        pass
