"""All calls into Prefect: the embedded server, the job deployment, flow-run states."""
