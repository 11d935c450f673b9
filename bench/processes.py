"""Process accounting of a benchmark world: its processes (found by its folder in their
command line or environment), their memory by kind and their CPU, and killing them all."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


def world_processes(root: Path) -> list[psutil.Process]:
    """Every process whose command line or environment mentions ``root``, plus descendants."""
    mine = str(root)
    found: dict[int, psutil.Process] = {}
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid == me:
                continue
            cmd = " ".join(proc.info["cmdline"] or [])
            hit = mine in cmd
            if not hit:
                try:
                    hit = mine in json.dumps(proc.environ())
                except psutil.Error:
                    hit = False
            if hit:
                found[proc.pid] = proc
                for child in proc.children(recursive=True):
                    found.setdefault(child.pid, child)
        except psutil.Error:
            continue
    found.pop(me, None)
    return list(found.values())


def kill_world(root: Path) -> int:
    """SIGKILL everything of this world; returns how many processes were killed."""
    n = 0
    for _ in range(3):
        procs = world_processes(root)
        if not procs:
            break
        for proc in procs:
            try:
                proc.send_signal(signal.SIGKILL)
                n += 1
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=5)
    return n


@dataclass
class Usage:
    nproc: int
    rss: float  # MiB
    pss: float | None
    uss: float | None
    by_kind: dict[str, float]  # kind -> USS (or RSS) MiB


def kind_of(cmdline: list[str]) -> str:
    cmd = " ".join(cmdline)
    for key, name in (
        ("prefect server", "prefect-server"),
        ("orchestration.prefect_server", "prefect-server"),
        ("tomato_cli.daemon", "daemon"),
        ("tomato-daemon", "daemon"),
        ("drivers.host", "driver"),
        ("tomato-driver", "driver"),
        ("flows.runner", "job"),
        ("tomato-job", "job"),
    ):
        if key in cmd:
            return name
    return "other"


def memory(root: Path) -> Usage:
    rss = pss = uss = 0.0
    have_pss = True
    by_kind: dict[str, float] = {}
    procs = world_processes(root)
    for proc in procs:
        try:
            try:
                m = proc.memory_full_info()
                p, u = getattr(m, "pss", None), m.uss
            except psutil.AccessDenied:
                m = proc.memory_info()
                p, u = None, None
            rss += m.rss
            if p is None:
                have_pss = False
            else:
                pss += p
            uss += u or 0
            k = kind_of(proc.cmdline())
            by_kind[k] = by_kind.get(k, 0.0) + (u or m.rss) / 2**20
        except psutil.Error:
            continue
    mib = 2**20
    return Usage(len(procs), rss / mib, pss / mib if have_pss else None, uss / mib, by_kind)


def cpu_seconds(root: Path) -> float:
    """CPU time used so far by the world's processes, with that of their children that have
    exited and been waited for (a forked helper, for one)."""
    total = 0.0
    for proc in world_processes(root):
        try:
            c = proc.cpu_times()
            total += c.user + c.system + c.children_user + c.children_system
        except psutil.Error:
            pass
    return total


def cpu_percent(root: Path, seconds: float) -> float:
    """CPU of all processes of the world over ``seconds`` (100 = one core busy)."""
    procs = world_processes(root)

    def total() -> float:
        t = 0.0
        for p in procs:
            try:
                c = p.cpu_times()
                t += c.user + c.system
            except psutil.Error:
                pass
        return t

    t0, w0 = total(), time.monotonic()
    time.sleep(seconds)
    return 100.0 * (total() - t0) / (time.monotonic() - w0)
