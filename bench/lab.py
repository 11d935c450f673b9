"""Scenario j, its lab host part: a lab host (a daemon using the lab's Prefect server on
PostgreSQL) against tomato 2.2: start until usable, and memory and CPU once idle.

The lab server (``tomato lab-server``) is started once for the scenario, in a world folder of
its own, and is not counted in the host's memory: it is shared by the lab. Its own memory is
given in a note. Each repeat of ours is a fresh host: its own appdir, its daemon on 127.0.0.2,
``[prefect] url`` and ``auth_file`` pointing at the lab server.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.core import DEVICES
from bench.processes import Usage, cpu_percent, cpu_seconds, kill_world, memory
from bench.stats import Row, row
from bench.world import OURS_BIN, TMP_PREFIX, World, free_port, log
from tomato_cli.models import load_settings, write_settings
from tomato_cli.models.credentials import read_auth_file, write_auth_file

HOST_ADDRESS = "127.0.0.2"


class LabServerWorld:
    """The lab server, in a folder that the ``postgres`` user can enter."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}labserver-"))
        self.root.chmod(0o755)
        self.dir = self.root / "lab"
        self.data: dict[str, Any] = {}

    def cli(self, *args: str) -> dict[str, Any]:
        proc = subprocess.run(
            [str(OURS_BIN / "tomato"), "lab-server", *args, "--dir", str(self.dir), "-y"],
            capture_output=True,
            text=True,
            timeout=240,
        )
        doc = yaml.safe_load(proc.stdout) if proc.stdout else None
        if proc.returncode != 0 or not doc or not doc.get("success"):
            raise RuntimeError(f"tomato lab-server {args[0]} failed: {proc.stdout} {proc.stderr}")
        return doc["data"]

    def start(self, api_port: int, db_port: int) -> None:
        self.data = self.cli(
            "start", "--api-port", str(api_port), "--db-port", str(db_port), "--db", "tcp"
        )

    @property
    def auth(self) -> str:
        return read_auth_file(self.dir / "auth")

    def teardown(self) -> None:
        try:
            self.cli("stop")
        except Exception:  # noqa: BLE001 - teardown goes on
            pass
        kill_world(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


def lab_host(
    lab: LabServerWorld,
    devices: Any = DEVICES,
    address: str = HOST_ADDRESS,
    name: str = "bench-host",
) -> World:
    """A fresh host world whose daemon listens on ``address`` and uses the lab server."""
    world = World("ours")
    world.init(devices)
    path = world.app / "settings.toml"
    settings = load_settings(path)
    auth_file = world.app / "lab-auth"
    write_auth_file(auth_file, lab.auth)
    settings.daemon.host = address
    settings.daemon.name = name
    settings.prefect.url = lab.data["api_url"]
    settings.prefect.auth_file = auth_file
    write_settings(settings, path)
    return world


def record_idle(root: Path, m: dict[str, list[Any]], idle_window: float) -> Usage:
    """5 s after a start: the processes, their memory and their CPU over ``idle_window``."""
    time.sleep(5)
    idle = memory(root)
    m["nproc"].append(idle.nproc)
    m["rss"].append(idle.rss)
    m["pss"].append(idle.pss)
    m["uss"].append(idle.uss)
    m["cpu"].append(cpu_percent(root, idle_window))
    m.setdefault("kinds", []).append(idle.by_kind)
    return idle


def measure(world: World, m: dict[str, list[Any]], idle_window: float) -> None:
    t0 = time.monotonic()
    m["start_cmd"].append(world.start())
    world.wait_usable()
    m["usable"].append(time.monotonic() - t0)
    m.setdefault("start_cpu", []).append(cpu_seconds(world.root))
    idle = record_idle(world.root, m, idle_window)
    log(
        f"j {world.kind}: start {m['start_cmd'][-1]:.2f} s, usable {m['usable'][-1]:.2f} s "
        f"({m['start_cpu'][-1]:.1f} CPU-s), "
        f"{idle.nproc} procs, RSS {idle.rss:.0f} MiB, USS {idle.uss:.0f} MiB, "
        f"by kind {idle.by_kind}, CPU {m['cpu'][-1]:.1f} %"
    )


def scenario_j(kinds: list[str], repeats: int, quick: bool, notes: list[str]) -> list[Row]:
    window = 5.0 if quick else 10.0
    res: dict[str, dict[str, list[float]]] = {
        k: {n: [] for n in ("start_cmd", "usable", "nproc", "rss", "pss", "uss", "cpu")}
        for k in kinds
    }
    lab = LabServerWorld()
    try:
        if "ours" in kinds:
            t0 = time.monotonic()
            lab.start(free_port(), free_port())
            log(f"j: lab server healthy in {time.monotonic() - t0:.1f} s at {lab.data['api_url']}")
        for _ in range(repeats):
            for kind in kinds:
                world = lab_host(lab) if kind == "ours" else World(kind)
                if kind != "ours":
                    world.init(DEVICES)
                try:
                    measure(world, res[kind], window)
                finally:
                    world.teardown()
        if "ours" in kinds:
            server = memory(lab.root)
            notes.append(
                f"j: the lab server itself (shared by every host, not counted above): "
                f"{server.nproc} processes, RSS {server.rss:.0f} MiB, USS {server.uss:.0f} MiB "
                f"(by kind {', '.join(f'{k} {v:.0f}' for k, v in server.by_kind.items())})"
            )
    finally:
        lab.teardown()
    o, t = res.get("ours", {}), res.get("theirs", {})

    def kinds_note(d: dict[str, Any]) -> str:
        last = (d.get("kinds") or [{}])[-1]
        return ", ".join(f"{k} {v:.0f}" for k, v in sorted(last.items()))

    return [
        row("j", "lab host: `tomato start` returns (s)", o.get("start_cmd"), t.get("start_cmd")),
        row(
            "j",
            "lab host: start until usable (s)",
            o.get("usable"),
            t.get("usable"),
            note="ours: drivers up + lab Prefect healthy + work pool; 2.2: driver connected",
        ),
        row(
            "j",
            "lab host: CPU time of its processes until usable (CPU-s)",
            o.get("start_cpu"),
            t.get("start_cpu"),
            note="less sensitive to the machine's load than the wall time",
        ),
        row("j", "lab host idle: processes", o.get("nproc"), t.get("nproc"), fmt="{:.0f}"),
        row("j", "lab host idle: RSS (MiB)", o.get("rss"), t.get("rss"), fmt="{:.0f}"),
        row("j", "lab host idle: PSS (MiB)", o.get("pss"), t.get("pss"), fmt="{:.0f}"),
        row(
            "j",
            "lab host idle: USS (MiB)",
            o.get("uss"),
            t.get("uss"),
            fmt="{:.0f}",
            note=f"USS by kind: ours {kinds_note(o)}; 2.2 {kinds_note(t)}",
        ),
        row(
            "j",
            f"lab host idle: CPU (% of one core, {window:.0f} s)",
            o.get("cpu"),
            t.get("cpu"),
            fmt="{:.1f}",
        ),
    ]
