"""A job's job.log: each record once, only the job's own records."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from flows.runner import CURRENT_JOB, JobLogFile


def _attach(handler: logging.Handler) -> list[logging.Logger]:
    loggers = [logging.getLogger(), logging.getLogger("prefect")]
    for logger in loggers:
        logger.addHandler(handler)
    return loggers


def test_a_propagating_prefect_record_is_written_once(tmp_path: Path) -> None:
    handler = JobLogFile(tmp_path / "job.log", 7)
    loggers = _attach(handler)
    prefect_logger = logging.getLogger("prefect.tomato_test")  # no API handler on it
    old = (logging.getLogger().level, logging.getLogger("prefect").propagate)
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("prefect").propagate = True  # the case that wrote each line twice
    token = CURRENT_JOB.set(7)
    try:
        prefect_logger.info("Beginning flow run 'job-7'")
        logging.getLogger("flows.job").info("job 7: a line of our own")
    finally:
        CURRENT_JOB.reset(token)
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()
        logging.getLogger().setLevel(old[0])
        logging.getLogger("prefect").propagate = old[1]
    lines = (tmp_path / "job.log").read_text().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [
        "Beginning flow run 'job-7'",
        "job 7: a line of our own",
    ]


def test_another_jobs_records_stay_out(tmp_path: Path) -> None:
    handler = JobLogFile(tmp_path / "job.log", 1)
    loggers = _attach(handler)
    old = logging.getLogger().level
    logging.getLogger().setLevel(logging.INFO)

    def other_job() -> None:
        CURRENT_JOB.set(2)
        logging.getLogger("flows.job").info("job 2 speaks")

    try:
        thread = threading.Thread(target=other_job)
        thread.start()
        thread.join()
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()
        logging.getLogger().setLevel(old)
    assert (tmp_path / "job.log").read_text() == ""
