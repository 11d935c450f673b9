"""Rough linearity check of reading the job store (not a benchmark; see bench/)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from tomato_cli.store import JobStore


def _filled(jobdir: Path, nsamples: int, batch: int = 1000) -> JobStore:
    store = JobStore(jobdir, durable=False)
    base = np.arange(batch)
    for start in range(0, nsamples, batch):
        idx = base + start
        store.append("r", idx * 0.01, {"val": idx, "x": idx * 0.5}, {"x": "V"})
    return store


def _read_time(store: JobStore) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        store.read("r")
        best = min(best, time.perf_counter() - t0)
    return best


def test_read_time_roughly_linear(tmp_path: Path) -> None:
    small = _filled(tmp_path / "small", 100_000)
    large = _filled(tmp_path / "large", 1_000_000)
    assert large.count("r") == 1_000_000
    ratio = _read_time(large) / _read_time(small)
    assert ratio < 20, ratio
    small.close()
    large.close()
