"""Runs the real CLIs against a real daemon, driver hosts and Prefect server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from tomato_cli.rpc import free_port

BIN = Path(sys.executable).parent
DATA = Path(__file__).resolve().parent.parent / "data"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def doc(self) -> dict[str, Any]:
        return yaml.safe_load(self.out)


@dataclass
class Tomato:
    """One daemon's world: its folders, port and CLIs."""

    root: Path
    port: int = field(default_factory=free_port)

    @property
    def opts(self) -> list[str]:
        return [
            "--port",
            str(self.port),
            "--appdir",
            str(self.root / "app"),
            "--datadir",
            str(self.root / "data"),
            "--logdir",
            str(self.root / "log"),
        ]

    @property
    def devices_file(self) -> Path:
        return self.root / "app" / "devices.yml"

    def run(self, app: str, *args: str, cwd: Path | None = None, timeout: float = 120) -> Result:
        proc = subprocess.run(
            [str(BIN / app), *map(str, args), *self.opts],
            capture_output=True,
            text=True,
            cwd=cwd or self.root,
            timeout=timeout,
            env={**os.environ, "COLUMNS": "200"},
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, app: str, *args: str, cwd: Path | None = None) -> Any:
        """Run with --yaml; assert success; return ``data``."""
        res = self.run(app, *args, "-y", cwd=cwd)
        assert res.code == 0, f"{app} {args} failed: {res.out} {res.err}"
        doc = res.doc
        assert doc["success"] is True, doc
        return doc["data"]

    def fails(self, app: str, *args: str, cwd: Path | None = None) -> str:
        """Run; assert a clean failure (non-zero, one-line reason, no traceback)."""
        res = self.run(app, *args, cwd=cwd)
        assert res.code != 0, f"{app} {args} unexpectedly succeeded: {res.out}"
        assert "Traceback" not in res.err + res.out, res.err
        lines = [line for line in res.err.strip().splitlines() if line.strip()]
        assert len(lines) == 1, f"expected a one-line reason, got: {res.err!r}"
        res_y = self.run(app, *args, "-y", cwd=cwd)
        assert res_y.code != 0
        doc = res_y.doc
        assert doc["success"] is False and doc["msg"]
        return lines[0]

    def init(self, devices: dict[str, Any] | Path | None = None, **settings: str) -> None:
        self.ok("tomato", "init")
        if isinstance(devices, Path):
            self.devices_file.write_text(devices.read_text())
        elif devices is not None:
            self.devices_file.write_text(yaml.safe_dump(devices))
        if settings:
            path = self.root / "app" / "settings.toml"
            path.write_text(path.read_text() + "".join(f"{k}\n" for k in settings.values()))

    def start(self) -> dict[str, Any]:
        return self.ok("tomato", "start")

    @property
    def api_url(self) -> str:
        """The Prefect API this daemon mirrors into."""
        return self.ok("tomato", "status")["prefect"]["api_url"]

    def wait_prefect(self, timeout: float = 150) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.ok("tomato", "status")
            if info["prefect"]["healthy"] and "work_pool" in info["prefect"]:
                return info
            time.sleep(0.5)
        raise AssertionError(f"Prefect did not become healthy: {info['prefect']}")

    def pipelines(self) -> dict[str, dict[str, Any]]:
        return self.ok("tomato", "status", "pipelines")  # keyed by name, as in tomato 2.2

    def prepare(self, pipeline: str, sample: str) -> None:
        pip = self.pipelines()[pipeline]
        if pip["sampleid"] is not None:
            self.ok("tomato", "pipeline", "eject", pipeline)
        self.ok("tomato", "pipeline", "load", pipeline, sample)
        self.ok("tomato", "pipeline", "ready", pipeline)

    def submit(self, payload: Path | dict[str, Any], cwd: Path | None = None) -> int:
        if isinstance(payload, dict):
            path = (cwd or self.root) / f"payload-{time.monotonic_ns()}.yml"
            path.write_text(yaml.safe_dump(payload))
            payload = path
        return int(self.ok("ketchup", "submit", str(payload), cwd=cwd)["id"])

    def job(self, jobid: int) -> dict[str, Any]:
        return self.ok("ketchup", "status", str(jobid))[0]

    def wait_job(
        self, jobid: int, statuses: tuple[str, ...] = ("c", "ce", "cd"), timeout: float = 120
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(jobid)
            if job["status"] in statuses:
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {jobid} still {job['status']} after {timeout} s")

    def runner_pids(self) -> set[int]:
        """The daemon's job runners (fork servers), not the jobs' processes they forked."""
        daemon = int(self.ok("tomato", "status")["pid"])
        found = set()
        for proc in processes_of(self.root):
            try:
                if "flows.runner" in proc.cmdline() and proc.ppid() == daemon:
                    found.add(proc.pid)
            except psutil.Error:
                continue
        return found

    def stop(self) -> None:
        """Stop the daemon (cancelling jobs), then make sure nothing of it is left."""
        self.run("tomato", "stop", "--cancel-jobs", timeout=240)
        kill_leftovers(self.root)


@contextmanager
def running(root: Path, devices: dict[str, Any] | Path) -> Iterator[Tomato]:
    """A daemon in ``root``, started with its Prefect healthy; stopped whatever happens."""
    tomato = Tomato(root)
    try:
        tomato.init(devices)
        tomato.start()
        tomato.wait_prefect()
        yield tomato
    finally:
        tomato.stop()


def eventually(check: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    """``check()``'s first truthy result; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.3)


def processes_of(root: Path) -> list[psutil.Process]:
    """The live processes (zombies aside) whose command line or environment mentions
    this test's folder: a daemon's job runners say it in their environment only."""
    mine = str(root)
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "environ", "status"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            env = proc.info.get("environ") or {}
            if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                continue
            if mine in cmd or mine in json.dumps(env):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def kill_leftovers(root: Path) -> None:
    """Kill every process whose command line or environment mentions this test's folder."""
    for proc in processes_of(root):
        try:
            proc.kill()
        except psutil.Error:
            continue


# `tomato stop` returns once the daemon's API has closed, which it does after its runners,
# drivers and Prefect server have exited: only the daemon's own exit is left, under a
# second; 30 s allows for a busy 2-core machine.
STOPPED_WITHIN_S = 30.0


def assert_nothing_left(root: Path, timeout: float = STOPPED_WITHIN_S) -> None:
    """Within ``timeout``, no process of the daemon in ``root`` is left."""
    deadline = time.monotonic() + timeout
    while (left := processes_of(root)) and time.monotonic() < deadline:
        time.sleep(0.2)
    named = []
    for proc in left:
        try:
            named.append(f"{proc.pid} {' '.join(proc.cmdline()[:4])}")
        except psutil.Error:
            continue
    assert not named, f"left {timeout:.0f} s after the stop: {named}"


def counter_payload(
    sample: str,
    duration: float = 1.0,
    interval: float = 0.1,
    role: str = "counter",
    **settings: Any,
) -> dict[str, Any]:
    return {
        "version": "2.2",
        "sample": {"identifier": sample},
        "method": [
            {
                "component_role": role,
                "technique_name": "count",
                "max_duration": duration,
                "sampling_interval": interval,
            }
        ],
        "settings": settings,
    }
