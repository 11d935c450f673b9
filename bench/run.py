"""Benchmarks of tomato-prefect side by side with the original tomato 2.2.

    .venv/bin/python bench/run.py [--scenarios a,b,...] [--repeats N] [--quick] [--no-docs]

Scenarios (see bench/README.md): a start/stop, b one job's latency, c throughput,
d sampling fidelity, e memory and CPU, f snapshot/NetCDF time vs stored samples,
g 160 pipelines at once (ours only), h long job memory (ours only), i 1000-point
traces: a 10 s job at 0.1 s and the store's append cost with traces, j start until usable
and idle memory of the default single host (embedded Prefect server; and the floor, a bare
prefect server) and of a lab host using a lab Prefect server on PostgreSQL, k two lab hosts with
half of --channels pipelines each running lab-wide jobs on one lab server, l periodic
snapshots through Prefect automations: CPU per snapshot and lag.
The table is printed and, unless --no-docs, written into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import atexit
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.*
from bench.processes import kill_world  # noqa: E402
from bench.stats import Row  # noqa: E402
from bench.world import ROOT, THEIRS_BIN, log  # noqa: E402

ALL = "abcdefghijklm"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.strip()
    total = next((ln.split()[1] for ln in mem.splitlines() if ln.startswith("Mem:")), "?")
    return (
        f"{os.cpu_count()} cores (`nproc` = "
        f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()}), "
        f"{cpu}, {total} GiB RAM (`free -g`), Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def table(rows: list[Row]) -> str:
    out = [
        "| scenario | metric | ours (tomato-prefect) | tomato 2.2 | ours/2.2 | notes |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r.scenario, r.metric, r.ours, r.theirs, r.ratio, r.note]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


def theirs_available() -> str | None:
    """None if tomato 2.2 is installed; otherwise why not."""
    if not (THEIRS_BIN / "tomato").exists():
        return f"{THEIRS_BIN} missing: run bench/setup_tomato22.sh"
    return None


def sweep_leftovers() -> None:
    """Kill anything still running from a world folder of this run (not of other runs)."""
    import shutil

    from bench.world import CREATED

    for d in CREATED:
        kill_world(d)
        shutil.rmtree(d, ignore_errors=True)


def write_docs(rows: list[Row], command: str, started: str, took: float, notes: list[str]) -> Path:
    path = ROOT / "docs" / "benchmarks.md"
    intro_path = Path(__file__).resolve().parent / "benchmarks_intro.md"
    intro = intro_path.read_text() if intro_path.exists() else "# Benchmarks\n"
    body = [
        intro.rstrip(),
        "",
        "## Latest run",
        "",
        f"- date: {started} (`date -u`), took {took / 60:.1f} min",
        f"- machine: {machine()}",
        f"- command: `{command}`",
        "- cells: median [min–max] (n = repeats); the ratio is of medians, ours / tomato 2.2",
        "",
        table(rows),
        "",
    ]
    if notes:
        body += ["### Notes from this run", "", *[f"- {n}" for n in notes], ""]
    path.write_text("\n".join(body))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scenarios", default=ALL, help="comma-separated subset of a-m (default all)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of a-d, i, j and m (default 3)")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smaller sizes: 16 pipelines in g, 1e3-1e5 samples in f, short jobs",
    )
    ap.add_argument(
        "--only",
        choices=["ours", "theirs", "both"],
        default="both",
        help="which tool(s) to run a-f and i against",
    )
    ap.add_argument("--channels", type=int, default=None, help="pipelines in g and k (default 160)")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args()

    which = {s.strip() for s in args.scenarios.replace(",", "") if s.strip()}
    bad = which - set(ALL)
    if bad:
        ap.error(f"unknown scenarios: {sorted(bad)}")
    started = datetime.now(UTC).strftime("%a %b %d %H:%M:%S UTC %Y")
    t0 = time.monotonic()
    command = ".venv/bin/python bench/run.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    notes: list[str] = []
    kinds = ["ours", "theirs"] if args.only == "both" else [args.only]
    why = theirs_available()
    if "theirs" in kinds and why:
        notes.append(f"tomato 2.2 not run: {why}")
        kinds.remove("theirs")

    load0 = os.getloadavg()
    atexit.register(sweep_leftovers)
    from bench import conditions, core, idle, lab, lab_scale, scale, snapshots, storage, traces

    rows: list[Row] = []
    try:
        if "a" in which:
            log("scenario a: start/stop")
            rows += core.scenario_a(kinds, args.repeats)
        if which & set("bcde"):
            log(f"scenarios {''.join(sorted(which & set('bcde')))}")
            rows += core.scenarios_bcde(kinds, which, args.repeats, args.quick)
        if "f" in which:
            log("scenario f: snapshot / NetCDF vs stored samples")
            rows += storage.scenario_f(kinds, args.quick, notes)
        if "g" in which:
            channels = args.channels or (16 if args.quick else 160)
            log(f"scenario g: {channels} pipelines at once (ours)")
            rows += scale.scenario_g(channels, args.quick, notes)
        if "h" in which:
            log("scenario h: long job memory (ours)")
            rows += scale.scenario_h(args.quick, notes)
        if "i" in which:
            log("scenario i: 1000-point traces")
            rows += traces.scenario_i(kinds, args.repeats, args.quick, notes)
        if "j" in which:
            log("scenario j: the default single host, its floor (a bare prefect server)")
            rows += idle.scenario_j_single(kinds, args.repeats, args.quick, notes)
            log("scenario j: a lab host on the lab Prefect server (PostgreSQL)")
            rows += lab.scenario_j(kinds, args.repeats, args.quick, notes)
        if "k" in which:
            log("scenario k: two lab hosts, lab-wide jobs on one lab server (PostgreSQL)")
            channels = args.channels or (16 if args.quick else 160)
            rows += lab_scale.scenario_k(channels, args.quick, notes)
        if "l" in which:
            log("scenario l: periodic snapshots through Prefect automations")
            rows += snapshots.scenario_l(args.quick, notes)
        if "m" in which:
            log("scenario m: a stop condition on every sample at 1 ms (ours)")
            rows += conditions.scenario_m(args.repeats)
    except KeyboardInterrupt:
        notes.append("run interrupted; partial table")
    finally:
        sweep_leftovers()

    took = time.monotonic() - t0
    load1 = os.getloadavg()
    notes.append(
        "load average (1/5/15 min) at start "
        + "/".join(f"{x:.1f}" for x in load0)
        + ", at end "
        + "/".join(f"{x:.1f}" for x in load1)
        + f" on {os.cpu_count()} cores: anything above the suite's own load is other work"
        " on the machine and inflates the timings of both tools"
    )
    print()
    print(table(rows))
    for n in notes:
        print(f"- {n}")
    if not args.no_docs and rows:
        path = write_docs(rows, command, started, took, notes)
        log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
