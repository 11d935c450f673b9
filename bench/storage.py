"""Scenario f: snapshot and final-NetCDF time against the number of stored samples.

Ours: a job store (``tomato_cli.store.JobStore``) is filled directly with counter-shaped
samples (val, max, min, param, choice) in batches, then the NetCDF is written with
``tomato_cli.store.write_results`` exactly as ``tomato_cli/store/results.py`` does for snapshots and
for the final file (snapshots read the store with ``durable=False``; the code path is the
same). The per-poll cost is timed as appending one more 10-sample batch at that size.

tomato 2.2: ``bench/theirs_store.py``, run in its own venv, times its own
``merge_netcdfs`` (snapshot and final) and ``data_to_pickle`` (per-poll append) on the
pickle its job process would have written at that size. Real jobs cannot reach 1e6-1e7
samples in a benchmark run, on either tool.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.stats import Row, summary
from bench.world import THEIRS_BIN, log


def _fill(store, n: int, batch: int) -> None:
    t0 = 1.7e9
    choice = np.full(batch, "red", dtype="<U5")
    param = np.full(batch, 1.5)
    units = {"val": None, "max": None, "min": None, "param": None, "choice": None}
    done = 0
    while done < n:
        k = min(batch, n - done)
        idx = np.arange(done, done + k, dtype=np.int64)
        store.append(
            "counter",
            t0 + idx * 0.1,
            {
                "val": idx,
                "max": idx + 10,
                "min": idx - 10,
                "param": param[:k],
                "choice": choice[:k],
            },
            units,
        )
        done += k


def ours_sizes(sizes: list[int], batch: int) -> list[dict]:
    from tomato_cli.store import JobStore, write_results

    comp = json.dumps({"name": "example_counter:(example-addr,1)", "role": "counter"})
    out = []
    for n in sizes:
        tmp = Path(tempfile.mkdtemp(prefix="tomato-bench-ours-f-"))
        try:
            with JobStore(tmp, durable=False) as store:
                t = time.perf_counter()
                _fill(store, n, batch)
                fill_s = time.perf_counter() - t
            job = json.dumps({"id": 1, "payload": {"version": "2.2"}})
            snaps = []
            for _ in range(3 if n <= 10**6 else 1):
                with JobStore(tmp, durable=False) as store:
                    t = time.perf_counter()
                    write_results(tmp / "snapshot.1.nc", store, job, {"counter": comp}, "bench")
                    snaps.append(time.perf_counter() - t)
            snap = sorted(snaps)[len(snaps) // 2]
            with JobStore(tmp, durable=True) as store:
                t = time.perf_counter()
                write_results(tmp / "results.1.nc", store, job, {"counter": comp}, "bench")
                final = time.perf_counter() - t
                idx = np.arange(10, dtype=np.int64)
                cols = {
                    "val": idx,
                    "max": idx,
                    "min": idx,
                    "param": idx * 1.0,
                    "choice": np.full(10, "red"),
                }
                # the first append after opening recovers (scans) the file once; time the
                # steady state, which is what every poll of a running job pays
                store.append("counter", 2e9 + idx, cols, {})
                times = []
                for k in range(5):
                    t = time.perf_counter()
                    store.append("counter", 2e9 + 10 * (k + 1) + idx, cols, {})
                    times.append(time.perf_counter() - t)
                append = sorted(times)[2]
            size = (tmp / "results.1.nc").stat().st_size / 2**20
            out.append(
                {
                    "n": n,
                    "snapshot_s": snap,
                    "final_s": final,
                    "append_s": append,
                    "file_mb": size,
                    "fill_s": fill_s,
                }
            )
            log(
                f"f ours n={n:.0e} batch={batch}: snapshot {snap:.3f} s, final {final:.3f} s, "
                f"append {append * 1000:.2f} ms, {size:.1f} MiB (fill {fill_s:.1f} s)"
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def theirs_sizes(sizes: list[int], notes: list[str]) -> list[dict]:
    script = Path(__file__).resolve().parent / "theirs_store.py"
    out = []
    for n in sizes:  # one process per size: a failure at 1e7 keeps the smaller results
        try:
            proc = subprocess.run(
                [str(THEIRS_BIN / "python"), str(script), str(n)],
                capture_output=True,
                text=True,
                timeout=900,
            )
        except subprocess.TimeoutExpired:
            notes.append(f"f: tomato 2.2 at {n:.0e} samples did not finish in 900 s")
            break
        if proc.returncode != 0:
            notes.append(
                f"f: tomato 2.2 at {n:.0e} samples failed: {proc.stderr.strip().splitlines()[-1:]}"
            )
            break
        d = json.loads(proc.stdout.strip().splitlines()[-1])
        out.append(d)
        log(
            f"f theirs n={n:.0e}: snapshot {d['snapshot_s']:.3f} s, final {d['final_s']:.3f} s, "
            f"append {d['append_s'] * 1000:.2f} ms, {d['file_mb']:.1f} MiB"
        )
    return out


def scenario_f(kinds: list[str], quick: bool, notes: list[str]) -> list[Row]:
    sizes = [10**k for k in (range(3, 6) if quick else range(3, 8))]
    ours = {d["n"]: d for d in ours_sizes(sizes, batch=1000)} if "ours" in kinds else {}
    small = {}
    if "ours" in kinds:
        # the same data in 1-sample batches (a 1 s sampling job polled every second)
        small = {d["n"]: d for d in ours_sizes([10**5 if not quick else 10**4], batch=1)}
    theirs = {d["n"]: d for d in theirs_sizes(sizes, notes)} if "theirs" in kinds else {}
    rows = []

    def cell(d: dict | None, key: str, scale: float = 1.0, fmt: str = "{:.3f}") -> str:
        return fmt.format(d[key] * scale) if d else "n/a"

    def rat(a: dict | None, b: dict | None, key: str) -> str:
        return f"{a[key] / b[key]:.2f}" if a and b and b[key] else "–"

    prev: dict[str, dict | None] = {"o": None, "t": None}
    for n in sizes:
        o, t = ours.get(n), theirs.get(n)
        growth = []
        for tag, cur in (("ours", o), ("2.2", t)):
            p = prev["o" if tag == "ours" else "t"]
            if cur and p:
                growth.append(f"{tag} ×{cur['final_s'] / p['final_s']:.1f}")
        rows.append(
            Row(
                "f",
                f"final NetCDF, {n:.0e} samples (s)",
                cell(o, "final_s"),
                cell(t, "final_s"),
                rat(o, t, "final_s"),
                ("growth vs 10× fewer: " + ", ".join(growth)) if growth else "",
            )
        )
        rows.append(
            Row(
                "f",
                f"snapshot, {n:.0e} samples (s)",
                cell(o, "snapshot_s"),
                cell(t, "snapshot_s"),
                rat(o, t, "snapshot_s"),
                f"file {cell(o, 'file_mb', fmt='{:.1f}')} / {cell(t, 'file_mb', fmt='{:.1f}')} MiB",
            )
        )
        rows.append(
            Row(
                "f",
                f"append one 10-sample batch at {n:.0e} (ms)",
                cell(o, "append_s", 1000, "{:.2f}"),
                cell(t, "append_s", 1000, "{:.2f}"),
                rat(o, t, "append_s"),
                "2.2 rewrites its whole pickle on every poll" if n == sizes[-1] else "",
            )
        )
        prev = {"o": o, "t": t}
    for n, d in small.items():
        rows.append(
            Row(
                "f",
                f"final NetCDF, {n:.0e} samples stored 1 per batch (s)",
                cell(d, "final_s"),
                "–",
                "–",
                "one record per sample, e.g. 1 s sampling polled every 1 s",
            )
        )
    if "theirs" in kinds:
        notes.append(
            "f: tomato 2.2 timed with its own merge_netcdfs/data_to_pickle on a "
            "synthetic pickle of each size (bench/theirs_store.py); ours with "
            "JobStore + write_results on a store filled in 1000-sample batches"
        )
    _ = summary
    return rows
