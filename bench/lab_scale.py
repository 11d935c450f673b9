"""Scenario k: two lab hosts with ``channels / 2`` pipelines each, on one lab server
(PostgreSQL), all running lab-wide jobs at 1 s sampling at once (ours only).

Every pipeline holds a sample of its own; one lab job per sample is submitted with
``ketchup submit --server`` (4 at a time), so each is taken by the one host that holds its
sample. Measured: samples lost, the claim latency (lab-wide submit to the job's first
sample), ``ketchup status -y`` latency on the hosts while the jobs run, and the lab
server's CPU and memory. Compare with scenario g (the same pipelines on one host with its
embedded SQLite server), run in the same invocation.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.lab import LabServerWorld, lab_host
from bench.processes import cpu_percent, memory
from bench.stats import Row, row
from bench.world import counter_devices, free_port, log, read_uts
from bench.world import write_payload as write_counter_payload

FINAL = ("c", "ce", "cd")
HOSTS = {"lab-a": "127.0.0.2", "lab-b": "127.0.0.3"}


def scenario_k(channels: int, quick: bool, notes: list[str]) -> list[Row]:
    per_host = max(1, channels // 2)
    duration = 60.0 if quick else 240.0
    interval = 1.0
    lab = LabServerWorld()
    hosts: dict[str, Any] = {}
    m: dict[str, Any] = {"status": [], "server_cpu": [], "server_mem": [], "claim": []}
    try:
        lab.start(free_port(), free_port())
        url = lab.data["api_url"]
        for name, address in HOSTS.items():
            hosts[name] = lab_host(lab, counter_devices(per_host), address, name)
        for world in hosts.values():
            world.start()
        for world in hosts.values():
            world.wait_usable(timeout=600)
        log(f"k: two lab hosts with {per_host} pipelines each are usable")
        samples: list[tuple[str, str]] = []
        for name, world in hosts.items():
            for i in range(1, per_host + 1):
                sample = f"k-{name}-{i}"
                world.ok("tomato", "pipeline", "load", f"pip-counter-{i}", sample)
                world.ok("tomato", "pipeline", "ready", f"pip-counter-{i}")
                samples.append((name, sample))
        submitter = hosts["lab-a"]
        submitted: dict[str, float] = {}  # flow run id -> wall time just before its submit

        def submit(item: tuple[str, str]) -> None:
            _, sample = item
            path = write_counter_payload(
                submitter.workdir / f"{sample}.yml", sample, duration, interval
            )
            t = time.time()
            res = submitter.run("ketchup", "submit", str(path), "--server", url, timeout=120)
            if not res.ok:
                raise RuntimeError(f"lab submit failed: {res.out} {res.err[-400:]}")
            submitted[res.data["flow_run_id"]] = t

        t0 = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(submit, samples))
        m["submit_all"] = time.monotonic() - t0
        log(f"k: {len(samples)} lab jobs submitted in {m['submit_all']:.1f} s")
        jobs: dict[str, dict[str, Any]] = {}  # flow run id -> the job, on the host that took it
        where: dict[str, str] = {}
        all_running = None
        last_mem = 0.0
        deadline = time.monotonic() + duration * 4 + 900
        while time.monotonic() < deadline:
            running = 0
            for name, world in hosts.items():
                t = time.perf_counter()
                res = world.run("ketchup", "status", timeout=60)
                lat = time.perf_counter() - t
                if not res.ok:
                    continue
                for job in res.data or []:
                    if job.get("flow_run_id") in submitted:
                        jobs[job["flow_run_id"]] = job
                        where[job["flow_run_id"]] = name
                        running += job["status"] == "r"
                if running:
                    m["status"].append(lat)
            final = sum(1 for j in jobs.values() if j["status"] in FINAL)
            if running == len(samples) and all_running is None:
                all_running = time.monotonic() - t0
                log(f"k: all {running} running {all_running:.1f} s after the first submit")
            if running and time.monotonic() - last_mem > 15:
                last_mem = time.monotonic()
                server = memory(lab.root)
                m["server_mem"].append(server)
                m["server_cpu"].append(cpu_percent(lab.root, 3.0))
                log(
                    f"k: {running} r, {final} done; lab server RSS {server.rss:.0f} MiB USS "
                    f"{server.uss:.0f} MiB, CPU {m['server_cpu'][-1]:.0f} %"
                )
            if final == len(samples):
                break
            time.sleep(2.0)
        m["all_running"] = all_running
        recorded, ends = [], {s: 0 for s in FINAL}
        for frid, job in jobs.items():
            ends[job["status"]] = ends.get(job["status"], 0) + 1
            try:
                uts = read_uts(hosts[where[frid]].result_path(job))
            except Exception:  # noqa: BLE001 - a missing file counts as no samples
                uts = []
            recorded.append(len(uts))
            if uts:
                m["claim"].append(uts[0] - submitted[frid])
        m["recorded"], m["ends"] = recorded, ends
        m["taken_by"] = {n: sum(1 for w in where.values() if w == n) for n in hosts}
        median = statistics.median(recorded or [0])
        log(f"k: ends {ends}; taken by {m['taken_by']}; samples per job: median {median}")
    except Exception as exc:  # noqa: BLE001
        log(f"k FAILED: {exc}")
        notes.append(f"k failed: {str(exc)[:300]}")
    finally:
        for world in hosts.values():
            world.teardown()
        lab.teardown()
    if "recorded" not in m:
        return [Row("k", "FAILED", "see notes")]
    ideal = duration / interval
    total = len(samples) * ideal
    lost = total - sum(min(r, ideal) for r in m["recorded"])
    peak = max(m["server_mem"], key=lambda u: u.rss) if m["server_mem"] else None
    return [
        Row(
            "k",
            f"2 lab hosts × {per_host} pipelines, 1 s sampling, {duration:g} s lab jobs: jobs "
            "ending c / ce / cd",
            " / ".join(str(m["ends"].get(s, 0)) for s in FINAL),
            note="taken by " + ", ".join(f"{n} {c}" for n, c in m["taken_by"].items()),
        ),
        Row(
            "k",
            "samples lost, all jobs",
            f"{lost:.0f} of {total:.0f} ({100 * lost / total:.2f} %)",
        ),
        Row(
            "k",
            "first submit → all running (s)",
            f"{m['all_running']:.1f}" if m.get("all_running") else "never",
        ),
        row(
            "k",
            "claim latency: `ketchup submit --server` → first sample (s)",
            m["claim"],
            note="lab queue → one host takes it → its gate starts it",
        ),
        row("k", "`ketchup status -y` latency on a host while running (s)", m["status"]),
        row("k", "lab server CPU while running (% of one core)", m["server_cpu"], fmt="{:.0f}"),
        Row(
            "k",
            "lab server peak memory: RSS / USS (MiB)",
            f"{peak.rss:.0f} / {peak.uss:.0f}" if peak else "–",
            note=", ".join(f"{k} {v:.0f}" for k, v in sorted(peak.by_kind.items())) if peak else "",
        ),
    ]
