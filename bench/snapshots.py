"""Scenario l: periodic snapshots through Prefect automations (ours only).

Four 70 s jobs on four pipelines ask for a snapshot every 10 s: one automation per job
fires, the daemon writes the snapshot. Measured: the CPU one snapshot costs (all processes
of the world, the Prefect server's triggers and events included: the run's CPU minus that
of the same four jobs without snapshots, per snapshot written), and the lag of each
snapshot against the requested interval (time between two snapshots of a job, minus 10 s).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from bench.processes import world_processes
from bench.stats import Row, row
from bench.world import World, counter_devices, log

JOBS = 4
INTERVAL = 10.0


def _cpu_seconds(root: Path, seen: dict[int, float]) -> None:
    """Add every live process's CPU time so far to ``seen`` (by pid: the latest reading)."""
    for proc in world_processes(root):
        try:
            t = proc.cpu_times()
            seen[proc.pid] = t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            continue


def _run(world: World, duration: float, snapshots: bool, tag: str) -> dict[str, Any]:
    ids, paths = [], []
    for i in range(1, JOBS + 1):
        sample = f"l-{tag}-{i}"
        world.prepare(f"pip-counter-{i}", sample)
        doc: dict[str, Any] = {
            "version": "2.2",
            "sample": {"identifier": sample},
            "method": [
                {
                    "component_role": "counter",
                    "technique_name": "count",
                    "max_duration": duration,
                    "sampling_interval": 1.0,
                }
            ],
            "settings": {"verbosity": "WARNING"},
        }
        if snapshots:
            doc["settings"]["snapshot"] = {"interval": INTERVAL, "prefix": f"snap-{tag}-{i}"}
            paths.append(world.workdir / f"snap-{tag}-{i}.nc")
        path = world.workdir / f"{sample}.yml"
        path.write_text(yaml.safe_dump(doc))
        ids.append(world.submit(path)[0])
    cpu: dict[int, float] = {}
    _cpu_seconds(world.root, cpu)
    start = sum(cpu.values())
    stamps: dict[Path, list[float]] = {p: [] for p in paths}
    deadline = time.monotonic() + duration + 120
    while time.monotonic() < deadline:
        for p in paths:
            try:
                mtime = p.stat().st_mtime
            except FileNotFoundError:
                continue
            if not stamps[p] or stamps[p][-1] != mtime:
                stamps[p].append(mtime)
        _cpu_seconds(world.root, cpu)
        if all(j["status"] in ("c", "ce", "cd") for j in world.jobs(*ids)):
            break
        time.sleep(0.5)
    _cpu_seconds(world.root, cpu)
    lags = [b - a - INTERVAL for s in stamps.values() for a, b in zip(s, s[1:], strict=False)]
    return {
        "cpu": sum(cpu.values()) - start,
        "snapshots": sum(len(s) for s in stamps.values()),
        "lags": lags,
    }


def scenario_l(quick: bool, notes: list[str]) -> list[Row]:
    duration = 40.0 if quick else 70.0
    world = World("ours")
    try:
        world.init(counter_devices(JOBS))
        world.start()
        world.wait_usable(timeout=300)
        plain = _run(world, duration, snapshots=False, tag="plain")
        snap = _run(world, duration, snapshots=True, tag="snap")
        log_text = "".join(
            p.read_text(errors="replace") for p in (world.root / "data").rglob("job.log")
        )
        fallback = log_text.count("the daemon wrote") + log_text.count("the daemon writes")
    finally:
        world.teardown()
    per = (snap["cpu"] - plain["cpu"]) / max(1, snap["snapshots"])
    log(f"l: {snap['snapshots']} snapshots, {per:.3f} CPU-s each, lags {snap['lags'][:8]}")
    if fallback:
        notes.append(f"l: the daemon wrote {fallback} snapshots itself (automation late)")
    return [
        Row(
            "l",
            f"periodic snapshots every {INTERVAL:g} s, {JOBS} jobs of {duration:g} s: written",
            f"{snap['snapshots']}",
            note=f"by the daemon on its own: {fallback}",
        ),
        Row(
            "l",
            "… CPU per snapshot, all processes (CPU-s)",
            f"{per:.3f}",
            note=f"run with snapshots {snap['cpu']:.1f} CPU-s, without {plain['cpu']:.1f}; "
            "a snapshot flow run in a new process costs ~1.5 CPU-s",
        ),
        row(
            "l",
            "… lag against the interval: time between two snapshots − 10 s (s)",
            snap["lags"],
            note="Prefect evaluates proactive triggers every 5 s",
        ),
    ]
