"""A lab script in the style of tomato 2.2's docs: it drives the CLIs with ``-y`` and reads
the results with xarray. It runs unchanged against tomato 2.2 and tomato-prefect (the
``tomato``, ``ketchup`` and ``passata`` found on PATH), and prints what it saw as JSON.

    python lab_script.py PORT PIPELINE PAYLOAD JOBNAME
"""

import json
import subprocess
import sys
import time
from datetime import datetime

import xarray as xr
import yaml

port, pipeline, payload, jobname = sys.argv[1:5]


def cli(*args):
    out = subprocess.run(
        [*args, "-p", port, "-y"], capture_output=True, text=True, timeout=60, check=False
    )
    return yaml.safe_load(out.stdout)


seen = {}

# the daemon, its pipelines and components
status = cli("tomato", "status")
assert status["success"], status
pips = status["data"]["pips"]
component = pips[pipeline]["components"][0]
seen["role"] = status["data"]["cmps"][component]["role"]
seen["driver"] = status["data"]["cmps"][component]["driver"]
seen["driver_listed"] = seen["driver"] in status["data"]["drvs"]
seen["pipelines"] = sorted(cli("tomato", "status", "pipelines")["data"]) == sorted(pips)

# load the sample, once (a second load is refused, with the pipeline's record)
with open(payload) as f:
    sample = yaml.safe_load(f)["sample"]["identifier"]
if pips[pipeline]["sampleid"] is not None:
    cli("tomato", "pipeline", "eject", pipeline)
assert cli("tomato", "pipeline", "load", pipeline, sample)["success"]
again = cli("tomato", "pipeline", "load", pipeline, "another-sample")
seen["second_load"] = [
    again["success"],
    again["data"]["name"] == pipeline,
    again["data"]["sampleid"],
]
assert cli("tomato", "pipeline", "ready", pipeline)["success"]

# submit, find by name, wait
submitted = cli("ketchup", "submit", payload, "-j", jobname)
seen["submit_msg"] = submitted["msg"].startswith("job submitted successfully with jobid")
jobid = submitted["data"]["id"]
settings = submitted["data"]["payload"]["settings"]
seen["output_path_set"] = settings["output"]["path"] is not None
seen["user_set"] = bool(submitted["data"]["payload"]["user"]["identifier"])
found = cli("ketchup", "search", jobname)
seen["search"] = jobid in [job["id"] for job in found["data"]]
deadline = time.monotonic() + 120
while True:
    job = cli("ketchup", "status", str(jobid))["data"][0]
    if job["status"] in ("c", "ce", "cd") or time.monotonic() > deadline:
        break
    time.sleep(0.5)
seen["status"] = job["status"]
seen["times"] = [
    datetime.fromisoformat(job[k]).tzinfo is not None
    for k in ("submitted_at", "launched_at", "completed_at")
]
# 2.2 marks the job done from the job process and frees the pipeline a moment later from its
# daemon's loop: a script that waits for the pipeline polls, as this one does
seen["freed_at_once"] = cli("tomato", "status", "pipelines")["data"][pipeline]["jobid"] is None
deadline = time.monotonic() + 15
while cli("tomato", "status", "pipelines")["data"][pipeline]["jobid"] is not None:
    if time.monotonic() > deadline:
        break
    time.sleep(0.5)
seen["freed"] = cli("tomato", "status", "pipelines")["data"][pipeline]["jobid"] is None

# talk to the component
values = cli("passata", "get", component, "max", "min")["data"]
seen["attrs"] = sorted(values)
seen["attr_values_are_numbers"] = all(isinstance(v, (int, float)) for v in values.values())

# the results
dt = xr.open_datatree(job["respath"])
uts = dt[seen["role"]]["uts"]
meta = json.loads(dt.attrs["tomato_Job"])
seen["uts_dtype"] = str(uts.dtype)
seen["uts_plausible"] = bool(1.5e9 < float(uts[0]) < 3e9 and (uts.diff("uts") > 0).all())
seen["samples"] = int(uts.size)
seen["file_status"] = meta["status"]
seen["file_completed"] = meta["completed_at"] is not None
seen["file_jobname"] = meta["jobname"] == jobname
seen["component_attr"] = "tomato_Component" in dt[seen["role"]].attrs
seen["variables"] = sorted(dt[seen["role"]].data_vars)
print(json.dumps(seen))
