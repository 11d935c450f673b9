"""The names tomato gives its things in Prefect (shared by the daemon, the flow and CLIs)."""

from __future__ import annotations

FLOW_NAME = "tomato-job"
ENTRYPOINT = "flows/job.py:tomato_job"
# the lab-wide queue on a lab server: runs of this deployment wait until one host claims them
LAB_POOL = "tomato-lab"
LAB_DEPLOYMENT = "lab"
CLAIMED = "Claimed"  # the Pending state's name while a host takes a lab job
HOST_TAG = "host:"  # tag of a job's flow run on a lab server: which host runs it
