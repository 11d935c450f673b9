"""Profile where ours spends the time between `ketchup submit` and the end of a 1 s job.

    .venv/bin/python bench/profile_job.py [--pyspy PATH] [--out DIR]

Starts one daemon (temp dirs, free loopback port), waits until usable, attaches py-spy
(`pip install py-spy`; pass its path with --pyspy) to the warm job runner and to the
daemon, submits one 1 s job at 0.1 s, and prints the job's own timeline (job.log) and the
heaviest frames of each process. Collapsed stacks are kept in --out for flame graphs.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.*
from bench.processes import kind_of, world_processes  # noqa: E402
from bench.world import World, counter_devices, log, write_payload  # noqa: E402


def top_frames(path: Path, n: int = 25) -> list[tuple[int, str]]:
    """Inclusive sample counts per frame from py-spy's collapsed (raw) output."""
    counts: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, num = line.rpartition(" ")
        if not num.isdigit():
            continue
        seen = set()
        for frame in stack.split(";"):
            if frame not in seen:
                counts[frame] += int(num)
                seen.add(frame)
    return [(c, f) for f, c in counts.most_common(n)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pyspy", default=shutil.which("py-spy") or "py-spy")
    ap.add_argument("--out", default="/tmp/tomato-bench-profile")
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world = World("ours")
    try:
        world.init(counter_devices(1))
        world.start()
        world.wait_usable()
        world.prepare("pip-counter-1", "bench-p")
        time.sleep(3)
        procs = {kind_of(p.cmdline()): p.pid for p in world_processes(world.root)}
        spies = []
        for kind in ("job", "daemon"):
            if kind in procs:
                spies.append(
                    (
                        kind,
                        subprocess.Popen(
                            [
                                args.pyspy,
                                "record",
                                "-p",
                                str(procs[kind]),
                                "-d",
                                str(int(args.seconds)),
                                "-r",
                                "200",
                                "-f",
                                "raw",
                                "--threads",
                                "-o",
                                str(out / f"{kind}.txt"),
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        ),
                    )
                )
        time.sleep(1.0)
        payload = write_payload(world.workdir / "p.yml", "bench-p", 1.0, 0.1)
        t0 = time.time()
        jobid, _ = world.submit(payload)
        for _ in range(300):
            job = world.jobs(jobid)[0]
            if job["status"] in ("c", "ce", "cd"):
                break
            time.sleep(0.1)
        for _, spy in spies:
            spy.wait(timeout=60)
        print(
            f"submit started at {time.strftime('%H:%M:%S', time.localtime(t0))}"
            f".{int(t0 % 1 * 1000):03d}; job: {job}"
        )
        print((Path(job["jobpath"]) / "job.log").read_text())
        for kind, _ in spies:
            path = out / f"{kind}.txt"
            if path.exists():
                print(f"--- {kind}: heaviest frames (inclusive samples at 200 Hz)")
                for c, f in top_frames(path):
                    print(f"{c:6d}  {f[:160]}")
    finally:
        world.teardown()
        log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
