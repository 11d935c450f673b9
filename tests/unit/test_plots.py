"""tomato_cli.plots: the job plot from a store or a results file, units on the axes."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from tests.reference import REFERENCE
from tomato_cli import plots
from tomato_cli.models import Job, parse_payload
from tomato_cli.store import JobStore, write_results

REF_NC = REFERENCE / "results.ref.nc"
UTS0 = 1.768e9
SVG = "{http://www.w3.org/2000/svg}"


def svg_texts(svg: bytes) -> list[str]:
    """Every text drawn in an SVG plot (matplotlib writes them as <text> elements)."""
    root = ET.fromstring(svg)
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def fill(jobdir: Path, batches: int = 3) -> None:
    with JobStore(jobdir, durable=False) as store:
        for b in range(batches):
            uts = UTS0 + np.arange(b * 10, (b + 1) * 10) * 0.5
            store.append(
                "counter",
                uts,
                {
                    "val": np.arange(10) + b,
                    "param": np.full(10, 0.5),
                    "choice": ["red"] * 10,
                    "flag": [True, False] * 5,
                },
                {"param": "second"},
            )
            store.append("psutil", uts, {"cpu": np.linspace(0, 100, 10)}, {"cpu": "percent"})


def make_job(tmp_path: Path, status: str = "r") -> Job:
    payload = parse_payload(
        {
            "version": "2.2",
            "sample": {"identifier": "s1"},
            "method": [
                {
                    "component_role": "counter",
                    "technique_name": "count",
                    "max_duration": 10,
                    "sampling_interval": 0.5,
                }
            ],
        },
        "payload",
    )
    return Job(
        id=7,
        payload=payload,
        status=status,
        jobpath=str(tmp_path / "job"),
        respath=str(tmp_path / "results.7.nc"),
        pipeline="pip-1",
    )


def test_store_plot_has_each_role_and_units_on_the_axes(tmp_path: Path) -> None:
    fill(tmp_path / "job")
    series = plots.from_store(tmp_path / "job")
    assert [s.role for s in series] == ["counter", "psutil"]
    counter = series[0]
    assert len(counter) == 30
    # strings are not drawn; bools are, as 0/1
    assert [(v.name, v.units) for v in counter.variables] == [
        ("val", "1"),
        ("param", "s"),
        ("flag", "1"),
    ]
    texts = svg_texts(plots.render(series, "job 7", "svg"))
    assert "param [s]" in texts  # one variable in its panel: its name and units
    assert "cpu [percent]" in texts
    assert "[1]" in texts  # val and flag share a panel: units, names in the legend
    assert {"val", "flag"} <= set(texts)
    assert "time since start [s]" in texts
    assert any(t.startswith("job 7") for t in texts)


def test_png_is_a_valid_image(tmp_path: Path) -> None:
    import matplotlib.image

    fill(tmp_path / "job")
    png = plots.render(plots.from_store(tmp_path / "job"), "job 7", "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert pixels.shape[0] > 300 and pixels.shape[1] == 900


def test_results_give_the_same_plot_as_the_store(tmp_path: Path) -> None:
    fill(tmp_path / "job")
    with JobStore(tmp_path / "job", durable=False) as store:
        path = write_results(tmp_path / "r.nc", store, json.dumps({"id": 7}), {}, "0.1.0")
    from_store = plots.from_store(tmp_path / "job")
    from_file = plots.from_results(path)
    assert [s.role for s in from_file] == [s.role for s in from_store]
    for a, b in zip(from_store, from_file, strict=True):
        np.testing.assert_array_equal(a.uts, b.uts)
        assert [(v.name, v.units) for v in a.variables] == [(v.name, v.units) for v in b.variables]
    render_a = svg_texts(plots.render(from_store, "t", "svg"))
    render_b = svg_texts(plots.render(from_file, "t", "svg"))
    assert render_a == render_b


def test_plots_a_results_file_of_tomato_2_2() -> None:
    series = plots.from_results(REF_NC)
    texts = svg_texts(plots.render(series, "reference", "svg"))
    assert "param [second]" in texts and "[1]" in texts


def test_a_variable_with_extra_dimensions_shows_its_latest_trace(tmp_path: Path) -> None:
    path = tmp_path / "trace.nc"
    with netCDF4.Dataset(path, "w") as nc:
        grp = nc.createGroup("vna")
        grp.createDimension("uts", 3)
        grp.createDimension("freq", 5)
        uts = grp.createVariable("uts", "f8", ("uts",))
        uts[:] = UTS0 + np.arange(3)
        freq = grp.createVariable("freq", "f8", ("freq",))
        freq.units = "Hz"
        freq[:] = np.arange(5) * 1e6
        s11 = grp.createVariable("s11", "f8", ("uts", "freq"))
        s11.units = "dB"
        s11[:] = np.arange(15).reshape(3, 5)
        temp = grp.createVariable("temp", "f8", ("uts",))
        temp.units = "degC"
        temp[:] = [20, 21, 22]
    series = plots.from_results(path)
    trace = next(v for v in series[0].variables if v.name == "s11")
    assert trace.trace_axis is not None and trace.trace_axis[:2] == ("freq", "Hz")
    texts = svg_texts(plots.render(series, "trace", "svg"))
    assert "freq [Hz]" in texts and "s11 [dB]" in texts and "temp [degC]" in texts
    assert any(t.startswith("vna: latest s11") for t in texts)
    # a trace from the store has no named axis yet: drawn against its index
    raw = plots.RoleSeries("vna", np.arange(2.0), [plots.Variable("s", "V", np.ones((2, 4)))])
    assert "index" in svg_texts(plots.render([raw], "t", "svg"))


def test_no_data_yet_still_gives_an_image() -> None:
    svg = plots.render([], "job 1", "svg")
    assert "no data yet" in svg_texts(svg)


def test_thin_keeps_extremes_and_bounds_the_points() -> None:
    x = np.arange(100_000, dtype=float)
    y = np.zeros(100_000)
    y[12_345], y[67_890] = 50.0, -50.0
    y[500] = np.nan
    xs, ys = plots.thin(x, y, max_points=1000)
    assert len(xs) <= 1000 + 100  # the buckets plus a short tail
    assert 50.0 in ys and -50.0 in ys
    assert np.all(np.diff(xs) > 0)  # still in time order
    short = np.arange(10.0)
    assert plots.thin(short, short)[0] is short


def test_job_series_reads_the_store_while_running_and_results_once_ended(tmp_path: Path) -> None:
    fill(tmp_path / "job", batches=1)
    job = make_job(tmp_path, "r")
    assert len(plots.job_series(job)[0]) == 10
    running = plots.data_version(job)
    fill(tmp_path / "job", batches=2)
    assert plots.data_version(job) != running  # new samples: a new version
    ended = make_job(tmp_path, "c")
    assert plots.data_version(ended)[0] == "store"  # no results yet: the store
    with JobStore(tmp_path / "job", durable=False) as store:
        write_results(Path(ended.respath), store, "{}", {}, "0.1.0")
    assert plots.data_version(ended)[0] == "results"
    assert len(plots.job_series(ended)[0]) == 30
    assert plots.job_title(ended) == "job 7 · sample s1 · pipeline pip-1 · status c"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown plot format 'pdf'"):
        plots.render([], "t", "pdf")  # type: ignore[arg-type]


def test_plot_url_and_markdown() -> None:
    url = plots.plot_url("127.0.0.1", 1234, 5, "abc")
    assert url == "http://127.0.0.1:1234/plot/5.svg?run=abc"
    md = plots.plot_markdown(url, 5)
    assert md.startswith(f"![live plot of job 5]({url})")
    assert "ketchup plot 5" in md


def test_a_trace_in_the_store_shows_against_its_coordinate(tmp_path: Path) -> None:
    freq = np.linspace(1e6, 2e6, 50)
    with JobStore(tmp_path / "job", durable=False) as store:
        for b in range(3):
            store.append(
                "vna",
                [UTS0 + b],
                {"s11": [np.sin(freq / 1e5 + b)], "temp": [20.0 + b]},
                {"s11": "dB", "temp": "degC", "freq": "Hz"},
                dims={"s11": ["freq"]},
                coords={"freq": freq},
            )
    series = plots.from_store(tmp_path / "job")
    trace = next(v for v in series[0].variables if v.name == "s11")
    # only the latest trace is read from the store: memory of one batch, however long
    np.testing.assert_array_equal(trace.values, [np.sin(freq / 1e5 + 2)])
    assert trace.trace_axis is not None and trace.trace_axis[:2] == ("freq", "Hz")
    texts = svg_texts(plots.render(series, "t", "svg"))
    assert "freq [Hz]" in texts and "s11 [dB]" in texts and "temp [degC]" in texts
    with JobStore(tmp_path / "job", durable=False) as store:
        path = write_results(tmp_path / "r.nc", store, "{}", {}, "0.1.0")
    assert svg_texts(plots.render(plots.from_results(path), "t", "svg")) == texts
