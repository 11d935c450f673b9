"""The daemon's live plots: ``GET /plot/<jobid>.svg`` on its RPC port, drawn on demand.

Nothing is drawn while nobody looks. A look draws the job's plot from its store (or its
results once it has ended), in a worker process (see :mod:`.plot_worker`); looks within
``MIN_INTERVAL_S`` of a drawing, or while the job's data is unchanged, get the last
drawing again. One drawing at a time, so a page opened in many tabs cannot take more than
one core. The browser is told not to keep the image, so every look shows the data as it
is then.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

from tomato_cli.models.job import Job
from tomato_cli.rpc import HttpResponse, RpcServer

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 2.0
CACHED_PLOTS = 16
_PATH = re.compile(r"(\d{1,12})\.svg")
_HEADERS = {"Cache-Control": "no-store"}


@dataclass
class _Drawing:
    version: tuple[object, ...]
    drawn_at: float
    svg: bytes


def _message_svg(text: str) -> bytes:
    """A small image that says why there is no plot (a broken image says nothing)."""
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="600" height="60">'
        '<rect width="600" height="60" fill="white"/>'
        '<text x="12" y="35" font-family="sans-serif" font-size="14">'
        f"{escape(text)}</text></svg>"
    ).encode()


def _draw_here(job: Job) -> bytes:
    from tomato_cli.plots import job_plot

    return job_plot(job, "svg")


class PlotRoute:
    """Answers the plot GETs of one daemon; ``find_job`` looks a job up by id, ``draw``
    makes the SVG (in this process unless told otherwise)."""

    def __init__(
        self,
        find_job: Callable[[int], Job | None],
        port: int,
        draw: Callable[[Job], bytes] = _draw_here,
    ):
        self.find_job = find_job
        self.port = port
        self.draw = draw
        self.lock = threading.Lock()
        self.drawings: OrderedDict[int, _Drawing] = OrderedDict()

    def __call__(self, rest: str, query: dict[str, str]) -> HttpResponse:
        match = _PATH.fullmatch(rest)
        if match is None:
            return HttpResponse(404, b"not found: use /plot/<jobid>.svg\n")
        jobid = int(match.group(1))
        job = self.find_job(jobid)
        run = query.get("run")
        if job is None or (run and job.flow_run_id and run != job.flow_run_id):
            why = f"job {jobid} is not a job of the tomato daemon on port {self.port}"
            return self._svg(_message_svg(why), status=404)
        return self._svg(self._drawing(job))

    def _drawing(self, job: Job) -> bytes:
        from tomato_cli.plots import data_version

        with self.lock:
            last = self.drawings.get(job.id)
            if last is not None and time.monotonic() - last.drawn_at < MIN_INTERVAL_S:
                return last.svg
            version = data_version(job)
            if last is not None and last.version == version:
                last.drawn_at = time.monotonic()
                return last.svg
            started = time.perf_counter()
            try:
                svg = self.draw(job)
            except Exception as exc:
                log.exception("job %s: could not draw its plot", job.id)
                return _message_svg(f"job {job.id}: no plot ({type(exc).__name__}: {exc})")
            log.debug("job %s: plot drawn in %.3f s", job.id, time.perf_counter() - started)
            self.drawings[job.id] = _Drawing(version, time.monotonic(), svg)
            self.drawings.move_to_end(job.id)
            while len(self.drawings) > CACHED_PLOTS:
                self.drawings.popitem(last=False)
            return svg

    @staticmethod
    def _svg(body: bytes, status: int = 200) -> HttpResponse:
        return HttpResponse(status, body, "image/svg+xml", dict(_HEADERS))


def register(server: RpcServer, find_job: Callable[[int], Job | None], port: int) -> None:
    """Serve live plots on the daemon's RPC server (the daemon's one hook)."""
    from tomato_cli.daemon.plot_worker import PlotWorker
    from tomato_cli.plots import PLOT_ROUTE

    server.add_get_route(PLOT_ROUTE, PlotRoute(find_job, port, PlotWorker(port).draw))
