"""Scenario f for tomato 2.2, run with bench/.venv-tomato22/bin/python (not with ours).

tomato 2.2 keeps a job's data per component as one pickled xarray Dataset in the job
folder: every poll, ``tomato.daemon.io.data_to_pickle`` loads the pickle, concatenates
the new batch and rewrites it; snapshots and the final file are made by
``tomato.daemon.io.merge_netcdfs``, which loads the pickles and writes the NetCDF with
h5netcdf. Reaching 1e7 samples with real jobs would take days, so this script builds the
pickle the job would have written (same variables as the example counter: val, max, min,
param, choice) at each size and times those two functions of the installed package.

Prints one JSON line per size: {"n", "netcdf_s", "append_s", "file_mb"}.
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
from tomato.daemon.io import data_to_pickle, merge_netcdfs
from tomato.models import Job


def dataset(n: int, t0: float = 1.7e9) -> xr.Dataset:
    uts = t0 + np.arange(n, dtype=np.float64) * 0.1
    val = np.arange(n, dtype=np.int64)
    return xr.Dataset(
        data_vars={
            "val": ("uts", val),
            "max": ("uts", val + 10),
            "min": ("uts", val - 10),
            "param": ("uts", np.full(n, 1.5)),
            "choice": ("uts", np.full(n, "red", dtype="<U5")),
        },
        coords={"uts": uts},
    )


def main() -> None:
    sizes = [int(float(s)) for s in sys.argv[1:]]
    payload = {
        "version": "2.2",
        "sample": {"identifier": "bench-f"},
        "user": {"identifier": "bench"},
        "method": [
            {
                "component_role": "counter",
                "technique_name": "count",
                "max_duration": 10.0,
                "sampling_interval": 0.1,
            }
        ],
    }
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="tomato-bench-theirs-f-") as tmp:
            jobdir = Path(tmp)
            ds = dataset(n)
            ds.attrs["role"] = "counter"
            pkl = jobdir / "counter.pkl"
            with pkl.open("wb") as out:
                pickle.dump(ds, out, protocol=4)
            del ds
            job = Job(
                id=1,
                payload=payload,
                jobpath=str(jobdir),
                respath=str(jobdir / "results.1.nc"),
                snappath=str(jobdir / "snapshot.1.nc"),
            )
            snaps = []
            for _ in range(3 if n <= 10**6 else 1):
                t = time.perf_counter()
                merge_netcdfs(job, snapshot=True)
                snaps.append(time.perf_counter() - t)
            snap = sorted(snaps)[len(snaps) // 2]
            t = time.perf_counter()
            merge_netcdfs(job)
            final = time.perf_counter() - t
            size = (jobdir / "results.1.nc").stat().st_size / 2**20
            batch = dataset(10, t0=2e9)
            t = time.perf_counter()
            data_to_pickle(batch, pkl, role="counter")
            append = time.perf_counter() - t
            print(
                json.dumps(
                    {
                        "n": n,
                        "snapshot_s": snap,
                        "final_s": final,
                        "append_s": append,
                        "file_mb": size,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
