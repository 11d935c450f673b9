"""One daemon "world" per tool, and the payloads and devices files both tools read.

Both tools are driven only through their CLIs (``tomato``, ``ketchup``) with ``-y`` YAML
output, with the same devices files and payloads. Every world lives in its own temporary
folder on a free loopback port and is torn down (process tree killed, folder removed) in
``finally`` blocks by the caller through :meth:`World.teardown`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import yaml

from bench.processes import kill_world, world_processes

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
OURS_BIN = ROOT / ".venv" / "bin"
THEIRS_BIN = BENCH / ".venv-tomato22" / "bin"
REFERENCE = ROOT / "tests" / "data" / "reference"
TMP_PREFIX = "tomato-bench-"
CREATED: list[Path] = []  # every world folder made by this process, swept at exit


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class Result:
    code: int
    doc: Any
    out: str
    err: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.code == 0 and isinstance(self.doc, dict) and self.doc.get("success") is True

    @property
    def data(self) -> Any:
        return self.doc.get("data") if isinstance(self.doc, dict) else None


@dataclass
class World:
    """One tool's daemon with its folders and port. ``kind`` is ``ours`` or ``theirs``."""

    kind: str
    root: Path = field(default=None)  # type: ignore[assignment]
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{self.kind}-"))
        CREATED.append(self.root)
        self.bin = OURS_BIN if self.kind == "ours" else THEIRS_BIN
        self.env = {**os.environ, "COLUMNS": "200", "PATH": f"{self.bin}:{os.environ['PATH']}"}
        self.env.pop("PREFECT_API_URL", None)
        (self.root / "work").mkdir(parents=True, exist_ok=True)

    # -- CLI
    @property
    def app(self) -> Path:
        return self.root / "app"

    @property
    def workdir(self) -> Path:
        return self.root / "work"

    def _opts(self, app: str, args: tuple[str, ...]) -> list[str]:
        port = ["--port", str(self.port)]
        folders = [
            "--appdir",
            str(self.app),
            "--datadir",
            str(self.root / "data"),
            "--logdir",
            str(self.root / "log"),
        ]
        if self.kind == "ours":
            return port + folders
        # tomato 2.2: every command takes --port; init also the folders, start the appdir
        if app == "tomato" and args[:1] == ("init",):
            return port + folders
        if app == "tomato" and args[:1] == ("start",):
            return port + ["--appdir", str(self.app)]
        return port

    def run(self, app: str, *args: str, timeout: float = 120, cwd: Path | None = None) -> Result:
        cmd = [str(self.bin / app), *map(str, args), *self._opts(app, tuple(map(str, args))), "-y"]
        # Output goes to files, not pipes: tomato 2.2's `tomato start` leaves its daemon
        # holding the CLI's stdout, so a pipe would never reach EOF.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(
                    cmd,
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    text=True,
                    timeout=timeout,
                    cwd=cwd or self.workdir,
                    env=self.env,
                )
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = -1
            dt = time.perf_counter() - t0
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        if code == -1:
            return Result(-1, None, stdout, f"timeout after {timeout} s", timeout)
        try:
            doc = yaml.safe_load(stdout)
        except yaml.YAMLError:
            doc = None
        return Result(code, doc, stdout, stderr, dt)

    def ok(self, app: str, *args: str, **kw: Any) -> Any:
        res = self.run(app, *args, **kw)
        if not res.ok:
            raise RuntimeError(
                f"{self.kind}: {app} {' '.join(args)} failed ({res.code}): "
                f"{res.out.strip()[:400]} {res.err.strip()[-600:]}"
            )
        return res.data

    # -- lifecycle
    def init(self, devices: str | dict[str, Any]) -> None:
        self.ok("tomato", "init")
        text = devices if isinstance(devices, str) else json.dumps(devices, indent=1)
        (self.app / "devices.yml").write_text(text)

    def start(self) -> float:
        """``tomato start``; returns the seconds the command took."""
        res = self.run("tomato", "start", timeout=180)
        if not res.ok:
            raise RuntimeError(f"{self.kind}: tomato start failed: {res.out} {res.err[-800:]}")
        return res.seconds

    def usable(self) -> bool:
        """True once a job submitted now would start without waiting for the tool itself."""
        res = self.run("tomato", "status")
        if not res.ok:
            return False
        data = res.data
        if self.kind == "ours":
            prefect = data.get("prefect") or {}
            drivers = data.get("drivers") or []
            return bool(
                prefect.get("healthy")
                and "work_pool" in prefect
                and drivers
                and all(d.get("state") == "running" for d in drivers)
            )
        drvs = data.get("drvs") or {}
        return bool(drvs) and all(d.get("connected_at") and d.get("pid") for d in drvs.values())

    def jobs_can_start(self) -> bool:
        """True once a job submitted now would start at once: ours needs its driver hosts
        only (a job starts while Prefect is still starting, which mirrors it later); 2.2
        is :meth:`usable`."""
        if self.kind != "ours":
            return self.usable()
        res = self.run("tomato", "status")
        if not res.ok:
            return False
        drivers = (res.data or {}).get("drivers") or []
        return bool(drivers) and all(d.get("state") == "running" for d in drivers)

    def wait_usable(self, timeout: float = 240) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.usable():
                return time.monotonic() - t0
            time.sleep(0.2)
        raise RuntimeError(f"{self.kind}: not usable after {timeout} s")

    def stop(self, timeout: float = 120) -> tuple[float, float]:
        """``tomato stop``; returns (command seconds, seconds until all processes are gone)."""
        procs = world_processes(self.root)
        t0 = time.monotonic()
        args = ("stop", "--cancel-jobs") if self.kind == "ours" else ("stop",)
        res = self.run("tomato", *args, timeout=timeout)
        cmd_s = time.monotonic() - t0
        if not res.ok:
            raise RuntimeError(f"{self.kind}: tomato stop failed: {res.out} {res.err[-400:]}")
        gone, alive = psutil.wait_procs(procs, timeout=timeout)
        all_s = time.monotonic() - t0
        if alive:
            names = [" ".join(p.cmdline()[:4]) for p in alive if p.is_running()]
            raise RuntimeError(f"{self.kind}: {len(alive)} processes left after stop: {names}")
        return cmd_s, all_s

    def teardown(self, remove: bool = True) -> None:
        try:
            if self.usable_quick():
                self.run(
                    "tomato",
                    *(("stop", "--cancel-jobs") if self.kind == "ours" else ("stop",)),
                    timeout=60,
                )
        except Exception:  # noqa: BLE001 - teardown must go on
            pass
        kill_world(self.root)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    def usable_quick(self) -> bool:
        res = self.run("tomato", "status", timeout=20)
        return res.ok

    # -- pipelines and jobs
    def pipelines(self) -> dict[str, dict[str, Any]]:
        data = self.ok("tomato", "status", "pipelines")
        if isinstance(data, dict):
            return data
        return {p["name"]: p for p in data}

    def prepare(self, pipeline: str, sample: str) -> None:
        pip = self.pipelines()[pipeline]
        if pip.get("sampleid") is not None:
            self.ok("tomato", "pipeline", "eject", pipeline)
        self.ok("tomato", "pipeline", "load", pipeline, sample)
        self.ok("tomato", "pipeline", "ready", pipeline)

    def submit(self, payload: Path) -> tuple[int, float]:
        res = self.run("ketchup", "submit", str(payload))
        if not res.ok:
            raise RuntimeError(f"{self.kind}: submit failed: {res.out} {res.err[-400:]}")
        return int(res.data["id"]), res.seconds

    def jobs(self, *ids: int) -> list[dict[str, Any]]:
        data = self.ok("ketchup", "status", *map(str, ids))
        return list(data or [])

    def result_path(self, job: dict[str, Any]) -> Path:
        if job.get("respath"):
            return Path(job["respath"])
        return self.workdir / f"results.{job['id']}.nc"


