"""Scenarios g (many pipelines at once) and h (a long job), ours only."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.processes import cpu_percent, memory, world_processes
from bench.stats import Row, row
from bench.world import World, counter_devices, log, read_uts, write_payload

FINAL = ("c", "ce", "cd")


def _pct(vals: list[float], q: float) -> float | None:
    if not vals:
        return None
    s = sorted(vals)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def _rpc_status_latency(port: int) -> float | None:
    from tomato_cli import rpc

    t = time.perf_counter()
    try:
        rpc.call(port, "job_status", timeout=30)
    except Exception:  # noqa: BLE001 - an unreachable daemon is a data point too
        return None
    return time.perf_counter() - t


# ---------------------------------------------------------------- g: many pipelines


def scenario_g(channels: int, quick: bool, notes: list[str]) -> list[Row]:
    from tomato_cli import rpc

    duration = 60.0 if quick else 240.0
    interval = 1.0
    world = World("ours")
    m: dict[str, Any] = {"cli_lat": [], "rpc_lat": [], "pip_lat": [], "mem": [], "cpu": []}
    try:
        world.init(counter_devices(channels, pollrate=1))
        t0 = time.monotonic()
        world.start()
        world.wait_usable(timeout=600)
        m["usable"] = time.monotonic() - t0
        log(f"g: {channels} pipelines usable after {m['usable']:.1f} s")
        for i in range(1, channels + 1):
            for cmd, args in (("pipeline_load", {"sampleid": "bench-g"}), ("pipeline_ready", {})):
                rep = rpc.call(world.port, cmd, pipeline=f"pip-counter-{i}", **args)
                if not rep.success:
                    raise RuntimeError(f"{cmd} pip-counter-{i}: {rep.msg}")
        payload = write_payload(world.workdir / "g.yml", "bench-g", duration, interval)
        idle = memory(world.root)
        t_sub = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            subs = list(pool.map(lambda _: world.submit(payload), range(channels)))
        ids = [s[0] for s in subs]
        m["submit_lat"] = [s[1] for s in subs]
        m["submit_all"] = time.monotonic() - t_sub
        log(f"g: {channels} jobs submitted in {m['submit_all']:.1f} s")
        max_running = 0
        all_running_at = None
        deadline = time.monotonic() + duration * 4 + 900
        last_mem = 0.0
        statuses: dict[int, str] = {}
        while time.monotonic() < deadline:
            t = time.perf_counter()
            res = world.run("ketchup", "status", timeout=60)
            lat = time.perf_counter() - t
            if res.ok:
                statuses = {int(j["id"]): j["status"] for j in res.data}
            running = sum(1 for i in ids if statuses.get(i) == "r")
            final = sum(1 for i in ids if statuses.get(i) in FINAL)
            if running:
                m["cli_lat"].append(lat)
                r = _rpc_status_latency(world.port)
                if r is not None:
                    m["rpc_lat"].append(r)
                t = time.perf_counter()
                world.run("tomato", "status", "pipelines", timeout=60)
                m["pip_lat"].append(time.perf_counter() - t)
            if running > max_running:
                max_running = running
            if running == channels and all_running_at is None:
                all_running_at = time.monotonic() - t_sub
                log(f"g: all {channels} running {all_running_at:.1f} s after the first submit")
            if running and time.monotonic() - last_mem > 15:
                last_mem = time.monotonic()
                mem = memory(world.root)
                cpu = cpu_percent(world.root, 3.0)
                m["mem"].append((running, mem))
                m["cpu"].append((running, cpu))
                log(
                    f"g: {running} r, {final} done; status {lat:.2f} s; {mem.nproc} procs RSS "
                    f"{mem.rss:.0f} MiB USS {mem.uss:.0f} MiB; CPU {cpu:.0f} %"
                )
            if final == channels:
                break
            time.sleep(1.0)
        m["all_running"] = all_running_at
        m["max_running"] = max_running
        jobs = {int(j["id"]): j for j in world.jobs(*ids)}
        recorded = []
        ends = {s: 0 for s in FINAL}
        for i in ids:
            j = jobs.get(i, {})
            if j.get("status") in ends:
                ends[j["status"]] += 1
            if j.get("status") != "c":
                notes.append(f"g: job {i} ended {j.get('status')}: {j.get('error')}")
            try:
                recorded.append(len(read_uts(world.result_path(j))))
            except Exception:  # noqa: BLE001 - a missing file counts as no samples
                recorded.append(0)
            if j.get("status") == "c":
                m.setdefault("recorded_c", []).append(recorded[-1])
        ideal = duration / interval
        m["recorded"] = recorded
        m["ends"] = ends
        m["idle"] = idle
        log(
            f"g: ends {ends}; samples per job min {min(recorded)} median "
            f"{statistics.median(recorded)} of ideal {ideal:.0f}"
        )
    except Exception as exc:  # noqa: BLE001
        log(f"g FAILED: {exc}")
        notes.append(f"g failed: {str(exc)[:300]}")
    finally:
        world.teardown()

    rows: list[Row] = []
    if "recorded" not in m and not m["mem"]:
        return [Row("g", "FAILED", "see notes")]
    ideal = duration / interval
    # the memory sample taken with the most jobs running (not the largest RSS: late in the
    # run few jobs run but finished runners' heaps may still be counted)
    best = max(m["mem"], key=lambda x: (x[0], x[1].rss)) if m["mem"] else None
    peak = best[1] if best else None
    peak_running = best[0] if best else 0
    rows += [
        Row(
            "g",
            f"{channels} pipelines, 1 s sampling, {duration:g} s jobs: start until usable (s)",
            f"{m.get('usable', 0):.1f}",
        ),
        row("g", "`ketchup submit` per job while the others start/run (s)", m.get("submit_lat")),
        Row("g", f"submitting all {channels} (4 in parallel) (s)", f"{m.get('submit_all', 0):.1f}"),
        Row(
            "g",
            "first submit → all running (s)",
            f"{m['all_running']:.1f}"
            if m.get("all_running")
            else f"never (max {m.get('max_running')} at once)",
        ),
        Row("g", "most jobs running at once", f"{m.get('max_running')}"),
        row(
            "g",
            "`ketchup status -y` latency while running (s)",
            m["cli_lat"],
            note=f"p95 {_pct(m['cli_lat'], 0.95) or 0:.2f} s, max "
            f"{max(m['cli_lat'] or [0]):.2f} s; bar: < 1 s",
        ),
        row(
            "g",
            "… daemon part only (RPC `job_status`) (s)",
            m["rpc_lat"],
            note=f"p95 {_pct(m['rpc_lat'], 0.95) or 0:.3f} s",
        ),
        row(
            "g",
            "`tomato status pipelines -y` latency (s)",
            m["pip_lat"],
            note=f"p95 {_pct(m['pip_lat'], 0.95) or 0:.2f} s",
        ),
    ]
    if peak:
        rows += [
            Row(
                "g",
                f"peak memory with {peak_running} running: RSS / PSS / USS (MiB)",
                f"{peak.rss:.0f} / {peak.pss or 0:.0f} / {peak.uss:.0f}",
                note=f"{peak.nproc} processes; USS by kind: "
                + ", ".join(f"{k} {v:.0f}" for k, v in sorted(peak.by_kind.items())),
            ),
            Row(
                "g",
                "… per running pipeline, USS (MiB)",
                f"{(peak.uss - m['idle'].uss) / max(peak_running, 1):.0f}",
                note="(peak − idle before submitting) / running",
            ),
            row(
                "g",
                "CPU while running (% of one core)",
                [c for _, c in m["cpu"]],
                fmt="{:.0f}",
                note="2 cores = 200 %",
            ),
        ]
    if "recorded" in m:
        rec = m["recorded"]
        lost = sum(max(0, ideal - r) for r in rec)
        rows += [
            Row(
                "g",
                f"jobs ending c / ce / cd (of {channels})",
                f"{m['ends']['c']} / {m['ends']['ce']} / {m['ends']['cd']}",
            ),
            row("g", f"samples per job (ideal {ideal:.0f})", rec, fmt="{:.0f}"),
            Row(
                "g",
                "samples lost in the jobs that ended `c`",
                f"{sum(max(0, ideal - r) for r in m.get('recorded_c', [])):.0f} of "
                f"{ideal * len(m.get('recorded_c', [])):.0f}",
            ),
            Row(
                "g",
                "samples lost, all jobs",
                f"{lost:.0f} of {ideal * channels:.0f} ({100 * lost / (ideal * channels):.2f} %)",
            ),
        ]
    return rows


# ---------------------------------------------------------------- h: a long job


def scenario_h(quick: bool, notes: list[str]) -> list[Row]:
    duration = 60.0 if quick else 180.0
    interval = 0.001
    world = World("ours")
    trace: list[tuple[float, dict[str, float], float]] = []
    out: dict[str, Any] = {}
    try:
        world.init(counter_devices(1, pollrate=1))
        world.start()
        world.wait_usable()
        world.prepare("pip-counter-1", "bench-h")
        payload = write_payload(world.workdir / "h.yml", "bench-h", duration, interval)
        jobid, _ = world.submit(payload)
        t0 = time.monotonic()
        snap_s = None
        while time.monotonic() - t0 < duration * 3 + 120:
            job = world.jobs(jobid)[0]
            if job["status"] in FINAL:
                break
            # acquisition only: after max_duration the job writes its final NetCDF, whose
            # transient memory is not what "flat over a long job" is about
            if job["status"] == "r" and time.monotonic() - t0 < duration:
                kinds: dict[str, float] = {}
                for p in world_processes(world.root):
                    try:
                        from bench.processes import kind_of

                        k = kind_of(p.cmdline())
                        kinds[k] = kinds.get(k, 0.0) + p.memory_info().rss / 2**20
                    except Exception:  # noqa: BLE001
                        continue
                trace.append((time.monotonic() - t0, kinds, sum(kinds.values())))
                if snap_s is None and time.monotonic() - t0 > duration * 0.8:
                    t = time.perf_counter()
                    res = world.run("ketchup", "snapshot", str(jobid), timeout=300)
                    snap_s = time.perf_counter() - t if res.ok else None
                    log(f"h: snapshot at {time.monotonic() - t0:.0f} s took {snap_s}")
            time.sleep(5)
        job = world.jobs(jobid)[0]
        out["status"] = job["status"]
        out["snap_s"] = snap_s
        try:
            out["n"] = len(read_uts(world.result_path(job)))
        except Exception:  # noqa: BLE001
            out["n"] = 0
    except Exception as exc:  # noqa: BLE001
        log(f"h FAILED: {exc}")
        notes.append(f"h failed: {str(exc)[:300]}")
    finally:
        world.teardown()
    if len(trace) < 4:
        return [Row("h", "FAILED or too short", "see notes")]
    ideal = duration / interval
    # skip the first 20 % (start-up), compare the rest
    warm = [t for t in trace if t[0] >= duration * 0.2] or trace
    first, last = warm[0], warm[-1]
    rows = [
        Row(
            "h",
            f"long job: {duration:g} s at {interval * 1000:g} ms = {ideal:.0f} samples "
            f"(≈ {ideal / 86400:.1f} days at 1 s)",
            f"status {out.get('status')}, "
            f"{out.get('n', 0)} recorded ({100 * out.get('n', 0) / ideal:.1f} %)",
        ),
    ]
    for kind in sorted(set(first[1]) | set(last[1])):
        a, b = first[1].get(kind, 0.0), last[1].get(kind, 0.0)
        peak = max(t[1].get(kind, 0.0) for t in warm)
        rows.append(
            Row(
                "h",
                f"RSS of {kind} at {first[0]:.0f} s → {last[0]:.0f} s (MiB)",
                f"{a:.0f} → {b:.0f} (peak {peak:.0f})",
            )
        )
    rows.append(
        Row(
            "h",
            "RSS all processes, growth over the run (MiB)",
            f"{last[2] - first[2]:+.0f}",
            note=f"{len(trace)} samples of memory, 5 s apart",
        )
    )
    if out.get("snap_s") is not None:
        rows.append(
            Row(
                "h",
                f"`ketchup snapshot` at 80 % (≈ {0.8 * ideal:.0f} samples) (s)",
                f"{out['snap_s']:.2f}",
            )
        )
    return rows
