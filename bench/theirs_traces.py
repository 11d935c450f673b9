"""Scenario i for tomato 2.2, run with bench/.venv-tomato22/bin/python (not with ours).

Times tomato 2.2's per-poll store, ``tomato.daemon.io.data_to_pickle``, appending one
10-sample batch of 1000-point traces shaped as tomato-example-trig returns them
(``ordinate(uts, abscissa)``, ``points``, ``function``) to the pickle a job would have
written after ``n`` samples. Prints one JSON line per size: {"n", "append_s", "pickle_mb"}.
"""

from __future__ import annotations

import json
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr
from tomato.daemon.io import data_to_pickle

POINTS = 1000
X = np.linspace(0, 2 * np.pi, POINTS)


def dataset(n: int, t0: float = 1.7e9) -> xr.Dataset:
    uts = t0 + np.arange(n, dtype=np.float64) * 0.1
    return xr.Dataset(
        data_vars={
            "ordinate": (["uts", "abscissa"], np.sin(X[None, :] + uts[:, None])),
            "points": (["uts"], np.full(n, POINTS)),
            "function": (["uts"], np.full(n, "sin")),
        },
        coords={"uts": uts, "abscissa": X},
    )


def main() -> None:
    for n in [int(float(s)) for s in sys.argv[1:]]:
        with tempfile.TemporaryDirectory(prefix="tomato-bench-theirs-i-") as tmp:
            pkl = Path(tmp) / "trig.pkl"
            ds = dataset(n)
            ds.attrs["role"] = "trig"
            with pkl.open("wb") as out:
                pickle.dump(ds, out, protocol=4)
            del ds
            times = []
            for k in range(3):
                batch = dataset(10, t0=2e9 + k)
                t = time.perf_counter()
                data_to_pickle(batch, pkl, role="trig")
                times.append(time.perf_counter() - t)
            out = {
                "n": n,
                "append_s": sorted(times)[1],
                "pickle_mb": pkl.stat().st_size / 2**20,
            }
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
