"""Appending never rewrites what is stored: constant cost per batch (timings live in bench/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tomato_cli.store import JobStore


def test_append_only_grows_by_a_constant_per_batch(tmp_path: Path) -> None:
    store = JobStore(tmp_path, durable=False)
    base = np.arange(1000)
    path = store.path("r")
    sizes: list[int] = []
    previous = b""
    for start in range(0, 20_000, 1000):
        idx = base + start
        store.append("r", idx * 0.01, {"val": idx, "x": idx * 0.5}, {"x": "V"})
        content = path.read_bytes()
        assert content.startswith(previous), "stored bytes were rewritten"
        previous = content
        sizes.append(len(content))
    deltas = set(np.diff(sizes).tolist())
    assert len(deltas) == 1, f"batch sizes on disk vary: {deltas}"
    assert store.count("r") == 20_000
    store.close()
