"""The job's live-plot artifact: markdown whose image the daemon draws when someone looks.

Made once per job, so a job's plot costs Prefect one artifact and nothing more; the
image is fetched from the daemon (see ``tomato_cli.daemon.plot_http``) by the browser.
"""

from __future__ import annotations

import contextvars
import logging
import threading

from prefect.artifacts import create_markdown_artifact

from flows.context import JobRun
from tomato_cli.plots import plot_markdown, plot_url

log = logging.getLogger(__name__)


def plot_artifact_key(jobid: int) -> str:
    return f"tomato-job-{jobid}-plot"


def _create(run: JobRun) -> None:
    url = plot_url(run.daemon_host, run.daemon_port, run.job.id, run.context.flow_run_id)
    try:
        create_markdown_artifact(
            markdown=plot_markdown(url, run.job.id),
            key=plot_artifact_key(run.job.id),
            description=f"![live plot of job {run.job.id}]({url})",
        )
    except Exception as exc:  # the UI's view must never stop a job
        log.warning("job %s: no live-plot artifact: %s", run.job.id, exc)


def create_plot_artifact(run: JobRun) -> None:
    """Make the artifact in the background (in this flow run's context): the job's first
    sample must not wait for Prefect."""
    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(_create, run), daemon=True).start()
