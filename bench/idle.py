"""Scenario j, the default single host: ``tomato start`` with its embedded Prefect server
against tomato 2.2, and the floor under it.

Each repeat is a fresh world of each tool with the default settings (as in a-e): start
until usable, memory and CPU once idle, then ``tomato stop`` and a second ``tomato start``
on the same folders (a restart: the Prefect database exists and is migrated).

The floor is a bare ``prefect server start`` (the same Prefect, no tomato code) with the
environment the daemon gives its embedded server (:func:`server_env`: SQLite in a fresh
``PREFECT_HOME``, a loopback port, the same services off), measured the same way: start
until ``/api/health`` answers, fresh and again on the same home, then idle memory and CPU.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.core import DEVICES
from bench.lab import measure, record_idle
from bench.processes import cpu_seconds, kill_world, memory
from bench.stats import Row, median, row
from bench.world import CREATED, OURS_BIN, TMP_PREFIX, World, free_port, log
from tomato_cli.orchestration.server import PrefectTarget, is_healthy, server_env
from tomato_cli.rpc import LOOPBACK

NAMES = ("start_cmd", "usable", "start_cpu", "restart", "restart_cpu", "nproc", "rss", "pss")
NAMES += ("uss", "cpu", "uss_again")


class BareServer:
    """``prefect server start`` on its own, in a folder of its own (found and killed by it)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}floor-"))
        CREATED.append(self.root)
        self.port = free_port()
        self.target = PrefectTarget(
            api_url=f"http://{LOOPBACK}:{self.port}/api", embedded=True, home=self.root / "prefect"
        )
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 240) -> float:
        """Start the server; seconds until ``/api/health`` answers."""
        assert self.target.home is not None
        self.target.home.mkdir(parents=True, exist_ok=True)
        cmd = [str(OURS_BIN / "prefect"), "server", "start", "--host", LOOPBACK]
        cmd += ["--port", str(self.port)]
        with open(self.root / "server.log", "ab") as out:
            t0 = time.monotonic()
            self.proc = subprocess.Popen(
                cmd,
                env=server_env(self.target, self.port),
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        while time.monotonic() - t0 < timeout:
            if is_healthy(self.target, timeout=1.0):
                return time.monotonic() - t0
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"bare prefect server not healthy; see {self.root / 'server.log'}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        kill_world(self.root)

    def teardown(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def record_restart(root: Path, m: dict[str, list[Any]], seconds: float) -> None:
    """A second start on the same folders took ``seconds``: its CPU time, and 5 s later
    the memory again."""
    m["restart"].append(seconds)
    m["restart_cpu"].append(cpu_seconds(root))
    time.sleep(5)
    m["uss_again"].append(memory(root).uss)


def measure_floor(m: dict[str, list[Any]], window: float) -> None:
    """As :func:`measure_host`, for the bare server: fresh, idle, stopped, started again."""
    server = BareServer()
    try:
        m["usable"].append(server.start())
        m["start_cpu"].append(cpu_seconds(server.root))
        idle = record_idle(server.root, m, window)
        server.stop()
        record_restart(server.root, m, server.start())
        log(
            f"j floor: healthy {m['usable'][-1]:.2f} s ({m['start_cpu'][-1]:.1f} CPU-s), "
            f"again {m['restart'][-1]:.2f} s ({m['restart_cpu'][-1]:.1f} CPU-s), "
            f"USS {idle.uss:.0f} MiB (after the restart {m['uss_again'][-1]:.0f}), "
            f"CPU {m['cpu'][-1]:.1f} %"
        )
    finally:
        server.teardown()


def measure_host(world: World, m: dict[str, list[Any]], window: float) -> None:
    """Fresh folders: start, idle; then ``tomato stop``, start again, idle again."""
    world.init(DEVICES)
    measure(world, m, window)
    world.stop()
    t0 = time.monotonic()
    world.start()
    world.wait_usable()
    record_restart(world.root, m, time.monotonic() - t0)
    log(
        f"j {world.kind}: restart until usable {m['restart'][-1]:.2f} s "
        f"({m['restart_cpu'][-1]:.1f} CPU-s), "
        f"then USS {m['uss_again'][-1]:.0f} MiB"
    )


def scenario_j_single(kinds: list[str], repeats: int, quick: bool, notes: list[str]) -> list[Row]:
    window = 5.0 if quick else 10.0
    res: dict[str, dict[str, list[Any]]] = {k: {n: [] for n in NAMES} for k in (*kinds, "floor")}
    for _ in range(repeats):
        for kind in kinds:
            world = World(kind)
            try:
                measure_host(world, res[kind], window)
            finally:
                world.teardown()
        if "ours" in kinds:
            measure_floor(res["floor"], window)
    o, t, f = res.get("ours", {}), res.get("theirs", {}), res.get("floor", {})

    def kinds_note(d: dict[str, Any]) -> str:
        last = (d.get("kinds") or [{}])[-1]
        return ", ".join(f"{k} {v:.0f}" for k, v in sorted(last.items()))

    def over_floor(name: str) -> str:
        a, b = median(o.get(name) or []), median(f.get(name) or [])
        return f"ours/floor {a / b:.2f}" if a is not None and b else ""

    server = [k.get("prefect-server") for k in o.get("kinds", []) if k.get("prefect-server")]
    server_note = ""
    if server and f.get("uss"):
        server_note = (
            f"; our embedded server process alone {median(server):.0f} MiB "
            f"= {median(server) / median(f['uss']):.2f} × floor"  # type: ignore[operator]
        )
    rows = [
        row("j", "single host: `tomato start` returns (s)", o.get("start_cmd"), t.get("start_cmd")),
        row(
            "j",
            "single host: start until usable, fresh folders (s)",
            o.get("usable"),
            t.get("usable"),
            note="`tomato status` until usable (bench World.wait_usable): ours every driver host "
            "running + embedded Prefect healthy + work pool made; 2.2 its driver connected; "
            + over_floor("usable"),
        ),
        row(
            "j",
            "single host: CPU time of its processes until usable, fresh (CPU-s)",
            o.get("start_cpu"),
            t.get("start_cpu"),
            note="less sensitive to the machine's load than the wall time; "
            + over_floor("start_cpu"),
        ),
        row(
            "j",
            "single host: restart until usable, same folders (s)",
            o.get("restart"),
            t.get("restart"),
            note="after `tomato stop`; ours: Prefect's database exists; " + over_floor("restart"),
        ),
        row(
            "j",
            "single host: CPU time until usable, restart (CPU-s)",
            o.get("restart_cpu"),
            t.get("restart_cpu"),
            note=over_floor("restart_cpu"),
        ),
        row("j", "single host idle: processes", o.get("nproc"), t.get("nproc"), fmt="{:.0f}"),
        row("j", "single host idle: RSS (MiB)", o.get("rss"), t.get("rss"), fmt="{:.0f}"),
        row("j", "single host idle: PSS (MiB)", o.get("pss"), t.get("pss"), fmt="{:.0f}"),
        row(
            "j",
            "single host idle: USS (MiB)",
            o.get("uss"),
            t.get("uss"),
            fmt="{:.0f}",
            note=f"USS by kind: ours {kinds_note(o)}"
            + (f"; 2.2 {kinds_note(t)}" if t.get("kinds") else "")
            + f"; {over_floor('uss')}{server_note}",
        ),
        row(
            "j",
            f"single host idle: CPU (% of one core, {window:.0f} s)",
            o.get("cpu"),
            t.get("cpu"),
            fmt="{:.1f}",
        ),
        row(
            "j",
            "single host idle after the restart: USS (MiB)",
            o.get("uss_again"),
            t.get("uss_again"),
            fmt="{:.0f}",
            note=over_floor("uss_again"),
        ),
    ]
    if "ours" not in kinds:
        return rows
    return rows + [
        row(
            "j",
            "single host floor, bare `prefect server start`: until /api/health, fresh home (s)",
            f.get("usable"),
            t.get("usable"),
            note="no tomato code; the env of our embedded server; against 2.2's start until usable",
        ),
        row(
            "j",
            "single host floor: CPU time until /api/health, fresh home (CPU-s)",
            f.get("start_cpu"),
            t.get("start_cpu"),
        ),
        row(
            "j",
            "single host floor: until /api/health again, same home (s)",
            f.get("restart"),
            t.get("restart"),
        ),
        row(
            "j",
            "single host floor: CPU time until /api/health again (CPU-s)",
            f.get("restart_cpu"),
            t.get("restart_cpu"),
        ),
        row("j", "single host floor idle: RSS (MiB)", f.get("rss"), t.get("rss"), fmt="{:.0f}"),
        row("j", "single host floor idle: PSS (MiB)", f.get("pss"), t.get("pss"), fmt="{:.0f}"),
        row(
            "j",
            "single host floor idle: USS (MiB)",
            f.get("uss"),
            t.get("uss"),
            fmt="{:.0f}",
            note="one process; against 2.2's whole instance",
        ),
        row(
            "j",
            f"single host floor idle: CPU (% of one core, {window:.0f} s)",
            f.get("cpu"),
            t.get("cpu"),
            fmt="{:.1f}",
        ),
        row(
            "j",
            "single host floor idle after the restart: USS (MiB)",
            f.get("uss_again"),
            t.get("uss_again"),
            fmt="{:.0f}",
        ),
    ]
