"""Scenarios a-e, run against both tools with the same devices file and payloads."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from bench.processes import cpu_percent, memory
from bench.stats import Row, row, summary
from bench.world import REFERENCE, World, log, read_uts, sleep_until, ts, write_payload

DEVICES = (REFERENCE / "devices" / "devices_counter.json").read_text()
FINAL = ("c", "ce", "cd")


def new_world(kind: str) -> World:
    world = World(kind)
    world.init(DEVICES)
    return world


# ---------------------------------------------------------------- a: start / stop


def scenario_a(kinds: list[str], repeats: int) -> list[Row]:
    res: dict[str, dict[str, list[float]]] = {}
    for kind in kinds:
        names = ("start_cmd", "jobs_ok", "usable", "stop_cmd", "stop_all")
        m = res[kind] = {name: [] for name in names}
        for i in range(repeats):
            world = new_world(kind)
            try:
                t0 = time.monotonic()
                m["start_cmd"].append(world.start())
                if not sleep_until(world.jobs_can_start, 240, every=0.1):
                    raise RuntimeError(f"{kind}: no job could start after 240 s")
                m["jobs_ok"].append(time.monotonic() - t0)
                world.wait_usable()
                m["usable"].append(time.monotonic() - t0)
                time.sleep(2)
                cmd_s, all_s = world.stop()
                m["stop_cmd"].append(cmd_s)
                m["stop_all"].append(all_s)
                log(
                    f"a {kind} #{i}: start {m['start_cmd'][-1]:.2f} s, jobs can start "
                    f"{m['jobs_ok'][-1]:.2f} s, usable {m['usable'][-1]:.2f} s, "
                    f"stop {cmd_s:.2f}/{all_s:.2f} s"
                )
            finally:
                world.teardown()
        for i in range(repeats):
            first_job_after_start(kind, i, m)
    o, t = res.get("ours", {}), res.get("theirs", {})
    return [
        row("a", "`tomato start` returns (s)", o.get("start_cmd"), t.get("start_cmd")),
        row(
            "a",
            "start until a job can start (s)",
            o.get("jobs_ok"),
            t.get("jobs_ok"),
            note="ours: driver hosts running (Prefect may still be starting); 2.2: driver "
            "connected",
        ),
        row(
            "a",
            "start until usable (s)",
            o.get("usable"),
            t.get("usable"),
            note="ours: drivers up + Prefect healthy + work pool; 2.2: driver connected",
        ),
        row("a", "`tomato stop` returns (s)", o.get("stop_cmd"), t.get("stop_cmd")),
        row("a", "stop until no process left (s)", o.get("stop_all"), t.get("stop_all")),
        row(
            "a",
            "first job after start: submit → `r` seen by polling (s)",
            o.get("first_to_r"),
            t.get("first_to_r"),
            note="a fresh daemon; `tomato start` returns, the pipeline is loaded and made "
            "ready, a 1 s job submitted; polling as in b",
        ),
        row(
            "a",
            "first job after start: submit → first sample (s)",
            o.get("first_to_sample"),
            t.get("first_to_sample"),
        ),
        row(
            "a",
            "first job after start: `tomato start` returns → `r` seen (s)",
            o.get("start_to_r"),
            t.get("start_to_r"),
            note="includes `pipeline load`, `pipeline ready` and `ketchup submit`",
        ),
    ]


def first_job_after_start(kind: str, i: int, m: dict[str, list[float]]) -> None:
    """A fresh daemon; right after `tomato start` returns: load, ready, submit a 1 s job.

    A submit the daemon refuses because a driver is not registered yet is retried (every
    0.2 s, counted in the log): what a user's script would have to do.
    """
    world = new_world(kind)
    try:
        payload = write_payload(world.workdir / "first.yml", "bench-first", 1.0, 0.1)
        world.start()
        t_started = time.time()
        world.prepare("pip-counter-1", "bench-first")
        refused = 0
        while True:
            t_submit = time.time()
            res = world.run("ketchup", "submit", str(payload))
            if res.ok or refused >= 150:
                break
            refused += 1
            time.sleep(0.2)
        if not res.ok:
            raise RuntimeError(f"{kind}: first submit refused: {res.out} {res.err[-400:]}")
        jobid = int(res.data["id"])
        seen_r, status = None, "q"
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120 and status not in FINAL:
            status = world.jobs(jobid)[0]["status"]
            if status in ("r", *FINAL) and seen_r is None:
                seen_r = time.time()
        jobs, _ = wait_jobs(world, [jobid], FINAL, timeout=120)
        uts = samples_of(world, jobs[jobid]) if jobid in jobs else []
        m.setdefault("first_to_r", []).append(seen_r - t_submit if seen_r else None)
        m.setdefault("start_to_r", []).append(seen_r - t_started if seen_r else None)
        m.setdefault("first_to_sample", []).append(uts[0] - t_submit if uts else None)
        log(
            f"a {kind} first job #{i}: submit → r {m['first_to_r'][-1]}, → first sample "
            f"{m['first_to_sample'][-1]}, start returned → r {m['start_to_r'][-1]}; "
            f"{refused} submits refused first; {len(uts)} samples, "
            f"status {jobs.get(jobid, {}).get('status')}"
        )
    finally:
        world.teardown()


# ---------------------------------------------------------------- helpers for b-e


def wait_jobs(
    world: World, ids: list[int], statuses: tuple[str, ...], timeout: float
) -> tuple[dict[int, dict[str, Any]], float | None]:
    """Poll ``ketchup status`` until every job is in ``statuses``; returns jobs and when."""
    t0 = time.monotonic()
    jobs: dict[int, dict[str, Any]] = {}
    while time.monotonic() - t0 < timeout:
        jobs = {int(j["id"]): j for j in world.jobs(*ids)}
        if all(jobs.get(i, {}).get("status") in statuses for i in ids):
            return jobs, time.time()
        time.sleep(0.1)
    return jobs, None


def samples_of(world: World, job: dict[str, Any]) -> list[float]:
    path = world.result_path(job)
    for _ in range(50):
        if path.exists():
            break
        time.sleep(0.1)
    return read_uts(path)


# ---------------------------------------------------------------- b: one 1 s job


def scenario_b(world: World, repeats: int, m: dict[str, list[float]]) -> None:
    payload = write_payload(world.workdir / "b.yml", "bench-b", 1.0, 0.1)
    for i in range(repeats):
        world.prepare("pip-counter-1", "bench-b")
        time.sleep(2)  # let the tool settle (ours refills its warm runner)
        t_submit = time.time()
        jobid, submit_s = world.submit(payload)
        seen_r = None
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120:
            status = world.jobs(jobid)[0]["status"]
            if status in ("r", *FINAL) and seen_r is None:
                seen_r = time.time()
            if status in FINAL:
                break
        t_done = time.time()
        job = world.jobs(jobid)[0]
        try:
            uts = samples_of(world, job)
        except Exception as exc:  # noqa: BLE001 - no data is a result too
            log(f"b {world.kind} #{i}: no samples in the results ({exc!r})")
            uts = []
        m["submit_cli"].append(submit_s)
        m["to_r"].append(seen_r - t_submit if seen_r else None)
        m["to_first"].append(uts[0] - t_submit if uts else None)
        m["to_c_ts"].append(ts(job["completed_at"]) - t_submit if job.get("completed_at") else None)
        m["to_c_seen"].append(t_done - t_submit)
        log(
            f"b {world.kind} #{i}: submit {submit_s:.2f} s, r seen {m['to_r'][-1]}, first sample "
            f"{m['to_first'][-1]}, c {m['to_c_ts'][-1]} (seen {m['to_c_seen'][-1]:.2f}); "
            f"{len(uts)} samples, status {job['status']}"
        )


def rows_b(o: dict[str, list[float]], t: dict[str, list[float]]) -> list[Row]:
    return [
        row("b", "`ketchup submit` command (s)", o.get("submit_cli"), t.get("submit_cli")),
        row(
            "b",
            "submit → status `r` seen by polling (s)",
            o.get("to_r"),
            t.get("to_r"),
            note="polling `ketchup status` back to back; includes one CLI call",
        ),
        row(
            "b",
            "submit → first sample (s)",
            o.get("to_first"),
            t.get("to_first"),
            note="first `uts` in the results file minus the wall time before `ketchup submit`",
        ),
        row(
            "b",
            "submit → complete, tool's `completed_at` (s)",
            o.get("to_c_ts"),
            t.get("to_c_ts"),
            note="1 s job at 0.1 s",
        ),
        row("b", "submit → `c` seen by polling (s)", o.get("to_c_seen"), t.get("to_c_seen")),
    ]


# ---------------------------------------------------------------- c: 20 jobs on 4 pipelines


def scenario_c(world: World, repeats: int, m: dict[str, list[float]], njobs: int = 20) -> None:
    # One sample per pipeline, jobs round-robin over them: tomato 2.2's job manager thread
    # dies (FileExistsError in action_queued_jobs, no break after launching) when one queued
    # job matches several ready pipelines holding its sample.
    payloads = [
        write_payload(world.workdir / f"c-{p}.yml", f"bench-c-{p}", 0.5, 0.1, unlock=True)
        for p in range(1, 5)
    ]
    for i in range(repeats):
        for p in range(1, 5):
            world.prepare(f"pip-counter-{p}", f"bench-c-{p}")
        time.sleep(2)
        t0 = time.time()
        ids = []
        for k in range(njobs):
            ids.append(world.submit(payloads[k % 4])[0])
        t_submitted = time.time()
        # bounded: a job left waiting (tomato 2.2 leaves a pipeline not ready after a
        # crashed job) is counted as not done rather than waited for
        jobs, t_end = wait_jobs(world, ids, FINAL, timeout=180)
        done = [ts(j.get("completed_at")) for j in jobs.values() if j.get("completed_at")]
        ok = sum(1 for j in jobs.values() if j.get("status") == "c")
        if done:
            m.setdefault("rate", []).append(ok / (max(done) - t0) * 60)
        if t_end is None:
            done = []  # not all ended: no "all complete" time
            left = [str(i) for i, j in jobs.items() if j.get("status") not in FINAL]
            world.run("ketchup", "cancel", *left)  # so they do not run in the next repeat
            wait_jobs(world, [int(x) for x in left], FINAL, timeout=60)
        bad = [
            (i, j.get("status"), str(j.get("error"))[:200])
            for i, j in jobs.items()
            if j.get("status") != "c"
        ]
        if bad:
            log(f"c {world.kind} #{i}: not c: {bad}")
            m.setdefault("bad", []).extend(bad)
        m["wall"].append(t_end - t0 if t_end else None)
        m["wall_ts"].append(max(done) - t0 if done else None)
        m["submit_all"].append(t_submitted - t0)
        m["completed_ok"].append(ok)
        log(
            f"c {world.kind} #{i}: {ok}/{njobs} c; wall {m['wall'][-1]} s "
            f"(last completed_at {m['wall_ts'][-1]}), submitting took {t_submitted - t0:.1f} s"
        )


def rows_c(o: dict[str, list[float]], t: dict[str, list[float]]) -> list[Row]:
    return [
        row(
            "c",
            "20 × 0.5 s jobs, 4 pipelines: first submit → last `completed_at` (s)",
            o.get("wall_ts"),
            t.get("wall_ts"),
            note="repeats where not all 20 ended are left out",
        ),
        row(
            "c",
            "… → all ended, seen by polling (s)",
            o.get("wall"),
            t.get("wall"),
            note="repeats where some job never ended (180 s) are left out",
        ),
        row("c", "jobs ending `c` per minute", o.get("rate"), t.get("rate"), fmt="{:.1f}"),
        row(
            "c",
            "… of which submitting 20 jobs (s)",
            o.get("submit_all"),
            t.get("submit_all"),
            note="jobs start while later ones are submitted",
        ),
        row(
            "c",
            "jobs ending `c` (of 20)",
            o.get("completed_ok"),
            t.get("completed_ok"),
            fmt="{:.0f}",
            note=" / ".join(x for x in (_bad_note(o), _bad_note(t)) if x),
        ),
    ]


def _bad_note(d: dict[str, Any]) -> str:
    bad = d.get("bad") or []
    if not bad:
        return ""
    kinds: dict[str, int] = {}
    for _, status, _err in bad:
        kinds[str(status)] = kinds.get(str(status), 0) + 1
    return "not `c`: " + ", ".join(f"{k} × {v}" for k, v in kinds.items()) + f"; e.g. {bad[0][2]}"


# ---------------------------------------------------------------- d: sampling fidelity


INTERVALS = (0.1, 0.01, 0.001)


def scenario_d(
    world: World, repeats: int, m: dict[str, list[float]], duration: float = 10.0
) -> None:
    for interval in INTERVALS:
        payload = write_payload(world.workdir / f"d-{interval}.yml", "bench-d", duration, interval)
        for _i in range(repeats):
            world.prepare("pip-counter-1", "bench-d")
            time.sleep(1)
            jobid, _ = world.submit(payload)
            jobs, _ = wait_jobs(world, [jobid], FINAL, timeout=duration * 6 + 120)
            job = jobs[jobid]
            try:
                uts = samples_of(world, job)
            except Exception as exc:  # noqa: BLE001 - a missing file is a result too
                log(f"d {world.kind} {interval}: no results ({exc})")
                uts = []
            ideal = duration / interval
            diffs = [b - a for a, b in zip(uts, uts[1:], strict=False)]
            dev = [abs(d - interval) * 1000 for d in diffs]
            key = f"{interval:g}"
            m.setdefault(f"frac-{key}", []).append(100 * len(uts) / ideal)
            m.setdefault(f"n-{key}", []).append(len(uts))
            m.setdefault(f"jit-{key}", []).append(
                statistics.pstdev(diffs) * 1000 if diffs else None
            )
            m.setdefault(f"p99-{key}", []).append(
                sorted(dev)[int(0.99 * (len(dev) - 1))] if dev else None
            )
            m.setdefault(f"mono-{key}", []).append(
                1.0 if diffs and all(d > 0 for d in diffs) else 0.0
            )
            log(
                f"d {world.kind} {interval}: {len(uts)}/{ideal:.0f} samples "
                f"({m[f'frac-{key}'][-1]:.1f} %), jitter sd {m[f'jit-{key}'][-1]} ms, "
                f"status {job.get('status')}"
            )


# per interval: (measure key, row label, number format, note)
_D_ROWS = (
    ("frac", "… recorded / ideal (%)", "{:.1f}", "bar: ≥ 99 % down to 10 ms"),
    ("jit", "… interval jitter, SD of Δuts (ms)", "{:.3f}", ""),
    ("p99", "… p99 of |Δuts − interval| (ms)", "{:.3f}", ""),
    ("mono", "… timestamps strictly increasing (fraction of runs)", "{:.0%}", ""),
)


def rows_d(
    o: dict[str, list[float]], t: dict[str, list[float]], duration: float = 10.0
) -> list[Row]:
    rows = []
    for interval in INTERVALS:
        k = f"{interval:g}"
        ideal = duration / interval
        samples = f"{duration:g} s job at {interval * 1000:g} ms: recorded samples"
        rows.append(
            row(
                "d",
                f"{samples} (ideal {ideal:.0f})",
                o.get(f"n-{k}"),
                t.get(f"n-{k}"),
                fmt="{:.0f}",
            )
        )
        for key, label, fmt, note in _D_ROWS:
            rows.append(
                row("d", label, o.get(f"{key}-{k}"), t.get(f"{key}-{k}"), fmt=fmt, note=note)
            )
    return rows


# ---------------------------------------------------------------- e: memory and CPU


def scenario_e_idle(world: World, m: dict[str, Any], window: float = 10.0) -> None:
    """Memory and CPU of a freshly usable daemon, before any job."""
    time.sleep(5)
    idle = memory(world.root)
    m["idle"] = idle
    m["idle_cpu"] = cpu_percent(world.root, window)
    log(
        f"e {world.kind} idle: {idle.nproc} procs, RSS {idle.rss:.0f} MiB, PSS {idle.pss} "
        f"USS {idle.uss:.0f}, by kind {idle.by_kind}, CPU {m['idle_cpu']:.1f} %"
    )


def scenario_e_busy(world: World, m: dict[str, Any], npip: int = 4, window: float = 10.0) -> None:
    """The same with ``npip`` jobs running; the jobs run to their end (not cancelled:
    tomato 2.2's cancel leaves the task running on the device, which blocks later jobs)."""
    duration = 30.0 + window
    ids = []
    for p in range(1, npip + 1):  # one sample per pipeline (see scenario_c)
        world.prepare(f"pip-counter-{p}", f"bench-e-{p}")
        payload = write_payload(world.workdir / f"e-{p}.yml", f"bench-e-{p}", duration, 0.1)
        ids.append(world.submit(payload)[0])
    wait_jobs(world, ids, ("r",), timeout=120)
    time.sleep(8)
    busy = memory(world.root)
    m["busy"] = busy
    m["busy_cpu"] = cpu_percent(world.root, window)
    log(
        f"e {world.kind} {npip} running: {busy.nproc} procs, RSS {busy.rss:.0f} MiB, PSS "
        f"{busy.pss} USS {busy.uss:.0f}, by kind {busy.by_kind}, CPU {m['busy_cpu']:.1f} %"
    )
    wait_jobs(world, ids, FINAL, timeout=duration + 180)


def rows_e(o: dict[str, Any], t: dict[str, Any], npip: int = 4) -> list[Row]:
    def one(d: dict[str, Any], f) -> list[float] | None:
        try:
            v = f(d)
        except (KeyError, TypeError):
            return None
        return [v] if v is not None else None

    def per(d: dict[str, Any], attr: str) -> float | None:
        a, b = getattr(d["busy"], attr), getattr(d["idle"], attr)
        return (a - b) / npip if a is not None and b is not None else None

    def kinds(d: dict[str, Any], which: str) -> str:
        u = d.get(which)
        return ", ".join(f"{k} {v:.0f}" for k, v in sorted(u.by_kind.items())) if u else "–"

    f0 = "{:.0f}"
    return [
        row(
            "e",
            "idle: processes",
            one(o, lambda d: d["idle"].nproc),
            one(t, lambda d: d["idle"].nproc),
            fmt=f0,
        ),
        row(
            "e",
            "idle: RSS, all processes (MiB)",
            one(o, lambda d: d["idle"].rss),
            one(t, lambda d: d["idle"].rss),
            fmt=f0,
        ),
        row(
            "e",
            "idle: PSS (MiB)",
            one(o, lambda d: d["idle"].pss),
            one(t, lambda d: d["idle"].pss),
            fmt=f0,
        ),
        row(
            "e",
            "idle: USS (MiB)",
            one(o, lambda d: d["idle"].uss),
            one(t, lambda d: d["idle"].uss),
            fmt=f0,
            note=f"USS by process kind: ours {kinds(o, 'idle')}; 2.2 {kinds(t, 'idle')}",
        ),
        row(
            "e",
            "idle: CPU (% of one core, 10 s)",
            one(o, lambda d: d["idle_cpu"]),
            one(t, lambda d: d["idle_cpu"]),
            fmt="{:.1f}",
        ),
        row(
            "e",
            "per running pipeline: RSS (MiB)",
            one(o, lambda d: per(d, "rss")),
            one(t, lambda d: per(d, "rss")),
            fmt=f0,
            note="(4 jobs at 0.1 s running − idle) / 4",
        ),
        row(
            "e",
            "per running pipeline: PSS (MiB)",
            one(o, lambda d: per(d, "pss")),
            one(t, lambda d: per(d, "pss")),
            fmt=f0,
        ),
        row(
            "e",
            "per running pipeline: USS (MiB)",
            one(o, lambda d: per(d, "uss")),
            one(t, lambda d: per(d, "uss")),
            fmt=f0,
            note=f"USS by kind, 4 running: ours {kinds(o, 'busy')}; 2.2 {kinds(t, 'busy')}",
        ),
        row(
            "e",
            "per running pipeline: CPU (% of one core)",
            one(o, lambda d: (d["busy_cpu"] - d["idle_cpu"]) / npip),
            one(t, lambda d: (d["busy_cpu"] - d["idle_cpu"]) / npip),
            fmt="{:.1f}",
        ),
    ]


# ---------------------------------------------------------------- b-e on one world per tool


def scenarios_bcde(kinds: list[str], which: set[str], repeats: int, quick: bool) -> list[Row]:
    res: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        r = res[kind] = {
            "b": {k: [] for k in ("submit_cli", "to_r", "to_first", "to_c_ts", "to_c_seen")},
            "c": {k: [] for k in ("wall", "wall_ts", "submit_all", "completed_ok")},
            "d": {},
            "e": {},
        }
        world = new_world(kind)
        try:
            world.start()
            world.wait_usable()
            log(f"{kind}: usable on port {world.port} in {world.root}")
            # e's idle part first (before any job), its busy part last
            for name, part in (("e", "idle"), ("b", ""), ("c", ""), ("d", ""), ("e", "busy")):
                if name not in which:
                    continue
                try:
                    if name == "e" and part == "idle":
                        scenario_e_idle(world, r["e"], window=5.0 if quick else 10.0)
                    elif name == "e":
                        scenario_e_busy(world, r["e"], window=5.0 if quick else 10.0)
                    elif name == "b":
                        scenario_b(world, repeats, r["b"])
                    elif name == "c":
                        scenario_c(world, repeats, r["c"], njobs=8 if quick else 20)
                    elif name == "d":
                        scenario_d(
                            world, 1 if quick else repeats, r["d"], duration=3.0 if quick else 10.0
                        )
                except Exception as exc:  # noqa: BLE001 - report and go on with the rest
                    log(f"{name} {kind} FAILED: {exc}")
                    r[name]["error"] = str(exc)[:300]
        finally:
            world.teardown()
    o, t = res.get("ours", {}), res.get("theirs", {})
    rows: list[Row] = []
    for name, fn in (("b", rows_b), ("c", rows_c), ("d", rows_d), ("e", rows_e)):
        if name not in which:
            continue
        if name == "d":
            rows += rows_d(o.get("d", {}), t.get("d", {}), duration=3.0 if quick else 10.0)
        else:
            rows += fn(o.get(name, {}), t.get(name, {}))
        for kind in kinds:
            err = res[kind][name].get("error") if isinstance(res[kind][name], dict) else None
            if err:
                rows.append(Row(name, f"{kind}: FAILED", err))
    return rows


__all__ = ["scenario_a", "scenarios_bcde", "summary", "Path"]
