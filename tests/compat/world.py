"""One tool's daemon (ours or tomato 2.2), driven only through its CLIs with ``-y``."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.compat.tomato22 import BIN as THEIRS_BIN
from tests.integration.harness import BIN as OURS_BIN
from tests.integration.harness import Result, kill_leftovers
from tomato_cli.rpc import free_port


class World:
    """A tool's folders (``root``), port and CLIs; ``kind`` is ``ours`` or ``theirs``."""

    def __init__(self, kind: str, root: Path):
        self.kind = kind
        self.root = root
        self.port = free_port()
        self.bin = OURS_BIN if kind == "ours" else THEIRS_BIN
        self.app = root / "app"
        self.work = root / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        path = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {**os.environ, "PATH": path, "COLUMNS": "200"}
        self.env.pop("PREFECT_API_URL", None)

    def run(self, app: str, *args: str, cwd: Path | None = None, timeout: float = 120) -> Result:
        """``app args -p PORT``; output through files (2.2's daemon keeps the CLI's stdout)."""
        cmd = [str(self.bin / app), *map(str, args), "-p", str(self.port)]
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.run(
                cmd,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                text=True,
                cwd=cwd or self.work,
                env=self.env,
                timeout=timeout,
            )
            out.seek(0)
            err.seek(0)
            return Result(proc.returncode, out.read(), err.read())

    def ok(self, app: str, *args: str, cwd: Path | None = None) -> Any:
        res = self.run(app, *args, "-y", cwd=cwd)
        doc = res.doc
        assert isinstance(doc, dict) and doc.get("success") is True, (
            f"{self.kind}: {app} {args}: {res.out} {res.err[-500:]}"
        )
        return doc["data"]

    def init22(self) -> Path:
        """tomato 2.2's own ``tomato init`` (for either tool): returns its settings file."""
        folders = ["-A", self.app, "-D", self.root / "data", "-L", self.root / "log"]
        proc = subprocess.run(
            [str(THEIRS_BIN / "tomato"), "init", *map(str, folders), "-p", str(self.port)],
            capture_output=True,
            text=True,
            cwd=self.work,
            timeout=120,
        )
        assert "Success" in proc.stdout, proc.stdout + proc.stderr
        return self.app / "settings.toml"

    def start(self, cwd: Path | None = None) -> Result:
        return self.run("tomato", "start", "-A", str(self.app), cwd=cwd, timeout=180)

    def wait_usable(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            res = self.run("tomato", "status", "-y")
            data = res.doc.get("data") if isinstance(res.doc, dict) else None
            if isinstance(data, dict):
                drvs = data.get("drvs") or {}
                if self.kind == "ours":
                    prefect = data.get("prefect") or {}
                    ready = prefect.get("healthy") and "work_pool" in prefect
                    ready = ready and all(d.get("state") == "running" for d in drvs.values())
                else:
                    ready = all(d.get("connected_at") and d.get("pid") for d in drvs.values())
                if drvs and ready:
                    return
            time.sleep(0.5)
        raise AssertionError(f"{self.kind}: not usable after {timeout} s")

    def prepare(self, pipeline: str, sample: str) -> None:
        pip = self.ok("tomato", "status", "pipelines")[pipeline]
        if pip.get("sampleid") is not None:
            self.ok("tomato", "pipeline", "eject", pipeline)
        self.ok("tomato", "pipeline", "load", pipeline, sample)
        self.ok("tomato", "pipeline", "ready", pipeline)

    def jobs(self, *ids: int) -> dict[int, dict[str, Any]]:
        return {j["id"]: j for j in self.ok("ketchup", "status", *map(str, ids))}

    def wait_jobs(self, ids: list[int], timeout: float = 180) -> dict[int, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = self.jobs(*ids)
            if all(j["status"] in ("c", "ce", "cd") for j in jobs.values()):
                return jobs
            time.sleep(0.5)
        left = {i: j["status"] for i, j in jobs.items() if j["status"] not in ("c", "ce", "cd")}
        raise AssertionError(f"{self.kind}: jobs still running after {timeout} s: {left}")

    def stop(self) -> None:
        if self.kind == "ours":
            self.run("tomato", "stop", "--cancel-jobs", timeout=240)
        else:
            self.run("tomato", "stop", timeout=60)
        kill_leftovers(self.root)


def write_devices(world: World, devices: dict[str, Any]) -> None:
    (world.app / "devices.yml").write_text(json.dumps(devices, indent=1))
