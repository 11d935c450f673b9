"""The plot of a job's data: each role's variables against time, with units on the axes.

One plot for every place it is shown: the Prefect UI (an image the daemon serves on
demand, see ``tomato_cli.daemon.plot_http``) and ``ketchup plot``. A running job's data
comes from its append-only store, a finished job's from its results file.

Variables of one role that share units share a panel; a variable with extra dimensions
(a trace per sample) gets a panel of its own showing its latest trace. Long series are
thinned to at most ``MAX_POINTS`` per line, keeping each bucket's extremes, so that a
days-long job still draws quickly and its spikes stay visible.

matplotlib is imported only by :func:`render` and numpy only where data is handled, so
importing this module (the daemon does at start) stays cheap.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tomato_cli.models.job import FINAL_STATUSES, Job

if TYPE_CHECKING:
    import numpy as np

Format = Literal["svg", "png"]
FORMATS: tuple[Format, ...] = ("svg", "png")

PLOT_ROUTE = "/plot/"
MAX_POINTS = 2000
MAX_PANELS = 16
_WIDTH_IN = 9.0
_PANEL_IN = 2.0
SVG_WIDTH_PX = round(_WIDTH_IN * 96)  # as a browser shows the SVG (CSS px: 96 per inch)

# matplotlib's settings are global: one render at a time in a process
_RENDER_LOCK = threading.Lock()


# the link to the live plot (the job flow puts it into a Prefect artifact)
def plot_url(host: str, port: int, jobid: int, flow_run_id: str | None = None) -> str:
    """Where the daemon serves the job's live plot; ``run`` guards against another daemon
    that answers on the same address in the viewer's browser (see docs/usage.md)."""
    url = f"http://{host}:{port}{PLOT_ROUTE}{jobid}.svg"
    return f"{url}?run={flow_run_id}" if flow_run_id else url


def plot_markdown(url: str, jobid: int) -> str:
    """The markdown of a job's live-plot artifact."""
    return (
        f"![live plot of job {jobid}]({url})\n\n"
        f"Current each time the page is opened. Served by the tomato daemon at `{url}`, so "
        f"it shows in a browser on the lab PC only; anywhere else: `ketchup plot {jobid}`."
    )


# data
@dataclass
class Variable:
    """One numeric variable of a role: ``values`` is ``(n,)`` or ``(n, k)`` (a trace)."""

    name: str
    units: str
    values: np.ndarray
    trace_axis: tuple[str, str, np.ndarray] | None = None  # (name, units, values) for traces


@dataclass
class RoleSeries:
    """The plottable data of one role: its sample times and numeric variables."""

    role: str
    uts: np.ndarray
    variables: list[Variable]

    def __len__(self) -> int:
        return int(self.uts.shape[0])


def _as_plottable(values: np.ndarray) -> np.ndarray | None:
    import numpy as np

    kind = values.dtype.kind
    if kind == "b":
        return values.astype(np.int8)
    if kind in "iuf":
        return values
    return None  # strings and anything else are not drawn


def from_store(jobdir: Path) -> list[RoleSeries]:
    """Every role's data in a job's append-only store (safe while the job writes).

    Of a trace only the latest is kept: the store is streamed one batch at a time, so a
    long job of large traces is drawn in the memory of one batch.
    """
    import numpy as np

    from tomato_cli.store import JobStore
    from tomato_cli.units import cf_units

    out = []
    with JobStore(Path(jobdir), durable=False) as store:
        for role in store.roles():
            data = store.read(role, traces=False)
            variables = []
            for name, column in data.columns.items():
                values = _as_plottable(np.asarray(column))
                if values is not None:
                    variables.append(Variable(name, cf_units(data.units.get(name)), values))
            latest: dict[str, np.ndarray] = {}
            for _, slabs in store.trace_slabs(role, data):
                latest.update({name: slab[-1:] for name, slab in slabs.items()})
            for name, last in latest.items():
                values = _as_plottable(np.asarray(last))
                if values is None:
                    continue
                dims = data.traces[name].dims
                axis = None
                if len(dims) == 1:
                    dim = dims[0]
                    axis = (dim, cf_units(data.units.get(dim)), np.asarray(data.coords[dim]))
                variables.append(Variable(name, cf_units(data.units.get(name)), values, axis))
            out.append(RoleSeries(role, np.asarray(data.uts, dtype=np.float64), variables))
    return out


