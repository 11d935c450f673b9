"""The daemon's plot route: drawn on demand, not again while nothing changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_plots import fill, make_job, svg_texts
from tomato_cli.daemon import plot_http
from tomato_cli.models import Job


@pytest.fixture
def job(tmp_path: Path) -> Job:
    fill(tmp_path / "job", batches=1)
    job = make_job(tmp_path)
    job.flow_run_id = "run-1"
    return job


def test_serves_the_plot_as_an_svg_the_browser_must_not_keep(job: Job) -> None:
    route = plot_http.PlotRoute({7: job}.get, 1234)
    answer = route("7.svg", {"run": "run-1"})
    assert answer.status == 200
    assert answer.content_type == "image/svg+xml"
    assert answer.headers["Cache-Control"] == "no-store"
    assert "param [s]" in svg_texts(answer.body)


def test_another_daemons_job_or_a_bad_path_is_404(job: Job) -> None:
    route = plot_http.PlotRoute({7: job}.get, 1234)
    wrong_run = route("7.svg", {"run": "run-of-another-daemon"})
    assert wrong_run.status == 404
    assert "not a job of the tomato daemon on port 1234" in svg_texts(wrong_run.body)[0]
    assert route("8.svg", {}).status == 404
    assert route("7.png", {}).status == 404
    assert route("../7.svg", {}).status == 404


def test_draws_again_only_when_the_data_changed(
    job: Job, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tomato_cli import plots

    drawn: list[int] = []
    real = plots.job_plot

    def counting(j: Job, fmt: str = "svg") -> bytes:
        drawn.append(j.id)
        return real(j, fmt)

    monkeypatch.setattr(plots, "job_plot", counting)
    route = plot_http.PlotRoute({7: job}.get, 1234)
    first = route("7.svg", {}).body
    assert route("7.svg", {}).body == first  # within MIN_INTERVAL_S: the same drawing
    assert drawn == [7]
    monkeypatch.setattr(plot_http, "MIN_INTERVAL_S", 0.0)
    assert route("7.svg", {}).body == first  # the data did not change
    assert drawn == [7]
    fill(tmp_path / "job", batches=2)  # new samples
    assert route("7.svg", {}).body != first
    assert drawn == [7, 7]


def test_a_failed_drawing_says_why_in_the_image(job: Job, monkeypatch: pytest.MonkeyPatch) -> None:
    from tomato_cli import plots

    def broken(j: Job, fmt: str = "svg") -> bytes:
        raise OSError("disk gone")

    monkeypatch.setattr(plots, "job_plot", broken)
    answer = plot_http.PlotRoute({7: job}.get, 1234)("7.svg", {})
    assert answer.content_type == "image/svg+xml"
    assert svg_texts(answer.body) == ["job 7: no plot (OSError: disk gone)"]


def test_the_daemon_draws_in_a_worker_that_ends_when_idle(job: Job, tmp_path: Path) -> None:
    from tomato_cli.daemon.plot_worker import PlotWorker

    worker = PlotWorker(1234, idle_s=1.0)
    try:
        first = worker.draw(job)
        assert "param [s]" in svg_texts(first)
        pid = worker.proc.pid
        fill(tmp_path / "job", batches=2)
        assert worker.draw(job) != first and worker.proc.pid == pid  # the same worker
        worker.proc.wait(timeout=10)  # nobody looks: it ends, and its memory with it
        assert "param [s]" in svg_texts(worker.draw(job))  # a new one on the next look
        assert worker.proc.pid != pid
        (tmp_path / "job" / "data" / "counter.tsr").write_bytes(b"garbage!")
        with pytest.raises(RuntimeError, match="ValueError: not a tomato job store file"):
            worker.draw(job)
        assert worker.proc.poll() is None  # one bad job does not end it
    finally:
        worker.stop()
    assert worker.proc.poll() is not None
