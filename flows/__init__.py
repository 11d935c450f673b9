"""Prefect flows of tomato: the job flow (one flow run per job) and its technique steps."""