def ts(value: str | None) -> float | None:
    """Seconds since the epoch from either tool's ISO timestamp."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def write_payload(
    path: Path, sample: str, duration: float, interval: float, unlock: bool = False
) -> Path:
    """A version-2.2 payload with one counter step, read identically by both tools."""
    doc = {
        "version": "2.2",
        "sample": {"identifier": sample},
        "user": {"identifier": "bench"},  # tomato 2.2 requires it in version-2.2 payloads
        "method": [
            {
                "component_role": "counter",
                "technique_name": "count",
                "max_duration": duration,
                "sampling_interval": interval,
            }
        ],
        "settings": {"unlock_when_done": unlock, "verbosity": "WARNING"},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def counter_devices(channels: int, pollrate: int = 1) -> dict[str, Any]:
    """One example_counter device with ``channels`` channels and a wildcard pipeline."""
    return {
        "devices": [
            {
                "name": "dev-counter",
                "driver": "example_counter",
                "address": "example-addr",
                "channels": [str(i) for i in range(1, channels + 1)],
                "pollrate": pollrate,
            }
        ],
        "pipelines": [
            {
                "name": "pip-counter-*",
                "devices": [{"role": "counter", "device": "dev-counter", "channel": "each"}],
            }
        ],
    }


def read_uts(path: Path, role: str = "counter") -> list[float]:
    """The ``uts`` coordinate of one role of a results file, as epoch seconds.

    Both tools store plain float64 Unix seconds (ours with units "s").
    """
    import netCDF4
    import numpy as np

    with netCDF4.Dataset(path) as nc:
        var = nc.groups[role].variables["uts"]
        var.set_auto_mask(False)
        return np.asarray(var[:], dtype="float64").tolist()


def sleep_until(pred, timeout: float, every: float = 0.2) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        time.sleep(every)
    return False