def from_results(path: Path) -> list[RoleSeries]:
    """Every role's data in a results or snapshot NetCDF file."""
    import netCDF4
    import numpy as np

    from tomato_cli.store.netcdf import _HDF5_LOCK  # HDF5 is not thread-safe

    out = []
    with _HDF5_LOCK, netCDF4.Dataset(path, "r") as nc:
        for role, group in nc.groups.items():
            group.set_auto_mask(False)
            if "uts" not in group.variables:
                continue
            uts = np.asarray(group.variables["uts"][:], dtype=np.float64)
            variables = []
            for name, var in group.variables.items():
                if name == "uts" or not var.dimensions or var.dimensions[0] != "uts":
                    continue
                if name in var.dimensions or var.dtype is str:
                    continue
                values = _as_plottable(np.asarray(var[:]))
                if values is None:
                    continue
                axis = None
                if values.ndim == 2:
                    dim = var.dimensions[1]
                    coord = group.variables.get(dim)
                    if coord is not None and coord.dimensions == (dim,):
                        axis = (
                            dim,
                            str(getattr(coord, "units", "1")),
                            np.asarray(coord[:], dtype=np.float64),
                        )
                variables.append(Variable(name, str(getattr(var, "units", "1")), values, axis))
            out.append(RoleSeries(role, uts, variables))
    return out


def results_file(job: Job) -> Path | None:
    """The job's results file if it was written (at its path, or in its job folder)."""
    if job.respath is None:
        return None
    candidates = [Path(job.respath)]
    if job.jobpath:
        candidates.append(Path(job.jobpath) / Path(job.respath).name)
    return next((p for p in candidates if p.is_file()), None)


def job_series(job: Job) -> list[RoleSeries]:
    """A job's data: its results once it has ended and they exist, else its store."""
    if job.status in FINAL_STATUSES:
        path = results_file(job)
        if path is not None:
            return from_results(path)
    if job.jobpath and Path(job.jobpath).is_dir():
        return from_store(Path(job.jobpath))
    return []


def data_version(job: Job) -> tuple[object, ...]:
    """Changes whenever :func:`job_series` would read other data (cheap: stats only)."""
    if job.status in FINAL_STATUSES and (path := results_file(job)) is not None:
        stat = path.stat()
        return ("results", str(path), stat.st_mtime_ns, stat.st_size)
    sizes: list[tuple[str, int]] = []
    if job.jobpath:
        datadir = Path(job.jobpath) / "data"
        if datadir.is_dir():
            sizes = sorted((p.name, p.stat().st_size) for p in datadir.iterdir())
    return ("store", job.status, tuple(sizes))


def job_title(job: Job) -> str:
    parts = [f"job {job.id}", f"sample {job.payload.sample.identifier}"]
    if job.pipeline:
        parts.append(f"pipeline {job.pipeline}")
    parts.append(f"status {job.status}")
    return " · ".join(parts)


