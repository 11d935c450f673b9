"""A job's job.log: each record of the job's process once, whichever thread logs it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.runner import JobLogFile


@pytest.fixture
def job_log(tmp_path: Path) -> Iterator[Path]:
    """A JobLogFile on the root and ``prefect`` loggers, with prefect propagating to the
    root: the case that wrote each line twice."""
    handler = JobLogFile(tmp_path / "job.log")
    loggers = [logging.getLogger(), logging.getLogger("prefect")]
    old = (logging.getLogger().level, logging.getLogger("prefect").propagate)
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("prefect").propagate = True
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield tmp_path / "job.log"
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()
        logging.getLogger().setLevel(old[0])
        logging.getLogger("prefect").propagate = old[1]


def messages(path: Path) -> list[str]:
    return [line.split(": ", 1)[1] for line in path.read_text().splitlines()]


def test_a_propagating_prefect_record_is_written_once(job_log: Path) -> None:
    logging.getLogger("prefect.tomato_test").info("Beginning flow run 'job-7'")
    logging.getLogger("flows.job").info("job 7: a line of our own")
    assert messages(job_log) == ["Beginning flow run 'job-7'", "job 7: a line of our own"]


def test_a_record_from_another_thread_of_the_process_is_written(job_log: Path) -> None:
    # a thread of Prefect's (its log worker, its event loop) starts without the job's
    # context; the process runs one job, so its records are the job's
    thread = threading.Thread(target=lambda: logging.getLogger("prefect.x").warning("retrying"))
    thread.start()
    thread.join()
    assert messages(job_log) == ["retrying"]
