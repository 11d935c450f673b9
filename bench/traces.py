"""Scenario i: traces, a 1000-point trace per sample.

Job: a 10 s job at 0.1 s sampling through ``ketchup submit``, repeated ``repeats`` times
on one daemon; the results file is checked for every sample and every point. Ours runs
the pyvisa-sim network analyser (``drivers/instruments/network_analyser.yaml``: 1000
points per ``CALC1:DATA:FDAT?``); tomato 2.2 runs tomato-example-trig with
``points: 1000`` (a software trace: no instrument round trip).

Store: ``JobStore``s filled directly with 1000-point float64 traces (plus three scalar
columns) in 10-sample batches (one poll of such a job) to several sizes; then, in turn
over the sizes, 10-trace batches are appended (write + flush, and fsynced as a running
job does) and a snapshot (``write_results``) is written. tomato 2.2's per-poll append
(``data_to_pickle``) is timed at the same sizes by ``theirs_traces.py`` in its venv.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from bench.stats import Row, row
from bench.world import THEIRS_BIN, World, log, read_uts, sleep_until

POINTS = 1000
FREQ = np.linspace(1e6, 1e9, POINTS)


# what each tool runs: ours the pyvisa-sim analyser, 2.2 tomato-example-trig at 1000 points
SETUPS = {
    "ours": {
        "device": {
            "name": "vna",
            "driver": "scpi",
            "address": "TCPIP0::127.0.0.1::inst0::INSTR",
            "channels": ["1"],
            "options": {"instrument": "network_analyser"},
        },
        "role": "vna",
        "step": {"technique_name": "sweep"},
        "trace": ("s21", "frequency"),
    },
    "theirs": {
        "device": {
            "name": "trig",
            "driver": "example_trig",
            "address": "trig-addr",
            "channels": ["1"],
            "pollrate": 1,
        },
        "role": "trig",
        "step": {
            "technique_name": "trig_function",
            "task_params": {"points": POINTS, "function": "sin"},
        },
        "trace": ("ordinate", "abscissa"),
    },
}


def devices(kind: str) -> dict:
    setup = SETUPS[kind]
    dev = setup["device"]
    role = setup["role"]
    pipeline = {"name": "pip-i", "devices": [{"role": role, "device": dev["name"], "channel": "1"}]}
    return {"devices": [dev], "pipelines": [pipeline]}


def _job(world: World, duration: float, interval: float) -> dict:
    setup = SETUPS[world.kind]
    role, (trace, axis) = setup["role"], setup["trace"]
    step = {
        "component_role": role,
        **setup["step"],
        "max_duration": duration,
        "sampling_interval": interval,
    }
    payload = {
        "version": "2.2",
        "sample": {"identifier": "bench-i"},
        "user": {"identifier": "bench"},
        "method": [step],
        "settings": {"verbosity": "WARNING"},
    }
    path = world.workdir / f"i-{time.monotonic_ns()}.yml"
    path.write_text(yaml.safe_dump(payload))
    world.prepare("pip-i", "bench-i")
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
        values = np.asarray(nc[role][trace][:], dtype=np.float64)
        coord = np.asarray(nc[role][axis][:], dtype=np.float64)
    uts = np.asarray(read_uts(result, role=role))
    steps = np.diff(uts)
    return {
        "status": job["status"],
        "samples": len(uts),
        "full": int((np.isfinite(values).sum(axis=1) == POINTS).sum()),
        "points": len(coord),
        "dev_ms": float(np.percentile(np.abs(steps - interval), 99) * 1000) if len(steps) else 0,
        "monotonic": bool((steps > 0).all()),
        "wall_s": time.time() - t0,
        "mib": result.stat().st_size / 2**20,
    }


def run_jobs(kind: str, repeats: int, duration: float, interval: float, notes: list[str]) -> list:
    jobs: list[dict] = []
    world = World(kind)
    try:
        world.init(devices(kind))
        if kind == "ours":
            settings = world.app / "settings.toml"
            settings.write_text(settings.read_text() + '\n[drivers.scpi]\nbackend = "@sim"\n')
        world.start()
        world.wait_usable()
        for r in range(repeats):
            d = _job(world, duration, interval)
            jobs.append(d)
            log(
                f"i {kind} job {r + 1}/{repeats}: {d['status']}, {d['samples']} samples, "
                f"{d['full']} with all {POINTS} points, p99 interval error {d['dev_ms']:.1f} ms, "
                f"{d['mib']:.1f} MiB"
            )
    except Exception as exc:  # noqa: BLE001
        log(f"i {kind} FAILED: {exc}")
        notes.append(f"i {kind} failed: {str(exc)[:300]}")
    finally:
        world.teardown()
    return jobs


def theirs_appends(sizes: list[int], notes: list[str]) -> dict[int, dict]:
    script = Path(__file__).resolve().parent / "theirs_traces.py"
    try:
        proc = subprocess.run(
            [str(THEIRS_BIN / "python"), str(script), *map(str, sizes)],
            capture_output=True,
            text=True,
            timeout=900,
        )
    except subprocess.TimeoutExpired:
        notes.append("i: tomato 2.2's trace appends did not finish in 900 s")
        return {}
    out = {}
    for line in proc.stdout.splitlines():
        d = json.loads(line)
        out[d["n"]] = d
        log(f"i theirs store n={d['n']:.0e}: append {d['append_s'] * 1000:.1f} ms")
    if proc.returncode != 0:
        notes.append(f"i: tomato 2.2's trace appends failed: {proc.stderr.strip()[-200:]}")
    return out


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


def scenario_i(kinds: list[str], repeats: int, quick: bool, notes: list[str]) -> list[Row]:
    duration, interval = 10.0, 0.1
    ideal = round(duration / interval)
    jobs = {kind: run_jobs(kind, repeats, duration, interval, notes) for kind in kinds}
    sizes = [10**k for k in (2, 3, 4)] + ([] if quick else [5 * 10**4])
    stored = store_sizes(sizes)
    theirs = theirs_appends(sizes, notes) if "theirs" in kinds else {}
    o, t = jobs.get("ours") or [], jobs.get("theirs") or []

    def per(js: list[dict], f) -> list[float] | None:
        return [f(d) for d in js] if js else None

    rows = [
        row(
            "i",
            f"{duration:g} s job of {POINTS}-point traces at {interval * 1000:g} ms: "
            "samples kept (%)",
            per(o, lambda d: 100.0 * d["samples"] / ideal),
            per(t, lambda d: 100.0 * d["samples"] / ideal),
            fmt="{:.0f}",
            note=f"{ideal} ideal; ours: pyvisa-sim analyser (scpi), 2.2: tomato-example-trig",
        ),
        row(
            "i",
            f"samples with all {POINTS} points (%)",
            per(o, lambda d: 100.0 * d["full"] / max(d["samples"], 1)),
            per(t, lambda d: 100.0 * d["full"] / max(d["samples"], 1)),
            fmt="{:.0f}",
            note="timestamps monotonic: "
            + ", ".join(
                f"{k} {'yes' if all(d['monotonic'] for d in js) else 'NO'}"
                for k, js in jobs.items()
                if js
            ),
        ),
        row(
            "i",
            "p99 sampling-interval error (ms)",
            per(o, lambda d: d["dev_ms"]),
            per(t, lambda d: d["dev_ms"]),
            fmt="{:.1f}",
        ),
        row(
            "i",
            "submit to results file (s)",
            per(o, lambda d: d["wall_s"]),
            per(t, lambda d: d["wall_s"]),
            fmt="{:.1f}",
            note="statuses "
            + "; ".join(
                f"{k} {', '.join(d['status'] for d in js)}" for k, js in jobs.items() if js
            ),
        ),
    ]
    first = statistics.median(stored[0]["flush"]) if stored else None
    for d in stored:
        flush = statistics.median(d["flush"])
        th = theirs.get(d["n"])
        rows.append(
            row(
                "i",
                f"append one 10-trace batch at {d['n']:.0e} stored traces: write + flush (ms)",
                [x * 1000 for x in d["flush"]],
                [th["append_s"] * 1000] if th else None,
                note=f"store {d['mib']:.0f} MiB; median ×{flush / first:.2f} of the smallest"
                + (f"; 2.2 rewrites its {th['pickle_mb']:.0f} MiB pickle" if th else ""),
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