# drawing
def thin(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, ...]:
    """At most ``max_points`` points of the line ``(x, y)``: each bucket's min and max."""
    import numpy as np

    n = x.shape[0]
    if n <= max_points:
        return x, y
    size = -(-n // (max_points // 2))  # ceil: samples per bucket
    whole = (n // size) * size
    yf = y[:whole].astype(np.float64).reshape(-1, size)
    lo = np.where(np.isnan(yf), np.inf, yf).argmin(axis=1)
    hi = np.where(np.isnan(yf), -np.inf, yf).argmax(axis=1)
    base = np.arange(yf.shape[0]) * size
    keep = np.unique(np.concatenate([base + lo, base + hi, np.arange(whole, n)]))
    return x[keep], y[keep]


_TIME_SCALES = ((120.0, 1.0, "s"), (7200.0, 60.0, "min"), (172800.0, 3600.0, "h"))


def _time_scale(span: float) -> tuple[float, str]:
    for limit, factor, name in _TIME_SCALES:
        if span < limit:
            return factor, name
    return 86400.0, "d"


@dataclass
class _Panel:
    role: str
    units: str
    variables: list[Variable]
    uts: np.ndarray

    @property
    def is_trace(self) -> bool:
        return self.variables[0].values.ndim > 1


def _panels(series: list[RoleSeries]) -> list[_Panel]:
    panels: list[_Panel] = []
    for role in series:
        by_units: dict[str, _Panel] = {}
        for var in role.variables:
            if var.values.ndim == 1:
                if var.units not in by_units:
                    by_units[var.units] = _Panel(role.role, var.units, [], role.uts)
                    panels.append(by_units[var.units])
                by_units[var.units].variables.append(var)
            elif var.values.ndim == 2 and var.values.shape[0]:
                panels.append(_Panel(role.role, var.units, [var], role.uts))
    return panels


def _label(names: list[str], units: str) -> str:
    return f"{names[0]} [{units}]" if len(names) == 1 else f"[{units}]"


def render(series: list[RoleSeries], title: str, fmt: Format = "svg") -> bytes:
    """The plot as SVG or PNG bytes."""

    if fmt not in FORMATS:
        raise ValueError(f"unknown plot format {fmt!r}: use svg or png")
    import matplotlib
    from matplotlib.figure import Figure

    panels = _panels(series)
    hidden = max(0, len(panels) - MAX_PANELS)
    panels = panels[:MAX_PANELS]
    starts = [float(s.uts[0]) for s in series if len(s)]
    ends = [float(s.uts[-1]) for s in series if len(s)]
    t0 = min(starts) if starts else 0.0
    factor, tunit = _time_scale((max(ends) - t0) if ends else 0.0)
    with _RENDER_LOCK, matplotlib.rc_context({"svg.fonttype": "none", "font.size": 9}):
        fig = Figure(figsize=(_WIDTH_IN, 1.2 + _PANEL_IN * max(1, len(panels))), dpi=100)
        fig.set_layout_engine("constrained")
        heading = title
        if starts:
            heading += f"\nstarted {datetime.fromtimestamp(t0).strftime('%Y-%m-%d %H:%M:%S')}"
        fig.suptitle(heading, fontsize=10)
        if not panels:
            ax = fig.subplots()
            ax.set_axis_off()
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", fontsize=14)
        else:
            axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
            time_axes = []
            for ax, panel in zip(axes, panels, strict=True):
                if panel.is_trace:
                    _draw_trace(ax, panel)
                else:
                    _draw_series(ax, panel, t0, factor)
                    time_axes.append(ax)
            for ax in time_axes[1:]:
                ax.sharex(time_axes[0])
            for ax in time_axes:
                ax.set_xlabel(f"time since start [{tunit}]")
            if hidden:
                fig.text(0.5, 0.0, f"{hidden} more panels not shown", ha="center", va="bottom")
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()


def _draw_series(ax, panel: _Panel, t0: float, factor: float) -> None:

    x = (panel.uts - t0) / factor
    for var in panel.variables:
        xs, ys = thin(x, var.values)
        ax.plot(xs, ys, label=var.name, linewidth=1.0, marker="." if len(xs) < 50 else None)
    ax.set_title(panel.role, loc="left", fontsize=9)
    ax.set_ylabel(_label([v.name for v in panel.variables], panel.units))
    if len(panel.variables) > 1:
        ax.legend(loc="upper left", fontsize=8, ncols=min(4, len(panel.variables)))
    ax.grid(True, alpha=0.3)


def _draw_trace(ax, panel: _Panel) -> None:
    import numpy as np

    var = panel.variables[0]
    trace = np.asarray(var.values[-1], dtype=np.float64)
    if var.trace_axis is not None and var.trace_axis[2].shape == trace.shape:
        name, units, x = var.trace_axis
        ax.set_xlabel(f"{name} [{units}]")
    else:
        x = np.arange(trace.shape[0])
        ax.set_xlabel("index")
    ax.plot(x, trace, linewidth=1.0)
    when = datetime.fromtimestamp(float(panel.uts[-1])).strftime("%H:%M:%S")
    ax.set_title(f"{panel.role}: latest {var.name} ({when})", loc="left", fontsize=9)
    ax.set_ylabel(f"{var.name} [{var.units}]")
    ax.grid(True, alpha=0.3)


def job_plot(job: Job, fmt: Format = "svg") -> bytes:
    """The plot of a job as it is now (reads its store or its results)."""
    return render(job_series(job), job_title(job), fmt)
