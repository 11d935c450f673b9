"""Scenario i (ours only): traces, a 1000-point sweep per sample.

Job: a 10 s job of the pyvisa-sim network analyser (``drivers/instruments/
network_analyser.yaml``: 1000 points per ``CALC1:DATA:FDAT?``) at 0.1 s sampling, through
``ketchup submit`` like any job; the results file is checked for every sample and every
point. Repeated ``repeats`` times on one daemon.

Store: ``JobStore``s filled directly with 1000-point float64 traces (plus three scalar
columns) in 10-sample batches (one poll of such a job) to several sizes; then, in turn
over the sizes, 10-trace batches are appended (write + flush, and fsynced as a running
job does) and a snapshot (``write_results``) is written.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from common import Row, World, log, read_uts, row, sleep_until

POINTS = 1000
FREQ = np.linspace(1e6, 1e9, POINTS)


def vna_devices() -> dict:
    return {
        "devices": [
            {
                "name": "vna",
                "driver": "scpi",
                "address": "TCPIP0::127.0.0.1::inst0::INSTR",
                "channels": ["1"],
                "options": {"instrument": "network_analyser"},
            }
        ],
        "pipelines": [
            {"name": "pip-vna", "devices": [{"role": "vna", "device": "vna", "channel": "1"}]}
        ],
    }


def _job(world: World, duration: float, interval: float) -> dict:
    payload = {
        "version": "2.2",
        "sample": {"identifier": "bench-i"},
        "user": {"identifier": "bench"},
        "method": [
            {
                "component_role": "vna",
                "technique_name": "sweep",
                "max_duration": duration,
                "sampling_interval": interval,
            }
        ],
        "settings": {"verbosity": "WARNING"},
    }
    path = world.workdir / f"i-{time.monotonic_ns()}.yml"
    path.write_text(yaml.safe_dump(payload))
    world.prepare("pip-vna", "bench-i")
    t0 = time.time()
    jobid, _ = world.submit(path)
    job: dict = {}

    def done() -> bool:
        nonlocal job
        job = world.jobs(jobid)[0]
        return job["status"] in ("c", "ce", "cd")

    if not sleep_until(done, timeout=duration * 6 + 120, every=0.5):
        raise RuntimeError(f"job {jobid} still {job.get('status')}")
    result = world.result_path(job)
    sleep_until(result.exists, timeout=10, every=0.1)
    import netCDF4

    with netCDF4.Dataset(result) as nc:
        s21 = np.asarray(nc["vna"]["s21"][:], dtype=np.float64)
        freq = np.asarray(nc["vna"]["frequency"][:], dtype=np.float64)
    uts = np.asarray(read_uts(result, role="vna"))
    steps = np.diff(uts)
    return {
        "status": job["status"],
        "samples": len(uts),
        "full": int((np.isfinite(s21).sum(axis=1) == POINTS).sum()),
        "points": len(freq),
        "dev_ms": float(np.percentile(np.abs(steps - interval), 99) * 1000) if len(steps) else 0,
        "monotonic": bool((steps > 0).all()),
        "wall_s": time.time() - t0,
        "mib": result.stat().st_size / 2**20,
    }


def _fill(store, n: int, batch: int, t0: float = 1.7e9) -> None:
    rng = np.random.default_rng(0)
    trace = rng.uniform(-40, -3, size=(batch, POINTS))
    done = 0
    while done < n:
        k = min(batch, n - done)
        idx = np.arange(done, done + k)
        store.append(
            "vna",
            t0 + idx * 0.1,
            {"s21": trace[:k], "start": np.full(k, 1e6), "stop": np.full(k, 1e9), "n": idx},
            {"s21": "dB", "frequency": "Hz", "start": "Hz", "stop": "Hz"},
            dims={"s21": ["frequency"]},
            coords={"frequency": FREQ},
        )
        done += k


def _append_times(tmp: Path, durable: bool, t0: float, count: int = 7) -> list[float]:
    """Times of ``count`` 10-trace appends to the store in ``tmp`` (after one to warm up)."""
    from tomato_cli.store import JobStore

    with JobStore(tmp, durable=durable) as store:
        _fill(store, 10, 10, t0=t0)  # the first append after opening scans the file once
        times = []
        for k in range(count):
            t = time.perf_counter()
            _fill(store, 10, 10, t0=t0 + k + 1)
            times.append(time.perf_counter() - t)
    return times


def store_sizes(sizes: list[int], rounds: int = 3) -> list[dict]:
    """Append cost (write + flush, and fsynced) and snapshot time at each store size.

    The sizes are visited in turn ``rounds`` times, so that load on the machine and the
    disk's fsync latency, which vary by the second, fall on every size alike.
    """
    from tomato_cli.store import JobStore, write_results

    comp = json.dumps({"name": "scpi:(vna,1)", "role": "vna"})
    job = json.dumps({"id": 1, "payload": {"version": "2.2"}})
    dirs = {n: Path(tempfile.mkdtemp(prefix="tomato-bench-ours-i-")) for n in sizes}
    got: dict[int, dict] = {n: {"n": n, "flush": [], "fsync": [], "snap": []} for n in sizes}
    try:
        for n, tmp in dirs.items():
            with JobStore(tmp, durable=False) as store:
                _fill(store, n, 10)
        os.sync()
        t0 = 2e9
        for _ in range(rounds):
            for n, tmp in dirs.items():
                got[n]["flush"] += _append_times(tmp, durable=False, t0=t0)
                got[n]["fsync"] += _append_times(tmp, durable=True, t0=t0 + 100)
                t0 += 1000
                with JobStore(tmp, durable=False) as store:
                    t = time.perf_counter()
                    write_results(tmp / "snapshot.1.nc", store, job, {"vna": comp}, "bench")
                    got[n]["snap"].append(time.perf_counter() - t)
        out = []
        for n, tmp in dirs.items():
            d = got[n]
            d["mib"] = (tmp / "data" / "vna.tsr").stat().st_size / 2**20
            out.append(d)
            log(
                f"i store n={n:.0e}: append {statistics.median(d['flush']) * 1000:.2f} ms, "
                f"fsynced {statistics.median(d['fsync']) * 1000:.2f} ms, snapshot "
                f"{statistics.median(d['snap']):.2f} s, store {d['mib']:.0f} MiB"
            )
        return out
    finally:
        for tmp in dirs.values():
            shutil.rmtree(tmp, ignore_errors=True)


def scenario_i(repeats: int, quick: bool, notes: list[str]) -> list[Row]:
    duration, interval = 10.0, 0.1
    ideal = round(duration / interval)
    jobs: list[dict] = []
    world = World("ours")
    try:
        world.init(vna_devices())
        settings = world.app / "settings.toml"
        settings.write_text(settings.read_text() + '\n[drivers.scpi]\nbackend = "@sim"\n')
        world.start()
        world.wait_usable()
        for r in range(repeats):
            d = _job(world, duration, interval)
            jobs.append(d)
            log(
                f"i job {r + 1}/{repeats}: {d['status']}, {d['samples']}/{ideal} samples, "
                f"{d['full']} with all {POINTS} points, p99 interval error {d['dev_ms']:.1f} ms, "
                f"{d['mib']:.1f} MiB"
            )
    except Exception as exc:  # noqa: BLE001
        log(f"i FAILED: {exc}")
        notes.append(f"i failed: {str(exc)[:300]}")
    finally:
        world.teardown()
    sizes = [10**k for k in (2, 3, 4)] + ([] if quick else [5 * 10**4])
    stored = store_sizes(sizes)
    rows: list[Row] = []
    if jobs:
        rows += [
            row(
                "i",
                f"{duration:g} s job of {POINTS}-point traces at {interval * 1000:g} ms: "
                "samples kept (%)",
                [100.0 * d["samples"] / ideal for d in jobs],
                fmt="{:.0f}",
                note=f"{ideal} ideal; statuses {', '.join(d['status'] for d in jobs)}",
            ),
            row(
                "i",
                f"samples with all {POINTS} points (%)",
                [100.0 * d["full"] / max(d["samples"], 1) for d in jobs],
                fmt="{:.0f}",
                note="timestamps monotonic: "
                + ("yes" if all(d["monotonic"] for d in jobs) else "NO"),
            ),
            row(
                "i",
                "p99 sampling-interval error (ms)",
                [d["dev_ms"] for d in jobs],
                fmt="{:.1f}",
            ),
            row(
                "i",
                "submit to results file (s)",
                [d["wall_s"] for d in jobs],
                fmt="{:.1f}",
                note=f"results file {jobs[0]['mib']:.1f} MiB",
            ),
        ]
    first = statistics.median(stored[0]["flush"]) if stored else None
    for d in stored:
        flush = statistics.median(d["flush"])
        rows.append(
            row(
                "i",
                f"append one 10-trace batch at {d['n']:.0e} stored traces: write + flush (ms)",
                [x * 1000 for x in d["flush"]],
                note=f"store {d['mib']:.0f} MiB; median ×{flush / first:.2f} of the smallest"
                if first
                else "",
            )
        )
    for d in stored:
        rows.append(
            row(
                "i",
                f"the same, fsynced as a running job does, at {d['n']:.0e} (ms)",
                [x * 1000 for x in d["fsync"]],
                note="the disk's fsync latency under the machine's load",
            )
        )
    for d in stored:
        rows.append(row("i", f"snapshot at {d['n']:.0e} stored traces (s)", d["snap"]))
    return rows
